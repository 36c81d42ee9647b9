using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MambaGen.Cpu;
using Xunit.Sdk;

namespace MambaGen.Tests.Cpu;

/// <summary>
/// Gemm.Multiply against a naive double-precision product written here, on every kernel this machine can run.
/// Tolerance per element: 2·(k+4)·u·(|alpha|·Σₚ|a_ip|·|b_pj| + |beta|·|c_ij|) with u = 2⁻²⁴, the classic
/// worst-case bound γ_k for a k-term float dot product (any summation order, FMA or not) plus a few roundings for
/// alpha, beta and the final add, doubled for slack. A wrong, missing or repeated term is of order |a||b| and far
/// outside it.
/// </summary>
[Collection(AllocationMeasurements.Name)]
public class GemmTests
{
    private const double UnitRoundoff = 1.0 / (1 << 24);

    /// <summary>
    /// Why this machine cannot run a kernel, or null when it can. The AVX2 and AVX-512 kernels call those instructions
    /// directly (no software fallback), so on other CPUs, or with DOTNET_EnableAVX2=0 / DOTNET_EnableAVX512F=0, their
    /// cases are reported as skipped with this reason: every machine lists the same cases.
    /// </summary>
    private static string? MissingHardware(string kernel) => Enum.Parse<GemmKernel>(kernel) switch
    {
        GemmKernel.Avx2 when !(Vector256.IsHardwareAccelerated && Fma.IsSupported) => "The AVX2 kernel needs AVX2 and FMA, which this CPU or runtime setting lacks.",
        GemmKernel.Avx512 when !Vector512.IsHardwareAccelerated => "The AVX-512 kernel needs accelerated 512-bit vectors, which this CPU or runtime setting lacks.",
        _ => null,
    };

    /// <summary>The cases of one kernel (internal enum, passed by name to keep the theories public), skipped where it cannot run.</summary>
    private sealed class KernelCasesAttribute(string kernel, bool withTransposes) : DataAttribute
    {
        public override string? Skip => MissingHardware(kernel);

        public override IEnumerable<object[]> GetData(System.Reflection.MethodInfo testMethod) =>
            withTransposes
                ? from transposeA in new[] { false, true } from transposeB in new[] { false, true } select new object[] { kernel, transposeA, transposeB }
                : [[kernel]];
    }

