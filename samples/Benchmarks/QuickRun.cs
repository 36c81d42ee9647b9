using System.Diagnostics;
using MambaGen.Cpu;

namespace MambaGen.Benchmarks;

/// <summary>
/// Options of the quick mode: <c>--threads N</c>, <c>--shape TEXT</c> (substring filter; skips the forward),
/// <c>--seconds S</c> per item, <c>--forward</c> (the whole forward and its stages only, no GEMM table).
/// </summary>
public sealed record QuickOptions(int Threads, string? ShapeFilter, double SecondsPerItem, bool ForwardOnly)
{
    public static QuickOptions Parse(string[] args)
    {
        int threads = Environment.ProcessorCount;
        string? filter = null;
        double seconds = 1.5;
        bool forwardOnly = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--quick": break;
                case "--threads":
                    threads = int.Parse(Next());
                    if (threads < 1 || threads > WorkerPool.Concurrency)
                        throw new ArgumentException($"--threads takes 1 to {WorkerPool.Concurrency} (this machine's logical CPUs), not {threads}.");
                    break;
                case "--shape": filter = Next(); break;
                case "--forward": forwardOnly = true; break;
                case "--seconds": seconds = double.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"Unknown option {args[i]}; quick mode takes --threads N, --shape TEXT, --seconds S, --forward.");
            }
        }

        return new QuickOptions(threads, filter, seconds, forwardOnly);
    }
}

/// <summary>
/// Times every item with a Stopwatch: a warm-up call, then repeated calls until the time budget is used (at least
/// 5), reporting the best and the median. The best is the figure least disturbed by other processes on a shared
/// machine; the median shows how noisy it was.
/// </summary>
public static class QuickRun
{
    public static void Run(QuickOptions options)
    {
        // Every loop of the run (products, conv, scan, the peak itself) on the same number of threads, so each
        // share below is of the peak of that many threads.
        WorkerPool.MaxThreads = options.Threads;
        Gemm.MaxDegreeOfParallelism = options.Threads;
        Console.WriteLine($"Device: {MachineDescription()}, {Environment.ProcessorCount} logical CPUs; .NET {Environment.Version}");

        double peakOne = FmaPeak.Measure(1);
        double peakAll = options.Threads == 1 ? peakOne : FmaPeak.Measure(options.Threads);
        Console.WriteLine($"FP32 FMA peak ({FmaPeak.VectorLanes}-lane vectors, {FmaPeak.Chains} chains): 1 thread {peakOne:F1} GFLOP/s" +
                          (options.Threads == 1 ? "" : $", {options.Threads} threads {peakAll:F1} GFLOP/s"));
        Console.WriteLine();
        var measured = new List<(string Name, double Gflops)>();

        Console.WriteLine($"GEMM on {options.Threads} thread(s); % of the {options.Threads}-thread peak");
        Console.WriteLine($"{"shape",-18} {"m",6} {"n",6} {"k",5} {"best ms",9} {"median ms",9} {"GFLOP/s",8} {"% peak",7} {"median GF/s",11}");
        double forwardSeconds = 0, forwardFlops = 0;
        foreach (var shape in GemmShape.Mamba130M)
        {
            if (options.ForwardOnly)
                break;
            if (options.ShapeFilter is { } filter && !shape.Name.Contains(filter, StringComparison.OrdinalIgnoreCase))
                continue;
            var timing = TimeGemm(shape, options.SecondsPerItem);
            double gflops = shape.Flops / timing.Best / 1e9;
            Console.WriteLine($"{shape.Name,-18} {shape.M,6} {shape.N,6} {shape.K,5} {timing.Best * 1e3,9:F3} {timing.Median * 1e3,9:F3} " +
                              $"{gflops,8:F1} {100 * gflops / peakAll,6:F1}% {shape.Flops / timing.Median / 1e9,11:F1}");
            measured.Add((shape.Name, gflops));
            forwardSeconds += shape.TimesPerForward * timing.Best;
            forwardFlops += shape.TimesPerForward * shape.Flops;
        }

        if (options.ShapeFilter is null && !options.ForwardOnly)
        {
            double gflops = forwardFlops / forwardSeconds / 1e9;
            Console.WriteLine();
            Console.WriteLine($"Matrix products of one 130M forward (24 layers + head, L 512): {forwardFlops / 1e9:F1} GFLOP in " +
                              $"{forwardSeconds * 1e3:F1} ms (sum of best times) = {gflops:F1} GFLOP/s, {100 * gflops / peakAll:F1}% of peak");
        }

        if (options.ShapeFilter is null)
        {
            measured.AddRange(ForwardBenchmark.RunQuick(peakAll, options.SecondsPerItem));
            ForwardStages.Run(options.SecondsPerItem);
        }
        CheckSharesOfPeak(measured, peakAll, options.Threads);
    }

