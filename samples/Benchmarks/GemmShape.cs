namespace MambaGen.Benchmarks;

/// <summary>
/// One matrix product as <c>Gemm.Multiply</c> sees it (op(A) m×k, op(B) k×n) and how many times a whole forward
/// pass of the 130M shape runs it (0 for products that belong to backward or decoding).
/// </summary>
public sealed record GemmShape(string Name, bool TransposeA, bool TransposeB, int M, int N, int K, int TimesPerForward)
{
    public double Flops => 2.0 * M * N * K;

    public override string ToString() => Name;

    /// <summary>
    /// The products of a 130M-shaped Mamba (D 768, ED 1536, N 16, R 48, padded vocab 50280) at batch 1, L 512:
    /// the forward's Linear layers y = x·Wᵀ, the two backward forms of in_proj, and a one-token decode of the head.
    /// </summary>
    public static IReadOnlyList<GemmShape> Mamba130M { get; } =
    [
        new("in_proj", false, true, 512, 3072, 768, ForwardFlops.Layers130M),
        new("x_proj", false, true, 512, 80, 1536, ForwardFlops.Layers130M),
        new("dt_proj", false, true, 512, 1536, 48, ForwardFlops.Layers130M),
        new("out_proj", false, true, 512, 768, 1536, ForwardFlops.Layers130M),
        new("head", false, true, 512, 50280, 768, 1),
        new("in_proj dX=dY·W", false, false, 512, 768, 3072, 0),
        new("in_proj dW=dYᵀ·X", true, false, 3072, 768, 512, 0),
        new("head, 1 token", false, true, 1, 50280, 768, 0),
    ];
}
