using System.Globalization;
using MambaGen.Numerics;

namespace MambaGen.Tasks;

/// <summary>
/// Induction Heads (Olsson et al. 2022; Gu &amp; Dao 2023, §4.1.2): a random sequence over a small vocabulary in which
/// a trigger token appears once, followed by some token v; the last position is the trigger again and the model must
/// predict v. Only the last position is scored.
/// </summary>
/// <remarks>
/// Vocabulary: 0 .. VocabSize − 2 are ordinary tokens drawn uniformly; VocabSize − 1 is the trigger, which appears
/// exactly twice (at a uniformly chosen position p ∈ [0, SequenceLength − 3] and at the end). The paper trains with
/// vocabulary 16 at length 256 and evaluates up to 2^20. Cost is linear in the length, so long evaluation sequences
/// are cheap to make.
/// </remarks>
public sealed class InductionHeadsTask : ISequenceTask
{
    /// <summary>Largest sequence length accepted (2^24, beyond the paper's 2^20 extrapolation).</summary>
    public const int MaxSequenceLength = 1 << 24;

    /// <summary>Largest vocabulary accepted.</summary>
    public const int MaxVocabSize = 1 << 16;

    /// <summary>Sequences of <paramref name="sequenceLength"/> tokens over <paramref name="vocabSize"/> ids (the last id is the trigger).</summary>
    public InductionHeadsTask(int sequenceLength, int vocabSize)
    {
        // Three positions are the least that hold trigger, follower and the final trigger.
        SequenceTaskChecks.CheckRange(nameof(sequenceLength), sequenceLength, 3, MaxSequenceLength);
        // At least two ordinary tokens, so the follower is not predictable without recall.
        SequenceTaskChecks.CheckRange(nameof(vocabSize), vocabSize, 3, MaxVocabSize);
        SequenceLength = sequenceLength;
        VocabSize = vocabSize;
    }

    /// <summary>Tokens per sequence.</summary>
    public int SequenceLength { get; }

    /// <summary>Distinct token ids, the trigger included.</summary>
    public int VocabSize { get; }

    /// <summary>The id whose follower must be recalled.</summary>
    public int TriggerToken => VocabSize - 1;

    /// <summary>The task and its settings, for logs and result files.</summary>
    public string Description => string.Create(CultureInfo.InvariantCulture,
        $"induction-heads(sequenceLength={SequenceLength}, vocabSize={VocabSize})");

    /// <summary>The same task at another length (for evaluating length extrapolation).</summary>
    public InductionHeadsTask WithSequenceLength(int sequenceLength) => new(sequenceLength, VocabSize);

    /// <summary>Draws <paramref name="batch"/> sequences into <paramref name="tokens"/> and their targets (−1 where unscored) into <paramref name="targets"/>.</summary>
    public void Fill(Xoshiro256 random, Span<int> tokens, Span<int> targets, int batch)
    {
        ArgumentNullException.ThrowIfNull(random);
        SequenceTaskChecks.CheckBuffers(this, tokens, targets, batch);
        int length = SequenceLength, ordinary = VocabSize - 1;
        for (int b = 0; b < batch; b++)
        {
            var sequence = tokens.Slice(b * length, length);
            var sequenceTargets = targets.Slice(b * length, length);
            for (int i = 0; i < length - 1; i++) sequence[i] = random.NextInt(ordinary);
            int trigger = random.NextInt(length - 2);
            sequence[trigger] = TriggerToken;
            sequence[length - 1] = TriggerToken;
            sequenceTargets.Fill(-1);
            sequenceTargets[length - 1] = sequence[trigger + 1];
        }
    }
}
