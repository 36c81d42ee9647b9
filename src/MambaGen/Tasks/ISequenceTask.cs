using MambaGen.Numerics;

namespace MambaGen.Tasks;

/// <summary>
/// A synthetic next-token task: fills batches of token sequences and their targets from a caller-owned random
/// stream, so the trainer can save and restore the data stream with the rest of the training state.
/// </summary>
public interface ISequenceTask
{
    /// <summary>Tokens per sequence (every sequence of a batch has this length).</summary>
    int SequenceLength { get; }

    /// <summary>Token ids used are 0 .. VocabSize−1; a model needs at least this many logits.</summary>
    int VocabSize { get; }

    /// <summary>Canonical text naming the task and all its parameters (part of a training run's fingerprint).</summary>
    string Description { get; }

    /// <summary>
    /// Overwrites <paramref name="tokens"/> and <paramref name="targets"/> (each batch×SequenceLength, row-major)
    /// with fresh sequences drawn from <paramref name="random"/>. Targets are −1 where a position is not scored.
    /// Allocates nothing.
    /// </summary>
    void Fill(Xoshiro256 random, Span<int> tokens, Span<int> targets, int batch);
}

internal static class SequenceTaskChecks
{
    public static void CheckBuffers(ISequenceTask task, Span<int> tokens, Span<int> targets, int batch)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be >= 1, was {batch}.");
        long needed = (long)batch * task.SequenceLength;
        if (tokens.Length != needed)
            throw new ArgumentException($"tokens must hold batch×SequenceLength = {batch}×{task.SequenceLength} = {needed} ids, has {tokens.Length}.", nameof(tokens));
        if (targets.Length != needed)
            throw new ArgumentException($"targets must hold batch×SequenceLength = {batch}×{task.SequenceLength} = {needed} ids, has {targets.Length}.", nameof(targets));
    }

    public static void CheckRange(string name, int value, int min, int max)
    {
        if (value < min || value > max)
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be in {min}..{max}, was {value}.");
    }
}
