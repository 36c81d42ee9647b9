namespace MambaGen.Cpu;

/// <summary>
/// The packed, cache-blocked product (GotoBLAS/BLIS loop nest) for one micro-kernel. C is cut into rectangular
/// chunks that run in parallel; each chunk loops over column blocks (NC) of op(B), depth blocks (KC) and row
/// blocks (MC) of op(A), packing both blocks into this thread's buffers, then sweeps register tiles over them.
/// </summary>
internal static unsafe class GemmBlocked<TKernel> where TKernel : struct, IGemmMicroKernel
{
    /// <summary>Largest op(A) (in floats, 16 MB) packed once and shared by all threads.</summary>
    private const long SharedPackLimitFloats = 4L << 20;

    /// <summary>Column chunks per thread to aim for, for load balance.</summary>
    private const int ChunksPerThread = 4;

    /// <summary>Narrowest column chunk (in tiles) worth its own B packing and scheduling.</summary>
    private const int MinChunkColTiles = 4;

    /// <summary>Tallest chunk of C (in rows) when op(A) is shared; measured best of 256, 512 and unlimited.</summary>
    private const int MaxChunkRows = 512;

    public static void Run(in GemmProblem problem, GemmThreads parallelism)
    {
        // The calling thread may run any chunk, or none, depending on how the helpers are scheduled: reserve its
        // packing memory now, so that warming up a product on this thread is enough whoever ran the chunks.
        GemmScratch.ReserveForThisThread();
        int threads = parallelism.Count;
        int rowTiles = DivideRoundingUp(problem.M, TKernel.Rows);
        int colTiles = DivideRoundingUp(problem.N, TKernel.Cols);
        int maxChunkColTiles = TKernel.ColBlock / TKernel.Cols;

        int paddedRows = rowTiles * TKernel.Rows;
        bool canShareA = (long)paddedRows * problem.K <= SharedPackLimitFloats;

        // Share out columns when there are enough of them: each chunk then packs its own part of op(B) exactly
        // once, and op(A) is packed once for all chunks where it fits (below). Chunks are equal in size, their
        // count a multiple of the thread count and, where A is shared, a few per thread, so a thread slowed by
        // another process on the machine leaves more of the work to the others. Narrow C is split by rows instead.
        int colChunks, rowChunks;
        if (threads == 1 || colTiles >= 2 * threads)
        {
            colChunks = DivideRoundingUp(colTiles, maxChunkColTiles);
            if (threads > 1)
            {
                if (canShareA)
                    colChunks = Math.Max(colChunks, Math.Min(ChunksPerThread * threads, colTiles / MinChunkColTiles));
                colChunks = DivideRoundingUp(colChunks, threads) * threads;
            }

            // With op(A) shared, cutting tall C into row bands costs only a re-pack of the (narrow) B chunk per
            // band and keeps each chunk's C near L2 across the depth blocks.
            rowChunks = canShareA ? DivideRoundingUp(rowTiles, MaxChunkRows / TKernel.Rows) : 1;
        }
        else
        {
            colChunks = DivideRoundingUp(colTiles, maxChunkColTiles);
            rowChunks = Math.Min(rowTiles, threads);
        }

        int colChunkTiles = DivideRoundingUp(colTiles, colChunks);
        int rowChunkTiles = DivideRoundingUp(rowTiles, rowChunks);
        colChunks = DivideRoundingUp(colTiles, colChunkTiles);
        rowChunks = DivideRoundingUp(rowTiles, rowChunkTiles);
        int colChunkWidth = colChunkTiles * TKernel.Cols;
        int rowChunkHeight = rowChunkTiles * TKernel.Rows;

        // When C has more than one column chunk, op(A) would be packed once per chunk; pack it once up front
        // instead (if it is of a size worth keeping) and let all chunks read it.
        bool shareA = canShareA && colChunks > 1;
        var job = ProductJob.ForCallingThread();
        job.Problem = problem;
        (job.ColChunks, job.RowChunkHeight, job.ColChunkWidth, job.PaddedRows) = (colChunks, rowChunkHeight, colChunkWidth, paddedRows);
        job.SharedA = shareA ? GemmScratch.GetShared(paddedRows * problem.K) : null;
        job.Bands = DivideRoundingUp(problem.M, TKernel.RowBlock);
        // One thread, or one item, runs inline: WorkerTeam.For wakes no helper then.
        if (shareA)
            parallelism.For(DivideRoundingUp(problem.K, TKernel.DepthBlock) * job.Bands, job.PackBandOfA);
        parallelism.For(colChunks * rowChunks, job.RunChunk);
    }

    /// <summary>
    /// One product's chunking and its two loops (packing all of op(A), then the chunks of C) as delegates made once,
    /// kept in an object reused by its calling thread so that a product allocates nothing (a training step must not
    /// allocate; a capturing lambda per call would).
    /// </summary>
    private sealed class ProductJob
    {
        [ThreadStatic] private static ProductJob? _forThread;

