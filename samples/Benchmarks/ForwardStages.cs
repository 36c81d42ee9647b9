using System.Reflection;
using MambaGen.Cpu;

namespace MambaGen.Benchmarks;

/// <summary>
/// Where the 130M forward's time goes: each stage of the pipeline timed on its own with the forward's exact arguments
/// (shapes, strides, β), multiplied by how often one forward runs it, next to the whole forward. The gap between the
/// sum and the whole is what no single stage shows: thread hand-offs between stages and cache misses on weights and
/// activations that a stage repeated in isolation finds warm.
/// </summary>
/// <remarks>
/// The norm, embedding and products call the public runtime ops on buffers of the forward's sizes. The convolution,
/// the scan and the per-layer constants are private to the generated model, so they are reached by reflection after a
/// forward has left its buffers filled; the names are those the generator emits.
/// </remarks>
public static class ForwardStages
{
    private const int D = 768, ED = 1536, N = 16, R = 48, Vocab = 50280, XProjRows = R + 2 * N;
    private const int Layers = ForwardFlops.Layers130M, Length = ForwardBenchmark.SequenceLength;

    public static void Run(double budgetSeconds)
    {
        var model = Mamba130M.Create(seed: 1);
        var tokens = ForwardBenchmark.RandomTokens();
        var logits = new float[Length * Vocab];
        var lastLogits = new float[Vocab];
        var p = model.Parameters.Values;
        var layer0 = Mamba130M.Layout.LayerOffsets[0];
        var random = new Random(2);
        float[] Random(int length)
        {
            var values = new float[length];
            for (int i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
            return values;
        }

        var residual = Random(Length * D);
        var normed = new float[Length * D];
        var xIn = new float[Length * ED];
        var gate = new float[Length * ED];
        var xConv = Random(Length * ED);
        var xDbl = Random(Length * XProjRows);
        var dtRaw = new float[Length * ED];
        var y = Random(Length * ED);
        var outResidual = new float[Length * D];

        model.Forward(tokens, 1, logits);
        var convolve = PrivateField<Action<int>>(model, "_convolveTask");
        var scan = PrivateField<Action<int>>(model, "_scanTask");
        object constants = PrivateField<object>(model, "_constants");
        var prepare = constants.GetType().GetMethod("Prepare") ?? throw new MissingMethodException("LayerConstants.Prepare");
        var prepareArguments = new object[] { p, layer0 };
        int channelBlocks = (int)(typeof(Mamba130M).GetField("ChannelBlocks", BindingFlags.NonPublic | BindingFlags.Static)?.GetRawConstantValue()
                                  ?? throw new MissingFieldException("Mamba130M.ChannelBlocks"));

        var stages = new (string Name, int PerForward, Action Body)[]
        {
            ("embedding gather", 1, () => Embedding.Gather(p.AsSpan(Mamba130M.Layout.Embedding, Vocab * D), D, tokens, residual)),
            ("RMSNorm", Layers + 1, () => RmsNorm.Forward(residual, p.AsSpan(layer0.Norm, D), 1e-5f, normed, default, Length, D)),
            ("in_proj x half", Layers, () => Gemm.Multiply(false, true, Length, ED, D, 1f, normed, D, p.AsSpan(layer0.InProj, ED * D), D, 0f, xIn, ED)),
            ("in_proj z half", Layers, () => Gemm.Multiply(false, true, Length, ED, D, 1f, normed, D, p.AsSpan(layer0.InProj + ED * D, ED * D), D, 0f, gate, ED)),
            ("layer constants", Layers, () => prepare.Invoke(constants, prepareArguments)),
            ("conv + SiLU", Layers, () => WorkerPool.For(channelBlocks, convolve)),
            ("x_proj", Layers, () => Gemm.Multiply(false, true, Length, XProjRows, ED, 1f, xConv, ED, p.AsSpan(layer0.XProj, XProjRows * ED), ED, 0f, xDbl, XProjRows)),
            ("dt_proj", Layers, () => Gemm.Multiply(false, true, Length, ED, R, 1f, xDbl, XProjRows, p.AsSpan(layer0.DtProjWeight, ED * R), R, 0f, dtRaw, ED)),
            ("scan (softplus, gate)", Layers, () => WorkerPool.For(channelBlocks, scan)),
            ("out_proj (β = 1)", Layers, () => Gemm.Multiply(false, true, Length, D, ED, 1f, y, ED, p.AsSpan(layer0.OutProj, D * ED), ED, 1f, outResidual, D)),
            ("head GEMM, all rows", 1, () => Gemm.Multiply(false, true, Length, Vocab, D, 1f, normed, D, p.AsSpan(Mamba130M.Layout.Embedding, Vocab * D), D, 0f, logits, Vocab)),
        };

        Console.WriteLine();
        Console.WriteLine($"Forward 130M, batch 1, L {Length}, stage by stage (best of repeated calls × calls per forward)");
        Console.WriteLine($"{"stage",-24} {"calls",5} {"best ms",9} {"× calls ms",10}");
        double sum = 0, products = 0;
        foreach (var (name, perForward, body) in stages)
        {
            var timing = QuickRun.Time(body, Math.Min(budgetSeconds, 0.5));
            double total = timing.Best * perForward;
            sum += total;
            if (name.Contains("proj") || name.Contains("GEMM"))
                products += total;
            Console.WriteLine($"{name,-24} {perForward,5} {timing.Best * 1e3,9:F3} {total * 1e3,10:F1}");
        }

        var whole = QuickRun.Time(() => model.Forward(tokens, 1, logits), budgetSeconds, minRuns: 3);
        var allocating = QuickRun.Time(() => model.Forward(tokens, 1), budgetSeconds, minRuns: 3);
        Console.WriteLine($"{"sum of stages",-24} {"",5} {"",9} {sum * 1e3,10:F1}  (matrix products {products * 1e3:F1}, the rest {(sum - products) * 1e3:F1})");
        Console.WriteLine($"{"whole forward",-24} {"",5} {"",9} {whole.Best * 1e3,10:F1}  (into a reused buffer; the gap to the sum is hand-offs and cold caches)");
        Console.WriteLine($"{"whole, new logits array",-24} {"",5} {"",9} {allocating.Best * 1e3,10:F1}  (Forward(int[], int): allocates and zeroes {Length * (long)Vocab * 4 / 1e6:F0} MB per call)");
    }

    private static T PrivateField<T>(object owner, string name) where T : class =>
        owner.GetType().GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(owner) as T
        ?? throw new MissingFieldException(owner.GetType().Name, name);
}
