using System.Numerics.Tensors;

namespace MambaGen.Cpu;

/// <summary>
/// The product computed one row of C at a time with vectorised dot products (op(B) = Wᵀ stored row-major, so each
/// output is a dot of two contiguous rows) or scaled row additions (op(B) stored as is). No packing: the right
/// choice for tiny products and for one or two rows of C (a decode step), where B is read about once anyway,
/// and the portable path on machines without AVX2.
/// </summary>
internal static unsafe class GemmRowwise
{
    /// <summary>Columns of C updated together by the row-addition form, so they stay in L1 across the depth loop.</summary>
    private const int ColumnSegment = 2048;

    public static void Run(in GemmProblem problem, GemmThreads parallelism)
    {
        int threads = parallelism.Count;
        // Transposed A is gathered into packing memory by whichever thread runs a row (see RowOfA): reserve the
        // caller's now, so a warm product allocates nothing whichever chunks the caller ends up running.
        if (problem.TransposeA && problem.TransposeB)
            GemmScratch.ReserveForThisThread();
        if (threads == 1)
        {
            RunBlock(problem, 0, problem.M, 0, problem.N);
            return;
        }

        // Wide C is shared out by columns (each thread reads only its part of B); narrow C by rows.
        var job = ChunkJob.ForCallingThread();
        job.Problem = problem;
        job.ByColumns = problem.N >= 64 * threads;
        job.ChunkSize = job.ByColumns
            ? (problem.N + 4 * threads - 1) / (4 * threads)
            : (problem.M + threads - 1) / threads;
        int chunks = job.ByColumns ? (problem.N + job.ChunkSize - 1) / job.ChunkSize : threads;
        parallelism.For(chunks, job.Body);
    }

    /// <summary>
    /// One parallel call's chunking, kept in an object reused by its calling thread so that the call allocates
    /// nothing (a training step must not allocate; a capturing lambda per call would).
    /// </summary>
    private sealed class ChunkJob
    {
        [ThreadStatic] private static ChunkJob? _forThread;

        public GemmProblem Problem;
        public bool ByColumns;
        public int ChunkSize;
        public readonly Action<int> Body;

        private ChunkJob() => Body = RunChunk;

        public static ChunkJob ForCallingThread() => _forThread ??= new ChunkJob();

        private void RunChunk(int chunk)
        {
            if (ByColumns)
                RunBlock(Problem, 0, Problem.M, chunk * ChunkSize, Math.Min(Problem.N, (chunk + 1) * ChunkSize));
            else
                RunBlock(Problem, Math.Min(Problem.M, chunk * ChunkSize), Math.Min(Problem.M, (chunk + 1) * ChunkSize), 0, Problem.N);
        }
    }

    private static void RunBlock(in GemmProblem problem, int rowStart, int rowEnd, int colStart, int colEnd)
    {
        int k = problem.K;
        float alpha = problem.Alpha, beta = problem.Beta;
        for (int i = rowStart; i < rowEnd; i++)
        {
            float* cRow = problem.C + (nint)i * problem.Ldc;
            if (problem.TransposeB)
            {
                // Depth is taken in segments that fit a thread's packing memory (all of it at once unless k is very
                // large); later segments add onto the first.
                for (int depthStart = 0; depthStart < k; depthStart += GemmScratch.ChunkFloats)
                {
                    int depth = Math.Min(GemmScratch.ChunkFloats, k - depthStart);
                    ReadOnlySpan<float> aRow = RowOfA(problem, i, depthStart, depth);
                    for (int j = colStart; j < colEnd; j++)
                    {
                        float dot = TensorPrimitives.Dot(aRow, new ReadOnlySpan<float>(problem.B + (nint)j * problem.Ldb + depthStart, depth));
                        cRow[j] = depthStart > 0 ? cRow[j] + alpha * dot
                            : beta == 0 ? alpha * dot : alpha * dot + beta * cRow[j];
                    }
                }

                continue;
            }

            for (int segmentStart = colStart; segmentStart < colEnd; segmentStart += ColumnSegment)
            {
                int width = Math.Min(ColumnSegment, colEnd - segmentStart);
                var segment = new Span<float>(cRow + segmentStart, width);
                if (beta == 0)
                    segment.Clear();
                else if (beta != 1)
                    TensorPrimitives.Multiply(segment, beta, segment);
                for (int p = 0; p < k; p++)
                {
                    float scale = alpha * ElementOfA(problem, i, p);
                    var bSegment = new ReadOnlySpan<float>(problem.B + (nint)p * problem.Ldb + segmentStart, width);
                    TensorPrimitives.MultiplyAdd(bSegment, scale, segment, segment);
                }
            }
        }
    }

    private static float ElementOfA(in GemmProblem problem, int i, int p)
        => problem.TransposeA ? problem.A[(nint)p * problem.Lda + i] : problem.A[(nint)i * problem.Lda + p];

    /// <summary>
    /// op(A)[i, depthStart..+depth] as a contiguous span, gathered into this thread's packing memory when A is
    /// stored transposed.
    /// </summary>
    private static ReadOnlySpan<float> RowOfA(in GemmProblem problem, int i, int depthStart, int depth)
    {
        if (!problem.TransposeA)
            return new ReadOnlySpan<float>(problem.A + (nint)i * problem.Lda + depthStart, depth);
        float* row = GemmScratch.Get(depth);
        for (int p = 0; p < depth; p++)
            row[p] = problem.A[(nint)(depthStart + p) * problem.Lda + i];
        return new ReadOnlySpan<float>(row, depth);
    }
}