        public GemmProblem Problem;
        public int ColChunks, RowChunkHeight, ColChunkWidth, PaddedRows, Bands;

        /// <summary>All of op(A), packed before the chunks run, or null when each chunk packs its own.</summary>
        public float* SharedA;

        /// <summary>Packs one (depth block, band of rows) item of op(A) into <see cref="SharedA"/>.</summary>
        public readonly Action<int> PackBandOfA;

        /// <summary>Computes one chunk of C.</summary>
        public readonly Action<int> RunChunk;

        private ProductJob()
        {
            PackBandOfA = item => PackBand(Problem, item, Bands, SharedA, PaddedRows);
            RunChunk = chunk => GemmBlocked<TKernel>.RunChunk(Problem, chunk, ColChunks, RowChunkHeight, ColChunkWidth, SharedA, PaddedRows);
        }

        public static ProductJob ForCallingThread() => _forThread ??= new ProductJob();
    }

    private static void PackBand(in GemmProblem problem, int item, int bands, float* packed, int paddedRows)
    {
        int pc = item / bands * TKernel.DepthBlock;
        int kc = Math.Min(TKernel.DepthBlock, problem.K - pc);
        int rowStart = item % bands * TKernel.RowBlock;
        PackA(problem, rowStart, Math.Min(TKernel.RowBlock, problem.M - rowStart), pc, kc,
            packed + (nint)pc * paddedRows + (nint)rowStart * kc);
    }

    /// <summary>
    /// Computes one chunk of C. <paramref name="sharedA"/>, when not null, is all of op(A) already packed: depth
    /// block p starts at p·<paramref name="paddedRows"/>, and within it row panel i at i·depth.
    /// </summary>
    private static void RunChunk(
        in GemmProblem problem, int chunk, int colChunks, int rowChunkHeight, int colChunkWidth, float* sharedA, int paddedRows)
    {
        int rowStart = chunk / colChunks * rowChunkHeight;
        int colStart = chunk % colChunks * colChunkWidth;
        int rowEnd = Math.Min(problem.M, rowStart + rowChunkHeight);
        int colEnd = Math.Min(problem.N, colStart + colChunkWidth);

        int depthBlock = TKernel.DepthBlock, rowBlock = TKernel.RowBlock, colBlock = TKernel.ColBlock;
        float* packedA = GemmScratch.Get(GemmScratch.PackingFloats<TKernel>());
        float* packedB = packedA + rowBlock * depthBlock;

        for (int jc = colStart; jc < colEnd; jc += colBlock)
        {
            int nc = Math.Min(colBlock, colEnd - jc);
            for (int pc = 0; pc < problem.K; pc += depthBlock)
            {
                int kc = Math.Min(depthBlock, problem.K - pc);
                PackB(problem, pc, kc, jc, nc, packedB);
                // The first depth block applies the caller's beta; later ones accumulate onto it.
                float beta = pc == 0 ? problem.Beta : 1f;
                for (int ic = rowStart; ic < rowEnd; ic += rowBlock)
                {
                    int mc = Math.Min(rowBlock, rowEnd - ic);
                    float* blockA = packedA;
                    if (sharedA != null)
                        blockA = sharedA + (nint)pc * paddedRows + (nint)ic * kc;
                    else
                        PackA(problem, ic, mc, pc, kc, packedA);
                    MultiplyPackedBlocks(kc, mc, nc, blockA, packedB,
                        problem.C + (nint)ic * problem.Ldc + jc, problem.Ldc, problem.Alpha, beta);
                }
            }
        }
    }

    /// <summary>Packs op(A)[rowStart..+rows, depthStart..+depth] into panels of <c>Rows</c> lanes.</summary>
    private static void PackA(in GemmProblem problem, int rowStart, int rows, int depthStart, int depth, float* packed)
    {
        int width = TKernel.Rows;
        for (int i = 0; i < rows; i += width)
        {
            int lanes = Math.Min(width, rows - i);
            float* panel = packed + (nint)i * depth;
            if (problem.TransposeA)
                GemmPacking.PackLanesContiguous(
                    problem.A + (nint)depthStart * problem.Lda + rowStart + i, problem.Lda, lanes, depth, panel, width);
            else
                GemmPacking.PackDepthContiguous(
                    problem.A + (nint)(rowStart + i) * problem.Lda + depthStart, problem.Lda, lanes, depth, panel, width);
        }
    }

    /// <summary>Packs op(B)[depthStart..+depth, colStart..+cols] into panels of <c>Cols</c> lanes.</summary>
    private static void PackB(in GemmProblem problem, int depthStart, int depth, int colStart, int cols, float* packed)
    {
        int width = TKernel.Cols;
        for (int j = 0; j < cols; j += width)
        {
            int lanes = Math.Min(width, cols - j);
            float* panel = packed + (nint)j * depth;
            if (problem.TransposeB)
                GemmPacking.PackDepthContiguous(
                    problem.B + (nint)(colStart + j) * problem.Ldb + depthStart, problem.Ldb, lanes, depth, panel, width);
            else
                GemmPacking.PackLanesContiguous(
                    problem.B + (nint)depthStart * problem.Ldb + colStart + j, problem.Ldb, lanes, depth, panel, width);
        }
    }

