using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>
/// A register-blocked micro-kernel: C[Rows×Cols] = alpha·Σₚ a[p]ᵀ·b[p] + beta·C over packed panels, where the A panel
/// holds <see cref="Rows"/> floats per depth step and the B panel <see cref="Cols"/> floats per depth step
/// (64-byte aligned). The block sizes travel with the kernel because they are tuned to its register tile.
/// Implemented by structs so the blocked driver is specialised per kernel and these constants fold.
/// </summary>
internal unsafe interface IGemmMicroKernel
{
    /// <summary>Rows of the register tile (MR).</summary>
    static abstract int Rows { get; }

    /// <summary>Columns of the register tile (NR).</summary>
    static abstract int Cols { get; }

    /// <summary>Depth of one packed block (KC): a B micro-panel is DepthBlock×Cols floats.</summary>
    static abstract int DepthBlock { get; }

    /// <summary>Rows of A packed at once (MC), a multiple of <see cref="Rows"/>.</summary>
    static abstract int RowBlock { get; }

    /// <summary>Columns of B packed at once (NC), a multiple of <see cref="Cols"/>.</summary>
    static abstract int ColBlock { get; }

    /// <summary>
    /// Multiplies a packed A panel (depth×Rows) by a packed B panel (depth×Cols) into the full tile at
    /// <paramref name="c"/>. beta = 0 writes without reading C.
    /// </summary>
    static abstract void Run(int depth, float* a, float* b, float* c, nint ldc, float alpha, float beta);
}

/// <summary>
/// AVX-512 kernel: an 8×48 tile held in 24 zmm accumulators (3 vectors of B, one broadcast of A, 28 of the 32
/// registers). 24 independent FMA chains cover the FMA latency × throughput of current x86 cores (4 cycles × 2 pipes).
/// </summary>
internal readonly unsafe struct Avx512Kernel : IGemmMicroKernel
{
    public static int Rows => 8;
    public static int Cols => 48;
    public static int DepthBlock => 256;
    public static int RowBlock => 128;
    public static int ColBlock => 480;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int depth, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default;
        Vector512<float> c60 = default, c61 = default, c62 = default;
        Vector512<float> c70 = default, c71 = default, c72 = default;
        for (int p = 0; p < depth; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01); c02 = Vector512.FusedMultiplyAdd(ai, b2, c02);
            ai = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11); c12 = Vector512.FusedMultiplyAdd(ai, b2, c12);
            ai = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21); c22 = Vector512.FusedMultiplyAdd(ai, b2, c22);
            ai = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31); c32 = Vector512.FusedMultiplyAdd(ai, b2, c32);
            ai = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41); c42 = Vector512.FusedMultiplyAdd(ai, b2, c42);
            ai = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51); c52 = Vector512.FusedMultiplyAdd(ai, b2, c52);
            ai = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61); c62 = Vector512.FusedMultiplyAdd(ai, b2, c62);
            ai = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ai, b0, c70); c71 = Vector512.FusedMultiplyAdd(ai, b1, c71); c72 = Vector512.FusedMultiplyAdd(ai, b2, c72);
            a += 8;
            b += 48;
        }

        var alphas = Vector512.Create(alpha);
        if (beta == 0)
        {
            Put(c, alphas, c00, c01, c02); c += ldc;
            Put(c, alphas, c10, c11, c12); c += ldc;
            Put(c, alphas, c20, c21, c22); c += ldc;
            Put(c, alphas, c30, c31, c32); c += ldc;
            Put(c, alphas, c40, c41, c42); c += ldc;
            Put(c, alphas, c50, c51, c52); c += ldc;
            Put(c, alphas, c60, c61, c62); c += ldc;
            Put(c, alphas, c70, c71, c72);
        }
        else
        {
            var betas = Vector512.Create(beta);
            Update(c, alphas, betas, c00, c01, c02); c += ldc;
            Update(c, alphas, betas, c10, c11, c12); c += ldc;
            Update(c, alphas, betas, c20, c21, c22); c += ldc;
            Update(c, alphas, betas, c30, c31, c32); c += ldc;
            Update(c, alphas, betas, c40, c41, c42); c += ldc;
            Update(c, alphas, betas, c50, c51, c52); c += ldc;
            Update(c, alphas, betas, c60, c61, c62); c += ldc;
            Update(c, alphas, betas, c70, c71, c72);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector512<float> alpha, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2)
    {
        Vector512.Store(alpha * x0, c);
        Vector512.Store(alpha * x1, c + 16);
        Vector512.Store(alpha * x2, c + 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* c, Vector512<float> alpha, Vector512<float> beta, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2)
    {
        Vector512.Store(Vector512.FusedMultiplyAdd(alpha, x0, beta * Vector512.Load(c)), c);
        Vector512.Store(Vector512.FusedMultiplyAdd(alpha, x1, beta * Vector512.Load(c + 16)), c + 16);
        Vector512.Store(Vector512.FusedMultiplyAdd(alpha, x2, beta * Vector512.Load(c + 32)), c + 32);
    }
}

/// <summary>
/// AVX2 + FMA kernel: a 6×16 tile in 12 ymm accumulators (2 vectors of B, one broadcast of A; 15 of the 16
/// registers), the classic Haswell-class shape.
/// </summary>
internal readonly unsafe struct Avx2Kernel : IGemmMicroKernel
{
    public static int Rows => 6;
    public static int Cols => 16;
    public static int DepthBlock => 256;
    public static int RowBlock => 96;
    public static int ColBlock => 512;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int depth, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default;
        Vector256<float> c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default;
        Vector256<float> c50 = default, c51 = default;
        for (int p = 0; p < depth; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00); c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10); c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20); c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30); c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40); c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50); c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            a += 6;
            b += 16;
        }

        var alphas = Vector256.Create(alpha);
        if (beta == 0)
        {
            Put(c, alphas, c00, c01); c += ldc;
            Put(c, alphas, c10, c11); c += ldc;
            Put(c, alphas, c20, c21); c += ldc;
            Put(c, alphas, c30, c31); c += ldc;
            Put(c, alphas, c40, c41); c += ldc;
            Put(c, alphas, c50, c51);
        }
        else
        {
            var betas = Vector256.Create(beta);
            Update(c, alphas, betas, c00, c01); c += ldc;
            Update(c, alphas, betas, c10, c11); c += ldc;
            Update(c, alphas, betas, c20, c21); c += ldc;
            Update(c, alphas, betas, c30, c31); c += ldc;
            Update(c, alphas, betas, c40, c41); c += ldc;
            Update(c, alphas, betas, c50, c51);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector256<float> alpha, Vector256<float> x0, Vector256<float> x1)
    {
        Vector256.Store(alpha * x0, c);
        Vector256.Store(alpha * x1, c + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* c, Vector256<float> alpha, Vector256<float> beta, Vector256<float> x0, Vector256<float> x1)
    {
        Vector256.Store(Vector256.FusedMultiplyAdd(alpha, x0, beta * Vector256.Load(c)), c);
        Vector256.Store(Vector256.FusedMultiplyAdd(alpha, x1, beta * Vector256.Load(c + 8)), c + 8);
    }
}
