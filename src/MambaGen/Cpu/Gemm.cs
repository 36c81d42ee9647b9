namespace MambaGen.Cpu;

/// <summary>
/// Single-precision matrix product on the CPU: C = alpha·op(A)·op(B) + beta·C, row-major, with leading dimensions
/// so callers can address column blocks of a wider buffer (e.g. the x half of in_proj's output).
/// op(A) is m×k, op(B) is k×n, C is m×n. A Linear layer y = x·Wᵀ is <c>Multiply(false, true, ...)</c>.
/// </summary>
public static unsafe class Gemm
{
    public static void Multiply(
        bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
    {
        // Placeholder reference implementation; the blocked SIMD kernel replaces it.
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            float sum = 0;
            for (int p = 0; p < k; p++)
                sum += (transposeA ? a[p * lda + i] : a[i * lda + p]) * (transposeB ? b[j * ldb + p] : b[p * ldb + j]);
            ref float cij = ref c[i * ldc + j];
            cij = beta == 0 ? alpha * sum : alpha * sum + beta * cij;
        }
    }
}
