using MambaGen.Numerics;

namespace MambaGen.Tasks;

/// <summary>
/// Counts over the scored positions of some sequences: how many next-token predictions (argmax of the logits) were
/// right, how many sequences had every scored position right, and the summed cross-entropy.
/// </summary>
/// <remarks>
/// <see cref="Accuracy"/> is per-token accuracy over scored positions, the metric we read the paper's Table 1
/// (selective copying) and Table 2 (induction heads) as reporting; the paper does not define it further.
/// <see cref="SequenceAccuracy"/> (all answers of a sequence right) is stricter and is reported beside it. For
/// induction heads, with one scored position per sequence, the two coincide.
/// </remarks>
public readonly record struct TaskScore(long ScoredTokens, long CorrectTokens, long Sequences, long CorrectSequences, double LossSum)
{
    /// <summary>Fraction of scored positions predicted right; NaN when nothing was scored.</summary>
    public double Accuracy => ScoredTokens == 0 ? double.NaN : (double)CorrectTokens / ScoredTokens;

    /// <summary>Fraction of sequences with every scored position right; NaN for no sequences.</summary>
    public double SequenceAccuracy => Sequences == 0 ? double.NaN : (double)CorrectSequences / Sequences;

    /// <summary>Mean cross-entropy (nats) over scored positions.</summary>
    public double MeanLoss => ScoredTokens == 0 ? double.NaN : LossSum / ScoredTokens;

    /// <summary>Adds the counts of two scores (e.g. of two batches).</summary>
    public static TaskScore operator +(TaskScore a, TaskScore b) => new(
        a.ScoredTokens + b.ScoredTokens, a.CorrectTokens + b.CorrectTokens,
        a.Sequences + b.Sequences, a.CorrectSequences + b.CorrectSequences, a.LossSum + b.LossSum);

    /// <summary>
    /// Scores <paramref name="logits"/> (batch×len×vocab, row-major) against <paramref name="targets"/> (batch×len,
    /// −1 = not scored). Only sequences with at least one scored position count towards <see cref="Sequences"/>.
    /// A prediction is the first index of the largest logit over the model's whole vocabulary.
    /// </summary>
    public static TaskScore Measure(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int batch, int vocab)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be >= 1, was {batch}.");
        if (vocab < 1) throw new ArgumentOutOfRangeException(nameof(vocab), vocab, $"vocab must be >= 1, was {vocab}.");
        if (targets.Length % batch != 0)
            throw new ArgumentException($"targets ({targets.Length}) is not a whole number of sequences for batch {batch}.", nameof(targets));
        if (logits.Length != (long)targets.Length * vocab)
            throw new ArgumentException($"logits must hold targets×vocab = {targets.Length}×{vocab} values, has {logits.Length}.", nameof(logits));

        int length = targets.Length / batch;
        long scored = 0, correct = 0, sequences = 0, correctSequences = 0;
        double lossSum = 0;
        for (int b = 0; b < batch; b++)
        {
            bool anyScored = false, allRight = true;
            for (int t = 0; t < length; t++)
            {
                int position = b * length + t, target = targets[position];
                if (target < 0) continue;
                if (target >= vocab)
                    throw new ArgumentException($"target {target} at position {position} is outside the vocabulary 0..{vocab - 1}.", nameof(targets));
                var row = logits.Slice(position * vocab, vocab);
                int best = 0;
                for (int v = 1; v < vocab; v++) if (row[v] > row[best]) best = v;
                // log-sum-exp shifted by the max, in double, so large logits do not overflow.
                double max = row[best], sumExp = 0;
                for (int v = 0; v < vocab; v++) sumExp += Math.Exp(row[v] - max);
                lossSum += max + Math.Log(sumExp) - row[target];
                anyScored = true;
                scored++;
                if (best == target) correct++; else allRight = false;
            }
            if (!anyScored) continue;
            sequences++;
            if (allRight) correctSequences++;
        }
        return new TaskScore(scored, correct, sequences, correctSequences, lossSum);
    }

    /// <summary>
    /// Scores <paramref name="model"/> on <paramref name="sequences"/> fresh sequences of <paramref name="task"/>
    /// drawn from <paramref name="random"/>, <paramref name="batchSize"/> at a time through
    /// <see cref="IMambaModel.Forward"/> (e.g. a held-out set, or one length of an extrapolation sweep).
    /// </summary>
    public static TaskScore Evaluate(IMambaModel model, ISequenceTask task, int sequences, int batchSize, Xoshiro256 random)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(random);
        if (sequences < 1) throw new ArgumentOutOfRangeException(nameof(sequences), sequences, $"sequences must be >= 1, was {sequences}.");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"batchSize must be >= 1, was {batchSize}.");
        if (model.Shape.Vocab < task.VocabSize)
            throw new ArgumentException($"The model's vocabulary ({model.Shape.Vocab}) is smaller than the task's ({task.VocabSize}: {task.Description}).", nameof(model));
        var score = default(TaskScore);
        int[] tokens = [], targets = [];
        for (int remaining = sequences; remaining > 0;)
        {
            int batch = Math.Min(remaining, batchSize);
            if (tokens.Length != batch * task.SequenceLength)
            {
                tokens = new int[batch * task.SequenceLength];
                targets = new int[tokens.Length];
            }
            task.Fill(random, tokens, targets, batch);
            score += Measure(model.Forward(tokens, batch), targets, batch, model.Shape.Vocab);
            remaining -= batch;
        }
        return score;
    }
}
