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
    }
}