    /// <summary>
    /// Nothing can run faster than the FMA peak of as many threads, so a share above 100 % means the peak was
    /// measured wrong (disturbed, or chains that spill). The peak is taken again now that the run is over; if a
    /// figure still beats it, the run reports it and exits with code 1.
    /// </summary>
    private static void CheckSharesOfPeak(List<(string Name, double Gflops)> measured, double peakBefore, int threads)
    {
        double peakAfter = FmaPeak.Measure(threads);
        double peak = Math.Max(peakBefore, peakAfter);
        Console.WriteLine();
        Console.WriteLine($"FMA peak on {threads} thread(s) taken again after the run: {peakAfter:F1} GFLOP/s (before: {peakBefore:F1})" +
                          (peakAfter > 1.03 * peakBefore ? $"; the shares above are of {peakBefore:F1}, the higher figure makes them {peakBefore / peakAfter:P0} as large" : ""));
        var impossible = measured.Where(row => row.Gflops > peak).ToList();
        foreach (var (name, gflops) in impossible)
            Console.Error.WriteLine($"Sanity check failed: {name} ran at {gflops:F1} GFLOP/s, {100 * gflops / peak:F0}% of the {peak:F1} GFLOP/s " +
                                    $"FMA peak of {threads} thread(s); the peak must be wrong.");
        if (impossible.Count > 0)
            Environment.ExitCode = 1;
    }

    public readonly record struct Timing(double Best, double Median, int Runs);

    /// <summary>Best and median seconds of repeated calls of <paramref name="action"/> after one warm-up call.</summary>
    public static Timing Time(Action action, double budgetSeconds, int minRuns = 5)
    {
        action();
        var samples = new List<double>();
        var total = Stopwatch.StartNew();
        while (samples.Count < minRuns || total.Elapsed.TotalSeconds < budgetSeconds)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
            if (samples.Count >= 1000)
                break;
        }

        samples.Sort();
        return new Timing(samples[0], samples[samples.Count / 2], samples.Count);
    }

    private static Timing TimeGemm(GemmShape shape, double budgetSeconds)
    {
        var operands = GemmOperands.Create(shape, seed: 1);
        return Time(operands.Multiply, budgetSeconds);
    }

    private static string MachineDescription()
    {
        const string key = "model name";
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return System.Runtime.InteropServices.RuntimeInformation.OSDescription;
    }
}

/// <summary>Random operands of one shape, with leading dimensions equal to the stored widths.</summary>
public sealed class GemmOperands
{
    private readonly GemmShape shape;
    private readonly float[] a, b, c;

    private GemmOperands(GemmShape shape, float[] a, float[] b, float[] c) => (this.shape, this.a, this.b, this.c) = (shape, a, b, c);

    public static GemmOperands Create(GemmShape shape, int seed)
    {
        var random = new Random(seed);
        float[] Fill(int length)
        {
            var values = new float[length];
            for (int i = 0; i < length; i++)
                values[i] = (float)(random.NextDouble() * 2 - 1);
            return values;
        }

        return new GemmOperands(shape, Fill(shape.M * shape.K), Fill(shape.K * shape.N), new float[shape.M * shape.N]);
    }

    public void Multiply()
    {
        int lda = shape.TransposeA ? shape.M : shape.K;
        int ldb = shape.TransposeB ? shape.K : shape.N;
        Gemm.Multiply(shape.TransposeA, shape.TransposeB, shape.M, shape.N, shape.K, 1f, a, lda, b, ldb, 0f, c, shape.N);
    }
}
