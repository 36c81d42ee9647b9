namespace MambaGen;

/// <summary>
/// Where a generated model's computation runs. The generated type keeps its constants, parameters, checkpoints and
/// public API in one backend-neutral file and reaches the processor through this interface: the CPU backend is the
/// generated SIMD code of <c>{Model}.Cpu.g.cs</c>, the CUDA backend compiles the CUDA C of <c>{Model}.Cuda.g.cs</c>.
/// Callers validate arguments before they reach a backend.
/// </summary>
public interface IMambaBackend : IDisposable
{
    /// <summary>The processor the backend computes on.</summary>
    Device Device { get; }

    /// <summary>
    /// Logits into <paramref name="logits"/>: for every position (tokens.Length × Vocab values) or, with
    /// <see cref="LogitsFor.LastPosition"/>, for the last position of each sequence (batch × Vocab).
    /// </summary>
    void Forward(ReadOnlySpan<int> tokens, int batch, Span<float> logits, LogitsFor logitsFor);

    /// <summary>Mean next-token cross-entropy over scored positions; overwrites <paramref name="gradients"/> with its gradient.</summary>
    float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients);

    /// <summary>A zero recurrent state for <paramref name="batch"/> sequences, held where this backend computes.</summary>
    Generation.IDecodeState CreateDecodeState(int batch);

    /// <summary>Continues <paramref name="state"/> (one this backend made) by <paramref name="tokens"/>; logits after each sequence's last token.</summary>
    void Advance(Generation.IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits);
}
