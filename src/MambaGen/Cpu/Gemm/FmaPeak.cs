using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>
/// Measures this machine's single-precision fused multiply-add peak: each thread runs <see cref="Chains"/>
/// independent FMA chains on the widest hardware vector and touches no memory, so the count of flops over the wall
/// time is the arithmetic ceiling that GEMM and the forward pass are judged against. An FMA counts as 2 flops per lane.
/// </summary>
/// <remarks>
/// The chains run on <see cref="WorkerPool"/>'s threads, the ones products run on. Each trial is short and the
/// trials are spread over a second or two, the best one kept: a process that is busy for part of that time (the
/// parent of <c>dotnet run</c> is, for its first seconds) costs some trials, not the figure.
/// </remarks>
public static class FmaPeak
{
    /// <summary>
    /// Independent chains per thread. Current x86 cores retire 2 FMAs per cycle with a latency of 4 (Intel) or
    /// 3–4 (AMD Zen) cycles, so 8 chains already keep both pipes busy; 12 leave slack yet, with the multiplier
    /// and the addend, fit in the 16 vector registers of AVX2 (32 with AVX-512, 32 on Arm64). More chains than
    /// registers spill to memory, and the loads and stores slow the chains: 16 chains on AVX2 read a peak below
    /// the hardware's, and GEMM above 100 % of it.
    /// </summary>
    public const int Chains = 12;

    /// <summary>Lanes of the vector the chains run on.</summary>
    public static int VectorLanes { get; } =
        Width512.IsHardwareAccelerated ? Width512.Count
        : Width256.IsHardwareAccelerated ? Width256.Count
        : Width128.Count;

    /// <summary>
    /// Best GFLOP/s of <paramref name="trials"/> trials, each <paramref name="threads"/> threads running their chains
    /// at once for about <paramref name="trialSeconds"/>, the trials spread evenly over
    /// <paramref name="spreadSeconds"/>. A trial in which fewer threads than asked ran at once is not counted.
    /// </summary>
    public static double Measure(int threads, int trials = 15, double trialSeconds = 0.02, double spreadSeconds = 1.5)
    {
        int usable = Math.Min(WorkerPool.Concurrency, WorkerPool.MaxThreads);
        if (threads < 1 || threads > usable)
            throw new ArgumentOutOfRangeException(nameof(threads), threads,
                $"The peak is measured on WorkerPool's threads: 1 to {usable} (WorkerPool.Concurrency {WorkerPool.Concurrency}, " +
                $"WorkerPool.MaxThreads {WorkerPool.MaxThreads}).");
        ArgumentOutOfRangeException.ThrowIfLessThan(trials, 1);
        if (!(trialSeconds > 0) || !(spreadSeconds >= 0))
            throw new ArgumentOutOfRangeException(nameof(trialSeconds),
                $"trialSeconds must be > 0 and spreadSeconds ≥ 0; were {trialSeconds} and {spreadSeconds}.");

        var run = new TrialRun(threads, IterationsLasting(trialSeconds));
        double best = 0;
        int counted = 0;
        for (int trial = 0; trial < trials; trial++)
        {
            if (trial > 0)
                Thread.Sleep(TimeSpan.FromSeconds(spreadSeconds / trials));
            if (run.Run() is { } seconds)
            {
                counted++;
                best = Math.Max(best, 2.0 * VectorLanes * Chains * run.Iterations * threads / seconds / 1e9);
            }
        }

        if (counted == 0)
            throw new InvalidOperationException(
                $"In none of {trials} trials did {threads} threads run at once; the machine is too busy to measure the peak.");
        return best;
    }

    /// <summary>Iterations that take about <paramref name="seconds"/> on one thread, timed after a warm-up run.</summary>
    private static long IterationsLasting(double seconds)
    {
        const long probe = 1_000_000;
        RunChains(probe);
        long start = Stopwatch.GetTimestamp();
        RunChains(probe);
        double probeSeconds = Math.Max(Stopwatch.GetElapsedTime(start).TotalSeconds, 1e-6);
        return Math.Max(1000, (long)(probe * seconds / probeSeconds));
    }

    /// <summary>One thread count's trials: every index of a loop of <c>threads</c> runs the chains once.</summary>
    private sealed class TrialRun
    {
        private readonly int threads;
        private readonly long[] starts, ends;
        private readonly int[] threadIds;
        private readonly float[] sinks;
        private readonly Action<int> body;

        public TrialRun(int threads, long iterations)
        {
            (this.threads, Iterations) = (threads, iterations);
            (starts, ends, threadIds, sinks) = (new long[threads], new long[threads], new int[threads], new float[threads]);
            // Each thread reads the clock itself: with as many threads as cores, one that coordinated them might
            // not run again until another has finished.
            body = index =>
            {
                threadIds[index] = Environment.CurrentManagedThreadId;
                starts[index] = Stopwatch.GetTimestamp();
                sinks[index] = RunChains(Iterations);
                ends[index] = Stopwatch.GetTimestamp();
            };
        }

        public long Iterations { get; }

        /// <summary>Seconds from the first start to the last end, or null when fewer threads than asked took part.</summary>
        public double? Run()
        {
            WorkerPool.For(threads, body, threads);
            if (sinks.Any(float.IsNaN))
                throw new InvalidOperationException("The FMA chains diverged.");
            if (threadIds.Distinct().Count() < threads)
                return null;
            return (double)(ends.Max() - starts.Min()) / Stopwatch.Frequency;
        }
    }

    /// <summary>The chains on the widest vector this machine runs in hardware.</summary>
    private static float RunChains(long iterations) =>
        Width512.IsHardwareAccelerated ? RunChains<Width512, Vector512<float>>(iterations)
        : Width256.IsHardwareAccelerated ? RunChains<Width256, Vector256<float>>(iterations)
        : RunChains<Width128, Vector128<float>>(iterations);

    /// <summary>
    /// Runs the <see cref="Chains"/> chains x ← x·0.999 + 0.001 (fixed point 1, so no overflow or denormals) and
    /// sums them, so the JIT cannot drop the work.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float RunChains<TWidth, TVector>(long iterations)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        TVector multiplier = TWidth.Create(0.999f), addend = TWidth.Create(0.001f);
        TVector x0 = TWidth.Create(0.1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
        TVector x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (long i = 0; i < iterations; i++)
        {
            x0 = TWidth.Fma(x0, multiplier, addend); x1 = TWidth.Fma(x1, multiplier, addend);
            x2 = TWidth.Fma(x2, multiplier, addend); x3 = TWidth.Fma(x3, multiplier, addend);
            x4 = TWidth.Fma(x4, multiplier, addend); x5 = TWidth.Fma(x5, multiplier, addend);
            x6 = TWidth.Fma(x6, multiplier, addend); x7 = TWidth.Fma(x7, multiplier, addend);
            x8 = TWidth.Fma(x8, multiplier, addend); x9 = TWidth.Fma(x9, multiplier, addend);
            x10 = TWidth.Fma(x10, multiplier, addend); x11 = TWidth.Fma(x11, multiplier, addend);
        }

        var sum = TWidth.Add(
            TWidth.Add(TWidth.Add(TWidth.Add(x0, x1), TWidth.Add(x2, x3)), TWidth.Add(TWidth.Add(x4, x5), TWidth.Add(x6, x7))),
            TWidth.Add(TWidth.Add(x8, x9), TWidth.Add(x10, x11)));
        return TWidth.Sum(sum);
    }
}
