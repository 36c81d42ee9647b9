namespace MambaGen.Benchmarks;

/// <summary>
/// Floating-point work of one Mamba language-model forward pass, split the way the performance target is judged:
/// the matrix products (2·m·n·k each: in_proj, x_proj, dt_proj, out_proj in every layer, and the head) and,
/// counted separately, the causal convolution and the selective scan.
/// </summary>
public sealed record ForwardFlops(double MatrixProducts, double Convolution, double Scan)
{
    public const int Layers130M = 24;

    /// <summary>
    /// Counts for <paramref name="tokens"/> = batch·L positions, with the head on <paramref name="headRows"/> of them
    /// (all, or one per sequence when only the last position's logits are computed). Conventions: the convolution is one multiply-add
    /// (2 flops) per tap per channel; the scan counts, per channel and state, Δ·A, its exp, the decay multiply,
    /// the B·(Δ·x) multiply and add, and the C·h multiply-add — 7 flops, the exp counted as one.
    /// </summary>
    public static ForwardFlops For(int dModel, int layers, int innerWidth, int stateSize, int dtRank, int convKernel, int paddedVocab, int tokens, int headRows)
    {
        double t = tokens;
        double perLayerProducts =
            2 * t * dModel * 2 * innerWidth                    // in_proj: D → 2·ED
            + 2 * t * innerWidth * (dtRank + 2 * stateSize)    // x_proj: ED → R + 2N
            + 2 * t * dtRank * innerWidth                      // dt_proj: R → ED
            + 2 * t * innerWidth * dModel;                     // out_proj: ED → D
        double head = 2.0 * headRows * dModel * paddedVocab;
        return new ForwardFlops(
            MatrixProducts: layers * perLayerProducts + head,
            Convolution: layers * 2 * t * innerWidth * convKernel,
            Scan: layers * 7 * t * innerWidth * stateSize);
    }

    /// <summary>The 130M shape (head rows: <paramref name="tokens"/> for every position's logits, the batch for the last positions'): D 768, 24 layers, ED 1536, N 16, R 48, K 4, vocab 50277 padded to 50280.</summary>
    public static ForwardFlops Mamba130M(int tokens, int headRows) => For(768, Layers130M, 1536, 16, 48, 4, 50280, tokens, headRows);
}
