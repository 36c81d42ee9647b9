using System.Diagnostics;
using MambaGen.Cpu;

namespace MambaGen.Benchmarks;

/// <summary>
/// <c>--decode</c>: one-token decode steps of <see cref="Mamba130M"/> (random weights, batch 1) after a 128-token prompt,
/// with the weights in fp32, bfloat16 and IEEE half (<c>UseHalfPrecisionWeights</c>). Each precision runs
/// <c>--rounds</c> rounds of <c>--steps</c> steps; the best and the median round are printed as tokens/s, with the
/// gigabytes of weights per second the best round read: every matrix of the step (in_proj, x_proj, dt_proj, out_proj,
/// the head) once per token. The load average is printed before each precision.
/// </summary>
public static class DecodeRun
{
    public const int PromptLength = 128;

    public static void Run(string[] args)
    {
        int steps = 64, rounds = 7, threads = Environment.ProcessorCount;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--decode": break;
                case "--steps": steps = int.Parse(Next()); break;
                case "--rounds": rounds = int.Parse(Next()); break;
                case "--threads": threads = int.Parse(Next()); break;
                default: throw new ArgumentException($"Unknown option {args[i]}; decode mode takes --steps N, --rounds N, --threads N.");
            }
        }
        if (steps < 1 || rounds < 1 || threads < 1 || threads > WorkerPool.Concurrency)
            throw new ArgumentException($"--steps and --rounds must be ≥ 1 and --threads in [1, {WorkerPool.Concurrency}].");
        WorkerPool.MaxThreads = threads;
        Gemm.MaxDegreeOfParallelism = threads;

        long perLayer = 2L * Mamba130M.DInner * Mamba130M.DModel + (long)Mamba130M.XProjRows * Mamba130M.DInner +
                        (long)Mamba130M.DInner * Mamba130M.DtRank + (long)Mamba130M.DModel * Mamba130M.DInner;
        long matrixWeights = Mamba130M.Layers * perLayer + (long)Mamba130M.Vocab * Mamba130M.DModel;
        Console.WriteLine($"Decode, 130M shape, batch 1, {threads} threads, prompt {PromptLength}, {rounds} rounds of {steps} steps; " +
                          $"{matrixWeights / 1e6:F1} M matrix weights read per token. Vector path: {HalfGemv.BestPathName}.");

        Console.WriteLine($"  memory read bandwidth (sum of a 512 MB array, {threads} threads): best {ReadBandwidth(threads):F1} GB/s");
        HeadAlone(threads);
        LayerProductsAlone();
        var model = Mamba130M.Create(seed: 1);
        var random = new Random(2);
        var prompt = Enumerable.Range(0, PromptLength).Select(_ => random.Next(Mamba130M.Vocab)).ToArray();
        var feed = Enumerable.Range(0, steps).Select(_ => random.Next(Mamba130M.Vocab)).ToArray();
        var logits = new float[Mamba130M.Vocab];
        foreach (var precision in new HalfPrecision?[] { null, HalfPrecision.BFloat16, HalfPrecision.Float16 })
        {
            model.UseHalfPrecisionWeights(precision);
            var state = model.CreateDecodeState(1);
            var times = new List<double>();
            string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
            for (int round = 0; round <= rounds; round++)
            {
                state.Reset();
                model.Advance(state, prompt, logits);
                long start = Stopwatch.GetTimestamp();
                for (int step = 0; step < steps; step++)
                    model.Advance(state, feed.AsSpan(step, 1), logits);
                if (round > 0) times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);   // round 0 warms up
            }
            times.Sort();
            double best = steps / times[0], median = steps / times[times.Count / 2];
            int bytes = precision is null ? 4 : 2;
            Console.WriteLine($"  {precision?.ToString() ?? "Float32",-9} load {load,5}: best {best,7:F1} tok/s, median {median,7:F1} tok/s, " +
                              $"{best * matrixWeights * bytes / 1e9,6:F1} GB/s of weights");
        }

        // The whole loop as an application runs it: decode steps plus sampling (T 0.8, top-k 50, top-p 0.95), bfloat16.
        model.UseHalfPrecisionWeights(HalfPrecision.BFloat16);
        var options = new MambaGen.Generation.GenerationOptions
        {
            MaxNewTokens = steps + 1, Temperature = 0.8f, TopK = 50, TopP = 0.95f, Seed = 1, StopAtEndOfSequence = false,
        };
        double bestGeneration = 0;
        for (int round = 0; round <= rounds; round++)
        {
            var session = new MambaGen.Generation.GenerationSession(model, [prompt], options);
            session.Run();
            if (round > 0) bestGeneration = Math.Max(bestGeneration, session.Statistics.DecodeTokensPerSecond);
        }
        Console.WriteLine($"  generation with sampling (T 0.8, top-k 50, top-p 0.95), bfloat16: best {bestGeneration:F1} tok/s");
    }

    /// <summary>The head's product alone (50,280 × 768, one row), fp32 through Gemm and 16-bit through HalfGemv: best of 15 calls.</summary>
    private static void HeadAlone(int threads)
    {
        int n = Mamba130M.Vocab, k = Mamba130M.DModel;
        var random = new Random(3);
        var x = Enumerable.Range(0, k).Select(_ => (float)random.NextDouble()).ToArray();
        var weights = Enumerable.Range(0, n * k).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var bits = new ushort[weights.Length];
        var y = new float[n];
        string Time(Action product, int bytes)
        {
            double best = double.MaxValue;
            for (int trial = 0; trial < 16; trial++)
            {
                long start = Stopwatch.GetTimestamp();
                product();
                if (trial > 0) best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            return $"{best * 1e3:F2} ms, {(double)n * k * bytes / best / 1e9:F1} GB/s";
        }
        Console.Write($"  head product alone ({threads} threads): fp32 {Time(() => Gemm.Multiply(false, true, 1, n, k, 1f, x, k, weights, k, 0f, y, n), 4)}");
        foreach (var format in new[] { HalfPrecision.BFloat16, HalfPrecision.Float16 })
        {
            HalfWeights.Round(weights, bits, format);
            Console.Write($"; {format} {Time(() => HalfGemv.Multiply(format, 1, n, k, x, k, bits, false, y, n), 2)}");
        }
        Console.WriteLine();
    }

    /// <summary>
    /// The layer products of one decode step alone, in bfloat16, each over 24 different matrices as in the model (so they
    /// come from memory, not the cache): their total is the floor of a step's layer time at this kernel's speed.
    /// </summary>
    private static void LayerProductsAlone()
    {
        var shapes = new (string Name, int N, int K)[]
        {
            ("in_proj x", Mamba130M.DInner, Mamba130M.DModel), ("in_proj z", Mamba130M.DInner, Mamba130M.DModel),
            ("x_proj", Mamba130M.XProjRows, Mamba130M.DInner), ("dt_proj", Mamba130M.DInner, Mamba130M.DtRank),
            ("out_proj", Mamba130M.DModel, Mamba130M.DInner),
        };
        var random = new Random(4);
        double total = 0;
        Console.Write("  layer products alone, bf16, ×24 layers:");
        foreach (var (name, n, k) in shapes)
        {
            var matrices = Enumerable.Range(0, Mamba130M.Layers).Select(_ => Enumerable.Range(0, n * k).Select(_ => (ushort)random.Next(0x3C00, 0x3D00)).ToArray()).ToArray();
            var x = new float[k];
            var y = new float[n];
            double best = double.MaxValue;
            for (int trial = 0; trial < 11; trial++)
            {
                long start = Stopwatch.GetTimestamp();
                foreach (var w in matrices) HalfGemv.Multiply(HalfPrecision.BFloat16, 1, n, k, x, k, w, false, y, n);
                if (trial > 0) best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            total += best;
            Console.Write($" {name} {best * 1e3:F2} ms ({24.0 * n * k * 2 / best / 1e9:F1} GB/s);");
        }
        Console.WriteLine($" total {total * 1e3:F2} ms");
    }

    /// <summary>
    /// What streaming reads reach here: the best of 7 sums of a 512 MB array (far beyond the caches), split in 64 chunks
    /// over the worker threads — the ceiling for a decode step, which streams its weights the same way.
    /// </summary>
    private static double ReadBandwidth(int threads)
    {
        const int chunks = 64;
        var data = new float[128 << 20];
        data.AsSpan().Fill(1f);
        int chunk = data.Length / chunks;
        var sums = new float[chunks];
        double best = 0;
        for (int trial = 0; trial < 7; trial++)
        {
            long start = Stopwatch.GetTimestamp();
            WorkerPool.For(chunks, c => sums[c] = System.Numerics.Tensors.TensorPrimitives.Sum(data.AsSpan(c * chunk, chunk)), threads);
            best = Math.Max(best, data.Length * 4.0 / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9);
        }
        if (sums.Sum() != data.Length) throw new InvalidOperationException("The bandwidth probe summed wrongly.");
        return best;
    }
}