    /// <summary>
    /// Sweeps register tiles over a packed rows×cols block. Each B panel stays in L1 while the A panels of the
    /// block (sized for L2) stream past it; on the 2-core Zen dev machine this order measured 5-15 % faster than
    /// the opposite on the narrower shapes (out_proj, the backward forms) and the same on the rest.
    /// Edge tiles compute into a scratch tile and copy the part inside C.
    /// </summary>
    private static void MultiplyPackedBlocks(
        int depth, int rows, int cols, float* packedA, float* packedB, float* c, nint ldc, float alpha, float beta)
    {
        int tileRows = TKernel.Rows, tileCols = TKernel.Cols;
        float* edgeTile = stackalloc float[tileRows * tileCols];
        for (int j = 0; j < cols; j += tileCols)
        {
            int colsHere = Math.Min(tileCols, cols - j);
            float* panelB = packedB + (nint)j * depth;
            for (int i = 0; i < rows; i += tileRows)
            {
                int rowsHere = Math.Min(tileRows, rows - i);
                float* panelA = packedA + (nint)i * depth;
                float* tile = c + i * ldc + j;
                if (rowsHere == tileRows && colsHere == tileCols)
                {
                    TKernel.Run(depth, panelA, panelB, tile, ldc, alpha, beta);
                    continue;
                }

                TKernel.Run(depth, panelA, panelB, edgeTile, tileCols, 1f, 0f);
                for (int r = 0; r < rowsHere; r++)
                {
                    float* source = edgeTile + r * tileCols;
                    float* target = tile + r * ldc;
                    for (int s = 0; s < colsHere; s++)
                        target[s] = beta == 0 ? alpha * source[s] : alpha * source[s] + beta * target[s];
                }
            }
        }
    }

    private static int DivideRoundingUp(int value, int divisor) => (value + divisor - 1) / divisor;
}

/// <summary>
/// Per-thread packing memory of one fixed size, enough for a chunk of either blocked kernel, so a product allocates
/// nothing once warm. It is reserved up front (by each <see cref="WorkerTeam"/> helper when it starts and by a
/// calling thread when it enters a product), never grown on demand: otherwise a thread that first runs a chunk in a
/// later call (which chunks the caller runs depends on how the helpers are scheduled) would allocate then.
/// </summary>
internal static unsafe class GemmScratch
{
    private const int AlignmentFloats = 16;

    /// <summary>The floats one thread's packing needs: the larger of the two blocked kernels' op(A) plus op(B) blocks.</summary>
    public static int ChunkFloats { get; } = Math.Max(PackingFloats<Avx512Kernel>(), PackingFloats<Avx2Kernel>());

    [ThreadStatic]
    private static float[]? chunkStorage;

    [ThreadStatic]
    private static float[]? sharedStorage;

    /// <summary>The packing one chunk of <typeparamref name="TKernel"/> does: a RowBlock×DepthBlock block of op(A) and a DepthBlock×ColBlock block of op(B).</summary>
    public static int PackingFloats<TKernel>() where TKernel : struct, IGemmMicroKernel
        => TKernel.DepthBlock * (TKernel.RowBlock + TKernel.ColBlock);

    /// <summary>Allocates this thread's <see cref="ChunkFloats"/> of packing memory unless it has them already.</summary>
    public static void ReserveForThisThread()
    {
        chunkStorage ??= GC.AllocateUninitializedArray<float>(ChunkFloats + AlignmentFloats, pinned: true);
    }

    /// <summary>This thread's packing memory, 64-byte aligned, for <paramref name="floats"/> ≤ <see cref="ChunkFloats"/> floats.</summary>
    public static float* Get(int floats)
    {
        if ((uint)floats > (uint)ChunkFloats)
            throw new ArgumentOutOfRangeException(nameof(floats), floats, $"A thread's packing memory holds {ChunkFloats} floats.");
        ReserveForThisThread();
        return Aligned(chunkStorage!);
    }

    /// <summary>
    /// A buffer of at least <paramref name="floats"/> floats that the calling thread fills before a product and its
    /// helpers read during it. Only a product's calling thread asks for it, on every such call, so its size follows
    /// that thread's products whoever runs the chunks.
    /// </summary>
    public static float* GetShared(int floats)
    {
        if (sharedStorage is null || sharedStorage.Length < floats + AlignmentFloats)
            sharedStorage = GC.AllocateUninitializedArray<float>(floats + AlignmentFloats, pinned: true);
        return Aligned(sharedStorage);
    }

    private static float* Aligned(float[] storage)
    {
        nint address = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref storage[0]);
        return (float*)((address + 63) & ~(nint)63);
    }
}
