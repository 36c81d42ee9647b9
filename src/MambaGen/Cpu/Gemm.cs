using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MambaGen.Cpu;

/// <summary>
/// Single-precision matrix product on the CPU: C = alpha·op(A)·op(B) + beta·C, row-major, with leading dimensions
/// so callers can address column blocks of a wider buffer (e.g. the x half of in_proj's output).
/// op(A) is m×k, op(B) is k×n, C is m×n. A Linear layer y = x·Wᵀ is <c>Multiply(false, true, ...)</c>;
/// its backward passes are dX = dY·W (<c>Multiply(false, false, ...)</c>) and dW = dYᵀ·X (<c>Multiply(true, false, ...)</c>).
/// </summary>
/// <remarks>
/// Large products run a packed, cache-blocked algorithm in the style of GotoBLAS/BLIS: blocks of op(B) and op(A) are
/// copied into contiguous panels and a register-blocked micro-kernel (AVX-512 8×48 or AVX2 6×16) sweeps them, with
/// the columns (or, for narrow C, the rows) of C shared out over all cores. Tiny products and one- or two-row
/// products (decoding) skip packing and run row by row on <see cref="System.Numerics.Tensors.TensorPrimitives"/>,
/// which is also the path on machines without AVX2. With beta = 0, C is only written, never read, so it may hold
/// garbage. C must not overlap A or B.
/// </remarks>
public static unsafe partial class Gemm
{
    /// <summary>Products below this many multiply-adds run on the calling thread alone.</summary>
    private const long ParallelThresholdMacs = 1L << 20;

    /// <summary>Products up to this many multiply-adds are not worth packing.</summary>
    private const long SmallThresholdMacs = 1L << 15;

    private static int maxDegreeOfParallelism = Environment.ProcessorCount;

    /// <summary>
    /// The most threads one product uses, the caller included; defaults to the processor count. Products run on
    /// <see cref="WorkerPool"/>, so <see cref="WorkerPool.MaxThreads"/> caps them too.
    /// </summary>
    public static int MaxDegreeOfParallelism
    {
        get => maxDegreeOfParallelism;
        set => maxDegreeOfParallelism = value >= 1
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "At least one thread is needed.");
    }

    /// <summary>The kernel this machine runs: the widest vector unit that has fused multiply-add.</summary>
    internal static GemmKernel BestKernel { get; } =
        Vector512.IsHardwareAccelerated ? GemmKernel.Avx512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? GemmKernel.Avx2
        : GemmKernel.Portable;

    public static void Multiply(
        bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
        => Multiply(BestKernel, WorkerPool.Shared, transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>
    /// The product on a chosen kernel and team of threads, so tests can exercise every path this machine can run and
    /// check the thread cap with more threads than it has cores.
    /// </summary>
    internal static void Multiply(
        GemmKernel kernel, WorkerTeam team, bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        CheckOperand(nameof(a), nameof(lda), a.Length, transposeA, m, k, lda);
        CheckOperand(nameof(b), nameof(ldb), b.Length, transposeB, k, n, ldb);
        CheckOperand(nameof(c), nameof(ldc), c.Length, false, m, n, ldc);
        if (m == 0 || n == 0)
            return;

        fixed (float* pa = a, pb = b, pc = c)
        {
            var problem = new GemmProblem(transposeA, transposeB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
            if (k == 0 || alpha == 0)
            {
                // BLAS semantics: A and B are not referenced, so NaNs there do not reach C.
                problem.ScaleC(0, m);
                return;
            }

            long macs = (long)m * n * k;
            var threads = new GemmThreads(team, macs >= ParallelThresholdMacs ? Math.Min(maxDegreeOfParallelism, team.UsableThreads) : 1);
            if (kernel == GemmKernel.Portable || m <= 2 || macs <= SmallThresholdMacs)
                GemmRowwise.Run(problem, threads);
            else if (kernel == GemmKernel.Avx512)
                GemmBlocked<Avx512Kernel>.Run(problem, threads);
            else
                GemmBlocked<Avx2Kernel>.Run(problem, threads);
        }
    }

    /// <summary>
    /// Checks that a row-major operand whose op() is rows×cols (stored transposed when <paramref name="transposed"/>)
    /// fits in <paramref name="length"/> floats with leading dimension <paramref name="ld"/>.
    /// </summary>
    private static void CheckOperand(string name, string ldName, int length, bool transposed, int rows, int cols, int ld)
    {
        int storedRows = transposed ? cols : rows;
        int storedCols = transposed ? rows : cols;
        if (ld < storedCols || ld < 0)
            throw new ArgumentException(
                $"Leading dimension {ldName} = {ld} is smaller than the {storedCols} columns that {name} stores per row.",
                ldName);
        long needed = storedRows == 0 || storedCols == 0 ? 0 : (long)(storedRows - 1) * ld + storedCols;
        if (length < needed)
            throw new ArgumentException(
                $"Operand {name} holds {length} floats, but a {storedRows}×{storedCols} row-major matrix with leading " +
                $"dimension {ld} needs {needed}.", name);
    }
}

/// <summary>The micro-kernel families of <see cref="Gemm"/>.</summary>
internal enum GemmKernel
{
    /// <summary>Row by row on TensorPrimitives; runs anywhere.</summary>
    Portable,

    /// <summary>Packed and blocked, 6×16 ymm tile; needs AVX2 and FMA.</summary>
    Avx2,

    /// <summary>Packed and blocked, 8×48 zmm tile; needs AVX-512.</summary>
    Avx512,
}

/// <summary>The threads one product may use: <see cref="Count"/> of <see cref="Team"/>'s, the caller included.</summary>
internal readonly record struct GemmThreads(WorkerTeam Team, int Count)
{
    /// <summary>Runs the loop body over [0, count) on at most <see cref="Count"/> threads.</summary>
    public void For(int count, Action<int> body) => Team.For(count, body, Count);
}

/// <summary>One product's operands as raw pointers (the spans are pinned for the duration of the call).</summary>
internal readonly unsafe struct GemmProblem(
    bool transposeA, bool transposeB, int m, int n, int k, float alpha,
    float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
{
    public readonly bool TransposeA = transposeA;
    public readonly bool TransposeB = transposeB;
    public readonly int M = m;
    public readonly int N = n;
    public readonly int K = k;
    public readonly float Alpha = alpha;
    public readonly float* A = a;
    public readonly int Lda = lda;
    public readonly float* B = b;
    public readonly int Ldb = ldb;
    public readonly float Beta = beta;
    public readonly float* C = c;
    public readonly int Ldc = ldc;

    /// <summary>C[rows] = beta·C[rows] over all columns; beta = 0 writes zeros without reading.</summary>
    public void ScaleC(int rowStart, int rowEnd)
    {
        for (int i = rowStart; i < rowEnd; i++)
        {
            var row = new Span<float>(C + (nint)i * Ldc, N);
            if (Beta == 0)
                row.Clear();
            else if (Beta != 1)
                System.Numerics.Tensors.TensorPrimitives.Multiply(row, Beta, row);
        }
    }
}
