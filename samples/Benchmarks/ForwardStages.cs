using System.Reflection;
using MambaGen.Cpu;

namespace MambaGen.Benchmarks;

/// <summary>
/// Where the 130M forward's time goes: each stage of the pipeline timed on its own, once per layer with that layer's
/// weights (so weights come from memory as they do in a forward) on the activations a forward left in the model's
/// buffers, with the forward's exact shapes, strides and β. The gap between the sum of the stages and the whole
/// forward is what no single stage shows: thread hand-offs between stages and caches that a repeated stage finds warm.
/// </summary>
/// <remarks>
/// The norm, embedding and products call the public runtime ops. The model's buffers, the convolution and scan tasks
/// and the per-layer constants are private to the generated model, so they are reached by reflection by the names the
/// generator emits.
/// </remarks>
public static class ForwardStages
{
    private const int D = 768, ED = 1536, R = 48, Vocab = 50280, XProjRows = R + 2 * 16;
    private const int Layers = ForwardFlops.Layers130M, Length = ForwardBenchmark.SequenceLength;

    public static void Run(double budgetSeconds)
    {
        var model = Mamba130M.Create(seed: 1);
        var tokens = ForwardBenchmark.RandomTokens();
        var logits = new float[Length * Vocab];
        var p = model.Parameters;
        var layout = Mamba130M.Layout;
        model.Forward(tokens, 1, logits);

        object workspace = Field<object>(model, "_inference");
        var residual = Field<float[]>(workspace, "Residual");
        var normed = Field<float[]>(workspace, "Normed");
        object activations = Field<Array>(workspace, "ByLayer").GetValue(0)!;
        var (xIn, gate, xConv, xDbl, dtRaw, y) = (Field<float[]>(activations, "XIn"), Field<float[]>(activations, "Gate"), Field<float[]>(activations, "XConv"),
            Field<float[]>(activations, "XDbl"), Field<float[]>(activations, "DtRaw"), Field<float[]>(activations, "Y"));
        var convolve = Field<Action<int>>(model, "_convolveTask");
        var scan = Field<Action<int>>(model, "_scanTask");
        object constants = Field<object>(model, "_constants");
        var prepare = constants.GetType().GetMethod("Prepare") ?? throw new MissingMethodException("LayerConstants.Prepare");
        int stride = (int)Constant("DInnerStride"), channelBlocks = (int)Constant("ChannelBlocks"), convolveTasks = (int)Constant("ConvolveTasks");

        Action EveryLayer(Action<LayerOffsets> stage) => () =>
        {
            for (int layer = 0; layer < Layers; layer++)
                stage(layout.LayerOffsets[layer]);
        };
        var stages = new (string Name, Action Body)[]
        {
            ("embedding gather", () => Embedding.Gather(p.Span(layout.Embedding, Vocab * D), D, tokens, residual)),
            ("RMSNorm × 25", () =>
            {
                for (int i = 0; i <= Layers; i++)
                    RmsNorm.Forward(residual, p.Span(layout.NormF, D), Mamba130M.NormEpsilon, normed, default, Length, D);
            }),
            ("in_proj, x half", EveryLayer(o => Gemm.Multiply(false, true, Length, ED, D, 1f, normed, D, p.Span(o.InProj, ED * D), D, 0f, xIn, stride))),
            ("in_proj, z half", EveryLayer(o => Gemm.Multiply(false, true, Length, ED, D, 1f, normed, D, p.Span(o.InProj + ED * D, ED * D), D, 0f, gate, stride))),
            ("layer constants", EveryLayer(o => prepare.Invoke(constants, [p, o]))),
            ("conv + SiLU", EveryLayer(_ => WorkerPool.For(convolveTasks, convolve))),
            ("conv + SiLU, 1 thread", EveryLayer(_ => WorkerPool.For(convolveTasks, convolve, 1))),
            ("x_proj", EveryLayer(o => Gemm.Multiply(false, true, Length, XProjRows, ED, 1f, xConv, stride, p.Span(o.XProj, XProjRows * ED), ED, 0f, xDbl, XProjRows))),
            ("dt_proj", EveryLayer(o => Gemm.Multiply(false, true, Length, ED, R, 1f, xDbl, XProjRows, p.Span(o.DtProjWeight, ED * R), R, 0f, dtRaw, stride))),
            ("scan (with softplus, gate)", EveryLayer(_ => WorkerPool.For(channelBlocks, scan))),
            ("out_proj (β = 1)", EveryLayer(o => Gemm.Multiply(false, true, Length, D, ED, 1f, y, stride, p.Span(o.OutProj, D * ED), ED, 1f, residual, D))),
            ("head, every row", () => Gemm.Multiply(false, true, Length, Vocab, D, 1f, normed, D, p.Span(layout.Embedding, Vocab * D), D, 0f, logits, Vocab)),
        };

        Console.WriteLine();
        Console.WriteLine($"Forward 130M, batch 1, L {Length}, stage by stage (each over all {Layers} layers; best of repeated calls)");
        double sum = 0, products = 0, head = 0;
        foreach (var (name, body) in stages)
        {
            var timing = QuickRun.Time(body, Math.Min(budgetSeconds, 1.0), minRuns: 3);
            sum += timing.Best;
            if (name.Contains("proj") || name.StartsWith("head"))
                products += timing.Best;
            if (name.StartsWith("head"))
                head = timing.Best;
            Console.WriteLine($"  {name,-28} {timing.Best * 1e3,8:F1} ms");
        }

        model.Forward(tokens, 1, logits);
        var whole = QuickRun.Time(() => model.Forward(tokens, 1, logits), budgetSeconds, minRuns: 3);
        var prompt = QuickRun.Time(() => model.Forward(tokens, 1, logits.AsSpan(0, Vocab), LogitsFor.LastPosition), budgetSeconds, minRuns: 3);
        Console.WriteLine($"  {"sum of the stages",-28} {sum * 1e3,8:F1} ms (matrix products {products * 1e3:F1}, the rest {(sum - products) * 1e3:F1})");
        Console.WriteLine($"  {"whole forward, every row",-28} {whole.Best * 1e3,8:F1} ms (gap to the sum: {(whole.Best - sum) * 1e3:F1})");
        Console.WriteLine($"  {"whole forward, last row",-28} {prompt.Best * 1e3,8:F1} ms (gap to the sum without the head: {(prompt.Best - (sum - head)) * 1e3:F1})");
    }

    private static T Field<T>(object owner, string name) where T : class =>
        owner.GetType().GetField(name, BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.Instance)?.GetValue(owner) as T
        ?? throw new MissingFieldException(owner.GetType().Name, name);

    private static object Constant(string name) =>
        typeof(Mamba130M).GetField(name, BindingFlags.NonPublic | BindingFlags.Static)?.GetRawConstantValue()
        ?? throw new MissingFieldException(nameof(Mamba130M), name);
}