    /// <summary>
    /// (m, n, k, leading-dimension padding): odd sizes around and across the tile edges (8×48, 6×16), one and two
    /// rows (the unpacked path), several packed blocks in every direction (MC 128, NC 480, KC 256) with threads
    /// splitting columns, a narrow C where they split rows, and a tall C cut into bands of 512 rows.
    /// </summary>
    private static readonly (int M, int N, int K, int Pad)[] Shapes =
    [
        (1, 1, 1, 0), (1, 257, 33, 3), (2, 100, 17, 0), (3, 17, 257, 5), (17, 33, 100, 0), (33, 1, 17, 2),
        (100, 257, 3, 0), (257, 100, 33, 7), (257, 3, 100, 0), (48, 96, 64, 0), (9, 49, 8, 1), (64, 1000, 5, 0),
        (137, 531, 300, 3), (300, 20, 400, 0), (600, 100, 260, 1),
    ];

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: true)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: true)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: true)]
    public void MatchesDoublePrecisionReferenceOnOddShapes(string kernel, bool transposeA, bool transposeB)
    {
        foreach (var (m, n, k, pad) in Shapes)
            AssertMatchesReference(Enum.Parse<GemmKernel>(kernel), transposeA, transposeB, m, n, k, pad, alpha: 1f, beta: 0f, seed: m + n + k);
    }

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void AppliesAlphaAndBetaOnceAcrossDepthBlocks(string kernel)
    {
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        foreach (var (alpha, beta) in new[] { (0.5f, -1.5f), (-2f, 1f), (1f, 1f), (3f, 0.25f) })
        {
            // k = 300 spans two depth blocks: beta must scale C once, not once per block.
            AssertMatchesReference(gemmKernel, false, true, 37, 75, 41, 2, alpha, beta, seed: 11);
            AssertMatchesReference(gemmKernel, true, false, 20, 150, 300, 0, alpha, beta, seed: 12);
            AssertMatchesReference(gemmKernel, false, false, 1, 70, 300, 1, alpha, beta, seed: 13);
        }
    }

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void BetaZeroNeverReadsC(string kernel)
    {
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        foreach (var (m, n, k) in new[] { (1, 40, 9), (13, 50, 7), (37, 75, 300), (130, 500, 20) })
            AssertMatchesReference(gemmKernel, false, true, m, n, k, 1, alpha: 2f, beta: 0f, seed: 5, initialC: float.NaN);
    }

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void ZeroAlphaOrZeroDepthOnlyScalesC(string kernel)
    {
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        const int m = 5, n = 7, k = 3;
        var a = Filled(m * k, float.NaN);
        var b = Filled(k * n, float.NaN);
        var c = Filled(m * n, 2f);
        Gemm.Multiply(gemmKernel, WorkerPool.Shared, false, false, m, n, k, 0f, a, k, b, n, -0.5f, c, n);
        Assert.All(c, value => Assert.Equal(-1f, value));

        Gemm.Multiply(gemmKernel, WorkerPool.Shared, false, false, m, n, 0, 1f, [], 0, [], n, 0f, c, n);
        Assert.All(c, value => Assert.Equal(0f, value));
    }

    /// <summary>
    /// Products big enough to share out (over 2²⁰ multiply-adds), one of them with op(A) packed once for all chunks,
    /// on a team of 16 threads whatever this machine's core count.
    /// </summary>
    private static readonly (int M, int N, int K)[] ParallelShapes = [(137, 531, 300), (600, 100, 260), (256, 1024, 64)];

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void MaxDegreeOfParallelismCapsTheThreadsOfAProduct(string kernel)
    {
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        using var team = new WorkerTeam(16);
        int previous = Gemm.MaxDegreeOfParallelism;
        Gemm.MaxDegreeOfParallelism = 2;
        try
        {
            foreach (var (m, n, k) in ParallelShapes)
                AssertMatchesReference(gemmKernel, false, true, m, n, k, 0, alpha: 1f, beta: 0f, seed: m, team: team);
        }
        finally
        {
            Gemm.MaxDegreeOfParallelism = previous;
        }

        // Every shape is shared out, to exactly the cap.
        Assert.Equal(2, team.MostThreadsInOneLoop);
    }

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void ParallelProductsAllocateNothingOnceWarm(string kernel)
    {
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        using var team = new WorkerTeam(4);
        var random = new Random(7);
        foreach (var (m, n, k) in ParallelShapes)
        {
            var a = RandomValues(random, m * k);
            var b = RandomValues(random, n * k);
            var c = new float[m * n];
            Gemm.Multiply(gemmKernel, team, false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
            long allocated = Allocations.LeastOf(() => Allocations.During(() =>
            {
                for (int repeat = 0; repeat < 5; repeat++)
                    Gemm.Multiply(gemmKernel, team, false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
            }));
            Assert.True(allocated == 0, $"{kernel} {m}×{n}×{k}: {allocated} bytes allocated by repeated calls");
        }
    }

    [Theory]
    [KernelCases(nameof(GemmKernel.Portable), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx2), withTransposes: false)]
    [KernelCases(nameof(GemmKernel.Avx512), withTransposes: false)]
    public void ACallerGivenChunksItNeverRanBeforeAllocatesNothing(string kernel)
    {
        // Which chunks the calling thread runs depends on scheduling: on a busy machine the helpers may take all of
        // them during the warm-up call and leave some to the caller later. Force that: the warm-up call leaves every
        // chunk to the helpers, the measured calls let the caller take its share. Each product runs on a fresh
        // thread, new to every product, as a test thread of a parallel test run may be. Both forms of op(A) are
        // covered: the row-by-row path gathers a transposed A into packing memory.
        var gemmKernel = Enum.Parse<GemmKernel>(kernel);
        using var team = new WorkerTeam(4);
        var random = new Random(11);
        foreach (bool transposeA in new[] { false, true })
            foreach (var (m, n, k) in ParallelShapes)
            {
                var a = RandomValues(random, m * k);
                var b = RandomValues(random, n * k);
                var c = new float[m * n];
                int lda = transposeA ? m : k;
                long allocated = Allocations.LeastOf(() =>
                {
                    long bytes = -1;
                    var caller = new Thread(() =>
                    {
                        team.CallerTakesNoIndices = true;
                        Gemm.Multiply(gemmKernel, team, transposeA, true, m, n, k, 1f, a, lda, b, k, 0f, c, n);
                        team.CallerTakesNoIndices = false;
                        bytes = Allocations.During(() =>
                        {
                            for (int repeat = 0; repeat < 5; repeat++)
                                Gemm.Multiply(gemmKernel, team, transposeA, true, m, n, k, 1f, a, lda, b, k, 0f, c, n);
                        });
                    });
                    caller.Start();
                    caller.Join();
                    return bytes;
                });
                Assert.True(allocated == 0, $"{kernel} {m}×{n}×{k}, transposed A {transposeA}: {allocated} bytes allocated by calls after the warm-up");
            }
    }

    [Fact]
    public void DepthBeyondAThreadsPackingMemoryIsSummedInSegments()
    {
        // The row-by-row path with both operands transposed gathers op(A)'s rows into a thread's packing memory,
        // which has a fixed size; a deeper product is taken in segments. Checked against double-precision sums.
        int k = GemmScratch.ChunkFloats + 1000;
        const int m = 2, n = 3;
        var random = new Random(5);
        var a = RandomValues(random, k * m);
        var b = RandomValues(random, n * k);
        var c = RandomValues(random, m * n);
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += (double)a[p * m + i] * b[j * k + p];
                expected[i * n + j] = 0.5 * sum + 2.0 * c[i * n + j];
            }
        Gemm.Multiply(GemmKernel.Portable, WorkerPool.Shared, true, true, m, n, k, 0.5f, a, m, b, k, 2f, c, n);
        // fp32 sums of ≈ 157,000 products in (-1, 1), |sum| ≈ 130: rounding stays far below 0.05, while a lost
        // segment (≈ 10) or beta applied twice (up to 2) would not.
        for (int index = 0; index < expected.Length; index++)
            Assert.Equal(expected[index], c[index], 0.05);
    }

    [Fact]
    public void PublicEntryPointMatchesReference()
    {
        var random = new Random(3);
        const int m = 70, n = 130, k = 90;
        var a = RandomValues(random, m * k);
        var b = RandomValues(random, n * k);
        var c = new float[m * n];
        Gemm.Multiply(false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    sum += (double)a[i * k + p] * b[j * k + p];
                    magnitude += Math.Abs((double)a[i * k + p] * b[j * k + p]);
                }

                Assert.True(Math.Abs(c[i * n + j] - sum) <= 2 * (k + 4) * UnitRoundoff * magnitude, $"C[{i},{j}] = {c[i * n + j]}, expected {sum}");
            }
    }

    [Fact]
    public void RejectsOperandsTooShortForTheirShape()
    {
        float[] a = new float[4 * 5], b = new float[5 * 6], c = new float[4 * 6];
        Assert.Equal("a", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 4, 6, 5, 1f, a.AsSpan(1), 5, b, 6, 0f, c, 6)).ParamName);
        Assert.Equal("b", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 4, 6, 5, 1f, a, 5, b.AsSpan(1), 6, 0f, c, 6)).ParamName);
        Assert.Equal("c", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 4, 6, 5, 1f, a, 5, b, 6, 0f, c.AsSpan(1), 6)).ParamName);
        // Transposed, A is stored 5×4: lda 5 would need 4·5+4 floats; B stored 6×5 fits exactly with ldb 5.
        Assert.Equal("a", Assert.Throws<ArgumentException>(() => Gemm.Multiply(true, true, 4, 6, 5, 1f, a, 5, b, 5, 0f, c, 6)).ParamName);
        Gemm.Multiply(true, true, 4, 6, 5, 1f, a, 4, b, 5, 0f, c, 6);
        // The last row may end at the last element: (rows−1)·ld + width floats are enough.
        Gemm.Multiply(false, false, 4, 6, 5, 1f, new float[3 * 9 + 5], 9, b, 6, 0f, c, 6);
    }

    [Fact]
    public void RejectsLeadingDimensionsNarrowerThanRowsAndNegativeSizes()
    {
        float[] a = new float[100], b = new float[100], c = new float[100];
        Assert.Equal("lda", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 4, 6, 5, 1f, a, 4, b, 6, 0f, c, 6)).ParamName);
        Assert.Equal("ldb", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, true, 4, 6, 5, 1f, a, 5, b, 4, 0f, c, 6)).ParamName);
        Assert.Equal("ldc", Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 4, 6, 5, 1f, a, 5, b, 6, 0f, c, 5)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.Multiply(false, false, -1, 6, 5, 1f, a, 5, b, 6, 0f, c, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.Multiply(false, false, 4, 6, -5, 1f, a, 5, b, 6, 0f, c, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.MaxDegreeOfParallelism = 0);
    }

    /// <summary>
    /// Runs one product with every operand stored in a wider buffer (leading dimension = width + pad, the padding
    /// NaN in A and B so reading it would poison C, and a sentinel in C's padding that must survive), then checks
    /// every element of C against the double-precision reference.
    /// </summary>
    private static void AssertMatchesReference(
        GemmKernel kernel, bool transposeA, bool transposeB, int m, int n, int k, int pad,
        float alpha, float beta, int seed, float? initialC = null, WorkerTeam? team = null)
    {
        const float CPaddingSentinel = 12345f;
        var random = new Random(seed);
        var (a, lda) = StoredMatrix(random, transposeA ? k : m, transposeA ? m : k, pad, float.NaN);
        var (b, ldb) = StoredMatrix(random, transposeB ? n : k, transposeB ? k : n, pad, float.NaN);
        var (c, ldc) = StoredMatrix(random, m, n, pad, CPaddingSentinel);
        if (initialC is { } value)
            for (int i = 0; i < m; i++)
                c.AsSpan(i * ldc, n).Fill(value);
        var initial = (float[])c.Clone();

        Gemm.Multiply(kernel, team ?? WorkerPool.Shared, transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double product = (double)(transposeA ? a[p * lda + i] : a[i * lda + p]) * (transposeB ? b[j * ldb + p] : b[p * ldb + j]);
                    sum += product;
                    magnitude += Math.Abs(product);
                }

                double old = initial[i * ldc + j];
                double expected = beta == 0 ? alpha * sum : alpha * sum + beta * old;
                double tolerance = 2 * (k + 4) * UnitRoundoff * (Math.Abs(alpha) * magnitude + (beta == 0 ? 0 : Math.Abs(beta * old)));
                double actual = c[i * ldc + j];
                if (!(Math.Abs(actual - expected) <= tolerance))
                    Assert.Fail($"{kernel} tA={transposeA} tB={transposeB} m={m} n={n} k={k} pad={pad} alpha={alpha} beta={beta}: " +
                                $"C[{i},{j}] = {actual}, expected {expected} ± {tolerance}");
            }

            for (int j = n; j < ldc && i * ldc + j < c.Length; j++)
                Assert.Equal(CPaddingSentinel, c[i * ldc + j]);
        }
    }

    /// <summary>A rows×cols matrix of values in [−1, 1) stored with leading dimension cols + pad, the padding set to <paramref name="padding"/>.</summary>
    private static (float[] Values, int Ld) StoredMatrix(Random random, int rows, int cols, int pad, float padding)
    {
        int ld = cols + pad;
        var values = Filled(rows * ld, padding);
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < cols; s++)
                values[r * ld + s] = (float)(random.NextDouble() * 2 - 1);
        return (values, ld);
    }

    private static float[] RandomValues(Random random, int length)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    private static float[] Filled(int length, float value)
    {
        var values = new float[length];
        values.AsSpan().Fill(value);
        return values;
    }
}
