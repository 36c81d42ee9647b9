using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>
/// Measures this machine's single-precision fused multiply-add peak: each thread runs 16 independent FMA chains
/// on the widest hardware vector (enough chains to hide a 4-cycle latency on 2 FMA pipes, with room to spare) and
/// touches no memory, so the count of flops over the wall time is the arithmetic ceiling that GEMM and the
/// forward pass are judged against. An FMA counts as 2 flops per lane.
/// </summary>
public static class FmaPeak
{
    private const int Chains = 16;

    /// <summary>Lanes of the vector the chains run on.</summary>
    public static int VectorLanes { get; } =
        Vector512.IsHardwareAccelerated ? Vector512<float>.Count
        : Vector256.IsHardwareAccelerated ? Vector256<float>.Count
        : Vector128<float>.Count;

    /// <summary>
    /// Best GFLOP/s over <paramref name="repetitions"/> runs of <paramref name="threads"/> threads that start
    /// together, each doing <paramref name="iterations"/> rounds of <c>Chains</c> FMAs.
    /// </summary>
    public static double Measure(int threads, int repetitions = 7, int iterations = 20_000_000)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);

        // A short run first so every thread has the optimised code before timing starts.
        RunThreads(threads, Math.Min(iterations, 100_000));
        double best = 0;
        for (int r = 0; r < repetitions; r++)
        {
            double seconds = RunThreads(threads, iterations);
            double flops = 2.0 * VectorLanes * Chains * (double)iterations * threads;
            best = Math.Max(best, flops / seconds / 1e9);
        }

        return best;
    }

    /// <summary>
    /// Seconds from the first worker's start to the last one's end. The workers read the clock themselves: with as
    /// many workers as cores, the coordinating thread may not run again until one of them has finished.
    /// </summary>
    private static double RunThreads(int threads, int iterations)
    {
        using var start = new Barrier(threads);
        var sinks = new float[threads];
        var starts = new long[threads];
        var ends = new long[threads];
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int index = t;
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                starts[index] = Stopwatch.GetTimestamp();
                sinks[index] = RunChains(iterations);
                ends[index] = Stopwatch.GetTimestamp();
            }) { IsBackground = true };
            workers[t].Start();
        }

        foreach (var worker in workers)
            worker.Join();
        if (sinks.Any(float.IsNaN))
            throw new InvalidOperationException("The FMA chains diverged.");
        return (double)(ends.Max() - starts.Min()) / Stopwatch.Frequency;
    }

    /// <summary>Runs the chains x ← x·0.999 + 0.001 (fixed point 1, so no overflow or denormals) and sums them.</summary>
    private static float RunChains(int iterations) =>
        Vector512.IsHardwareAccelerated ? RunChains512(iterations)
        : Vector256.IsHardwareAccelerated ? RunChains256(iterations)
        : RunChains128(iterations);

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float RunChains512(int iterations)
    {
        var mul = Vector512.Create(0.999f);
        var add = Vector512.Create(0.001f);
        Vector512<float> x0 = Vector512.Create(0.1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
        Vector512<float> x8 = x0, x9 = x0, x10 = x0, x11 = x0, x12 = x0, x13 = x0, x14 = x0, x15 = x0;
        for (int i = 0; i < iterations; i++)
        {
            x0 = Vector512.FusedMultiplyAdd(x0, mul, add); x1 = Vector512.FusedMultiplyAdd(x1, mul, add);
            x2 = Vector512.FusedMultiplyAdd(x2, mul, add); x3 = Vector512.FusedMultiplyAdd(x3, mul, add);
            x4 = Vector512.FusedMultiplyAdd(x4, mul, add); x5 = Vector512.FusedMultiplyAdd(x5, mul, add);
            x6 = Vector512.FusedMultiplyAdd(x6, mul, add); x7 = Vector512.FusedMultiplyAdd(x7, mul, add);
            x8 = Vector512.FusedMultiplyAdd(x8, mul, add); x9 = Vector512.FusedMultiplyAdd(x9, mul, add);
            x10 = Vector512.FusedMultiplyAdd(x10, mul, add); x11 = Vector512.FusedMultiplyAdd(x11, mul, add);
            x12 = Vector512.FusedMultiplyAdd(x12, mul, add); x13 = Vector512.FusedMultiplyAdd(x13, mul, add);
            x14 = Vector512.FusedMultiplyAdd(x14, mul, add); x15 = Vector512.FusedMultiplyAdd(x15, mul, add);
        }

        var sum = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11)) + ((x12 + x13) + (x14 + x15));
        return Vector512.Sum(sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float RunChains256(int iterations)
    {
        var mul = Vector256.Create(0.999f);
        var add = Vector256.Create(0.001f);
        Vector256<float> x0 = Vector256.Create(0.1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
        Vector256<float> x8 = x0, x9 = x0, x10 = x0, x11 = x0, x12 = x0, x13 = x0, x14 = x0, x15 = x0;
        for (int i = 0; i < iterations; i++)
        {
            x0 = Vector256.FusedMultiplyAdd(x0, mul, add); x1 = Vector256.FusedMultiplyAdd(x1, mul, add);
            x2 = Vector256.FusedMultiplyAdd(x2, mul, add); x3 = Vector256.FusedMultiplyAdd(x3, mul, add);
            x4 = Vector256.FusedMultiplyAdd(x4, mul, add); x5 = Vector256.FusedMultiplyAdd(x5, mul, add);
            x6 = Vector256.FusedMultiplyAdd(x6, mul, add); x7 = Vector256.FusedMultiplyAdd(x7, mul, add);
            x8 = Vector256.FusedMultiplyAdd(x8, mul, add); x9 = Vector256.FusedMultiplyAdd(x9, mul, add);
            x10 = Vector256.FusedMultiplyAdd(x10, mul, add); x11 = Vector256.FusedMultiplyAdd(x11, mul, add);
            x12 = Vector256.FusedMultiplyAdd(x12, mul, add); x13 = Vector256.FusedMultiplyAdd(x13, mul, add);
            x14 = Vector256.FusedMultiplyAdd(x14, mul, add); x15 = Vector256.FusedMultiplyAdd(x15, mul, add);
        }

        var sum = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11)) + ((x12 + x13) + (x14 + x15));
        return Vector256.Sum(sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float RunChains128(int iterations)
    {
        var mul = Vector128.Create(0.999f);
        var add = Vector128.Create(0.001f);
        Vector128<float> x0 = Vector128.Create(0.1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
        Vector128<float> x8 = x0, x9 = x0, x10 = x0, x11 = x0, x12 = x0, x13 = x0, x14 = x0, x15 = x0;
        for (int i = 0; i < iterations; i++)
        {
            x0 = Vector128.FusedMultiplyAdd(x0, mul, add); x1 = Vector128.FusedMultiplyAdd(x1, mul, add);
            x2 = Vector128.FusedMultiplyAdd(x2, mul, add); x3 = Vector128.FusedMultiplyAdd(x3, mul, add);
            x4 = Vector128.FusedMultiplyAdd(x4, mul, add); x5 = Vector128.FusedMultiplyAdd(x5, mul, add);
            x6 = Vector128.FusedMultiplyAdd(x6, mul, add); x7 = Vector128.FusedMultiplyAdd(x7, mul, add);
            x8 = Vector128.FusedMultiplyAdd(x8, mul, add); x9 = Vector128.FusedMultiplyAdd(x9, mul, add);
            x10 = Vector128.FusedMultiplyAdd(x10, mul, add); x11 = Vector128.FusedMultiplyAdd(x11, mul, add);
            x12 = Vector128.FusedMultiplyAdd(x12, mul, add); x13 = Vector128.FusedMultiplyAdd(x13, mul, add);
            x14 = Vector128.FusedMultiplyAdd(x14, mul, add); x15 = Vector128.FusedMultiplyAdd(x15, mul, add);
        }

        var sum = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11)) + ((x12 + x13) + (x14 + x15));
        return Vector128.Sum(sum);
    }
}
