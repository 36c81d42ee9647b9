using BenchmarkDotNet.Attributes;

namespace MambaGen.Benchmarks;

/// <summary>A 130M-shaped Mamba (D 768, 24 layers, vocab 50277 padded to 50280) with random mamba_ssm initialisation.</summary>
[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm]
public partial class Mamba130M { }

/// <summary>
/// Whole forward pass of <see cref="Mamba130M"/> at batch 1, L 512.
/// </summary>
public class ForwardBenchmark
{
    public const int SequenceLength = 512;

    private Mamba130M model = null!;
    private int[] tokens = null!;

    [GlobalSetup]
    public void Setup() => (model, tokens) = (Mamba130M.Create(seed: 1), RandomTokens());

    [Benchmark]
    public float[] Forward() => model.Forward(tokens, batch: 1);

    public static int[] RandomTokens()
    {
        var random = new Random(1);
        var ids = new int[SequenceLength];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = random.Next(50277);
        return ids;
    }

    /// <summary>
    /// Times whole forwards and prints ms, tokens/s and the matrix-product GFLOP/s as a share of peak; returns that
    /// GFLOP/s.
    /// </summary>
    public static double RunQuick(double peakGflops, double budgetSeconds)
    {
        var flops = ForwardFlops.Mamba130M(SequenceLength);
        Console.WriteLine();
        var benchmark = new ForwardBenchmark();
        benchmark.Setup();
        var timing = QuickRun.Time(() => benchmark.Forward(), budgetSeconds, minRuns: 3);
        double gflops = flops.MatrixProducts / timing.Best / 1e9;
        double allGflops = (flops.MatrixProducts + flops.Convolution + flops.Scan) / timing.Best / 1e9;
        Console.WriteLine($"Forward 130M, batch 1, L {SequenceLength}: best {timing.Best * 1e3:F1} ms, median {timing.Median * 1e3:F1} ms " +
                          $"({timing.Runs} runs), {SequenceLength / timing.Best:F0} tokens/s");
        Console.WriteLine($"  matrix products {flops.MatrixProducts / 1e9:F1} GFLOP -> {gflops:F1} GFLOP/s = {100 * gflops / peakGflops:F1}% of peak; " +
                          $"counting conv + scan too ({(flops.Convolution + flops.Scan) / 1e9:F2} GFLOP): {allGflops:F1} GFLOP/s");
        return gflops;
    }
}
