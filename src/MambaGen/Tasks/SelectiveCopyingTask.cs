using System.Globalization;
using MambaGen.Numerics;

namespace MambaGen.Tasks;

/// <summary>
/// Selective Copying (Gu &amp; Dao 2023, §4.1.1; the "denoising" task of Jing et al. 2019): <see cref="Count"/> data
/// tokens sit at random positions among noise in the first SequenceLength − Count positions, then Count marker
/// tokens ask the model to emit the data tokens in their original order, one per marker.
/// </summary>
/// <remarks>
/// Vocabulary: 0 is noise, 1 .. DataVocab are data tokens (drawn independently, repeats allowed), DataVocab + 1 is
/// the marker, so <see cref="VocabSize"/> = DataVocab + 2. The paper's setting (4096 positions, 16 tokens to
/// memorise, a vocabulary of 16 that counts the noise token) is DataVocab = 14 if the marker is also one of the 16,
/// or 15 if it is not; the paper does not say. Because the spacing between data tokens is random
/// and the answer region's offset from each data token varies, a time-invariant model cannot solve it by a fixed
/// delay. Targets are −1 everywhere except the Count marker positions, whose targets are the data tokens in order.
/// </remarks>
public sealed class SelectiveCopyingTask : ISequenceTask
{
    /// <summary>Largest sequence length accepted (2^24, far beyond the paper's longest evaluation).</summary>
    public const int MaxSequenceLength = 1 << 24;

    /// <summary>Largest number of distinct data tokens accepted.</summary>
    public const int MaxDataVocab = 1 << 16;

    /// <summary>The id that fills the context between data tokens.</summary>
    public const int NoiseToken = 0;

    /// <summary>Sequences of <paramref name="sequenceLength"/> tokens hiding <paramref name="count"/> data tokens drawn from <paramref name="dataVocab"/> ids.</summary>
    public SelectiveCopyingTask(int sequenceLength, int count, int dataVocab)
    {
        SequenceTaskChecks.CheckRange(nameof(sequenceLength), sequenceLength, 2, MaxSequenceLength);
        // The context (before the markers) must have room for every data token.
        SequenceTaskChecks.CheckRange(nameof(count), count, 1, sequenceLength / 2);
        SequenceTaskChecks.CheckRange(nameof(dataVocab), dataVocab, 2, MaxDataVocab);
        SequenceLength = sequenceLength;
        Count = count;
        DataVocab = dataVocab;
    }

    /// <summary>Tokens per sequence, markers included.</summary>
    public int SequenceLength { get; }

    /// <summary>Data tokens to memorise per sequence (also the number of marker/answer positions at the end).</summary>
    public int Count { get; }

    /// <summary>Number of distinct data tokens (ids 1 .. DataVocab).</summary>
    public int DataVocab { get; }

    /// <summary>The id that asks for the next memorised token.</summary>
    public int MarkerToken => DataVocab + 1;

    /// <summary>Distinct token ids: noise, data tokens and the marker.</summary>
    public int VocabSize => DataVocab + 2;

    /// <summary>Positions before the markers, holding noise and the data tokens.</summary>
    public int ContextLength => SequenceLength - Count;

    /// <summary>The task and its settings, for logs and result files.</summary>
    public string Description => string.Create(CultureInfo.InvariantCulture,
        $"selective-copying(sequenceLength={SequenceLength}, count={Count}, dataVocab={DataVocab})");

    /// <summary>Draws <paramref name="batch"/> sequences into <paramref name="tokens"/> and their targets (−1 where unscored) into <paramref name="targets"/>.</summary>
    public void Fill(Xoshiro256 random, Span<int> tokens, Span<int> targets, int batch)
    {
        ArgumentNullException.ThrowIfNull(random);
        SequenceTaskChecks.CheckBuffers(this, tokens, targets, batch);
        for (int b = 0; b < batch; b++)
            FillOne(random, tokens.Slice(b * SequenceLength, SequenceLength), targets.Slice(b * SequenceLength, SequenceLength));
    }

    private void FillOne(Xoshiro256 random, Span<int> tokens, Span<int> targets)
    {
        int context = ContextLength;
        targets.Fill(-1);
        // Selection sampling (Knuth's Algorithm S): walk the context once and keep each position with probability
        // (still needed)/(still available). Every Count-subset is equally likely, positions come out in increasing
        // order, and nothing is allocated.
        int needed = Count, answer = context;
        for (int position = 0; position < context; position++)
        {
            if (random.NextInt(context - position) < needed)
            {
                int data = 1 + random.NextInt(DataVocab);
                tokens[position] = data;
                targets[answer++] = data;
                needed--;
            }
            else
            {
                tokens[position] = NoiseToken;
            }
        }
        tokens[context..].Fill(MarkerToken);
    }
}
