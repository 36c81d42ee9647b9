using BenchmarkDotNet.Attributes;

namespace MambaGen.Benchmarks;

/// <summary>A 130M-shaped Mamba (D 768, 24 layers, vocab 50277 padded to 50280) with random mamba_ssm initialisation.</summary>
[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm]
public partial class Mamba130M { }

/// <summary>
/// Whole forward pass of <see cref="Mamba130M"/> at batch 1, L 512: with logits for every position (what training and
/// scoring need) and with the last position's only (a prompt before generation, as llama.cpp reads one).
/// </summary>
public class ForwardBenchmark
{
    public const int SequenceLength = 512;

    private Mamba130M model = null!;
    private int[] tokens = null!;
    private float[] allLogits = null!, lastLogits = null!;

    [GlobalSetup]
    public void Setup() =>
        (model, tokens, allLogits, lastLogits) = (Mamba130M.Create(seed: 1), RandomTokens(), new float[SequenceLength * Mamba130M.Vocab], new float[Mamba130M.Vocab]);

    /// <summary>Every position's logits into a buffer the caller keeps.</summary>
    [Benchmark]
    public void Forward() => model.Forward(tokens, 1, allLogits);

    /// <summary>Every position's logits in a new array (the allocating overload).</summary>
    [Benchmark]
    public float[] ForwardNewArray() => model.Forward(tokens, batch: 1);

    /// <summary>The last position's logits only.</summary>
    [Benchmark]
    public void Prompt() => model.Forward(tokens, 1, lastLogits, LogitsFor.LastPosition);

    public static int[] RandomTokens()
    {
        var random = new Random(1);
        var ids = new int[SequenceLength];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = random.Next(50277);
        return ids;
    }

    /// <summary>
    /// Times whole forwards each way and prints ms, tokens/s and the matrix products' GFLOP/s as a share of peak;
    /// returns the (name, GFLOP/s) rows for the run's sanity check.
    /// </summary>
    public static List<(string Name, double Gflops)> RunQuick(double peakGflops, double budgetSeconds)
    {
        var benchmark = new ForwardBenchmark();
        benchmark.Setup();
        var all = ForwardFlops.Mamba130M(SequenceLength, headRows: SequenceLength);
        var last = ForwardFlops.Mamba130M(SequenceLength, headRows: 1);
        Console.WriteLine();
        Console.WriteLine($"Forward 130M, batch 1, L {SequenceLength}; GFLOP/s of the matrix products (all: {all.MatrixProducts / 1e9:F1} GFLOP, " +
                          $"last position: {last.MatrixProducts / 1e9:F1}), conv + scan ({(all.Convolution + all.Scan) / 1e9:F2} GFLOP) not counted");
        Console.WriteLine($"{"logits",-34} {"best ms",8} {"median ms",9} {"tokens/s",8} {"GFLOP/s",8} {"% peak",7}");
        var rows = new List<(string, double)>();
        foreach (var (name, flops, body) in new (string, ForwardFlops, Action)[]
                 {
                     ("every position, caller's buffer", all, benchmark.Forward),
                     ("every position, new array", all, () => benchmark.ForwardNewArray()),
                     ("last position only (prompt)", last, benchmark.Prompt),
                 })
        {
            var timing = QuickRun.Time(body, budgetSeconds, minRuns: 3);
            double gflops = flops.MatrixProducts / timing.Best / 1e9;
            Console.WriteLine($"{name,-34} {timing.Best * 1e3,8:F1} {timing.Median * 1e3,9:F1} {SequenceLength / timing.Best,8:F0} {gflops,8:F1} {100 * gflops / peakGflops,6:F1}%");
            rows.Add(($"forward, {name}", gflops));
        }

        return rows;
    }
}
