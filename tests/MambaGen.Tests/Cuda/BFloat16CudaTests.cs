using MambaGen.Cuda;
using MambaGen.Cuda.Backend;
using MambaGen.Generation;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;
using MambaGen.Training;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// bf16 compute on the GPU (<see cref="GpuPrecision.BFloat16"/>: bf16 activations and tensor-core products with fp32
/// accumulation, fp32 master weights) against the fp32 CPU path, which the fp32 GPU tests and the PyTorch fixtures pin
/// down: logits, every parameter's gradient, a few AdamW steps against the fp32 GPU run, and the decode hand-over.
/// </summary>
public class BFloat16CudaTests
{
    /// <summary>
    /// Logits: |a − e| ≤ 5e-2 + 3e-2·|e|, the bf16 bar of the CUDA issue. A bf16 activation keeps 8 significant bits
    /// (relative rounding 2⁻⁹ ≈ 2e-3) and each layer rounds several of them, so a few tenths of a percent per layer
    /// is expected; a wrong layout, transpose or missing term moves logits by whole units.
    /// </summary>
    internal const double LogitRelative = 3e-2, LogitAbsolute = 5e-2;

    /// <summary>
    /// Gradients, per tensor: |g − g_cpu| ≤ 1e-1·max|g_cpu of that tensor| + 1e-5, measured against the tensor's
    /// largest gradient as the fp32 gradient tests do (single gradients of a few 1e-6 are rounding noise of their larger
    /// neighbours, and the issue's elementwise atol 5e-2 would let every gradient of these models through). Most tensors
    /// land within 2 % of their largest gradient (H200, 2026-11-29); the worst measured were the LTI variant's first-layer
    /// A_log, B and C, 6.2 % off at their largest element: with constant B/C those gradients are sums over every
    /// position and channel of products of bf16-rounded activations, where large terms cancel. A wrong index,
    /// transpose, missing term or chain-rule factor moves a tensor's gradient by its own size, far beyond 10 %.
    /// </summary>
    private const double GradientRelativeToMax = 1e-1, GradientAbsolute = 1e-5;

    /// <summary>The mean loss of one batch: relative 1e-2 (bf16 logits carry 2e-3 relative rounding each, averaged over the batch).</summary>
    private const double LossRelative = 1e-2;

    private static readonly Device Bf16 = Device.Cuda(0, GpuPrecision.BFloat16);

    /// <summary>The HF-shaped variant and ablations: constant Δ, constant B/C (LTI), odd widths, biases with an untied head.</summary>
    private static readonly (string Name, Func<int, IMambaModel> Create, string CudaSource)[] Variants =
    [
        (nameof(HfTinyA), s => HfTinyA.Create(s), HfTinyA.CudaSource),
        (nameof(BiasedUntiedModel), s => BiasedUntiedModel.Create(s), BiasedUntiedModel.CudaSource),
        (nameof(LtiModel), s => LtiModel.Create(s), LtiModel.CudaSource),
        (nameof(BcOnlyModel), s => BcOnlyModel.Create(s), BcOnlyModel.CudaSource),
        (nameof(OddWidthModel), s => OddWidthModel.Create(s), OddWidthModel.CudaSource),
    ];

    [GpuFact]
    public void Bf16ForwardMatchesTransformersOnTheHfFixture()
    {
        using var fixture = new Fixture("hf-tiny-a");
        using var gpu = HfTinyA.Load(fixture.Directory, Bf16);
        Assert.Equal(Bf16, gpu.Device);
        var expected = fixture.Floats("logits");
        var actual = gpu.Forward(fixture.Ints("input_ids"), 2);
        var (ratio, error) = WorstLogitError(actual, expected);
        Console.WriteLine($"bf16 forward vs transformers (hf-tiny-a): worst error {ratio:P1} of the tolerance");
        Assert.Null(error);
    }

    [GpuFact]
    public void Bf16ForwardMatchesTheCpuPathForTheVariants()
    {
        var failures = new List<string>();
        foreach (var (name, create, source) in Variants)
        {
            var model = create(21);
            using var gpu = new CudaMambaModel(model.Parameters, source, name + ".cu", Bf16);
            foreach (var (batch, length, logitsFor) in new[] { (2, 300, LogitsFor.AllPositions), (3, 7, LogitsFor.AllPositions), (2, 65, LogitsFor.LastPosition) })
            {
                var tokens = RandomTokens(batch * length, model.Shape.Vocab, seed: batch * 31 + length);
                int vocab = model.Shape.Vocab;
                var all = model.Forward(tokens, batch);
                // The last positions' rows of the CPU's logits, or all of them.
                var expected = logitsFor == LogitsFor.AllPositions ? all
                    : Enumerable.Range(0, batch).SelectMany(b => all.Skip(((b + 1) * length - 1) * vocab).Take(vocab)).ToArray();
                var actual = new float[expected.Length];
                gpu.Forward(tokens, batch, actual, logitsFor);
                var (ratio, error) = WorstLogitError(actual, expected);
                Console.WriteLine($"{name} b{batch} L{length} {logitsFor}: worst logit error {ratio:P1} of the bf16 tolerance");
                if (error is not null) failures.Add($"{name} batch {batch} length {length} {logitsFor}: {error}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void Bf16GradientsMatchTheCpuPath()
    {
        var failures = new List<string>();
        foreach (var (name, create, source) in Variants)
        {
            var model = create(5);
            using var gpu = new CudaMambaModel(model.Parameters, source, name + ".cu", Bf16);
            Assert.Equal(GpuPrecision.BFloat16, gpu.Precision);
            var report = new List<string>();
            failures.AddRange(CudaTrainingTests.CompareForwardBackward(model, gpu, name, LossRelative, GradientRelativeToMax, GradientAbsolute, report));
            Console.WriteLine(string.Join("\n", report));
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void Bf16BackwardIsBitIdenticalRunToRun()
    {
        var model = BiasedUntiedModel.Create(3);
        using var gpu = new CudaMambaModel(model.Parameters, BiasedUntiedModel.CudaSource, "BiasedUntiedModel.cu", Bf16);
        CudaTrainingTests.AssertBackwardIsBitIdentical(model, gpu);
    }

    /// <summary>
    /// Eight AdamW steps (lr 1e-2) on one batch from the same initial weights, bf16 compute against fp32 compute on
    /// the GPU: each step's loss within 2 % of the fp32 run's (the bf16 forward's own difference is about 1e-3 relative, and
    /// the updates differ by the gradients' bf16 error, which AdamW's normalisation keeps at the size of lr per step),
    /// and both runs lower the loss by more than that 2 % over the eight steps, so the comparison is not between two flat lines.
    /// </summary>
    [GpuFact]
    public void Bf16TrainingStepsTrackTheFp32Run()
    {
        const int steps = 8, batch = 2, length = 96;
        const double stepRelative = 2e-2;
        var fp32Model = HfTinyA.Create(9);
        var bf16Model = HfTinyA.Create(9);
        var (tokens, targets) = CudaTrainingTests.Batch(batch * length, fp32Model.Shape.Vocab, seed: 17);
        using var fp32 = new CudaMambaModel(fp32Model.Parameters, HfTinyA.CudaSource, "HfTinyA.cu", Device.Cuda());
        using var bf16 = new CudaMambaModel(bf16Model.Parameters, HfTinyA.CudaSource, "HfTinyA.cu", Bf16);
        using var fp32Adam = new CudaAdamW(fp32);
        using var bf16Adam = new CudaAdamW(bf16);
        var fp32Losses = new float[steps];
        var bf16Losses = new float[steps];
        for (int step = 0; step < steps; step++)
        {
            fp32Losses[step] = fp32.ForwardBackward(tokens, targets, batch);
            bf16Losses[step] = bf16.ForwardBackward(tokens, targets, batch);
            fp32Adam.Update(1e-2f);
            bf16Adam.Update(1e-2f);
        }
        Console.WriteLine($"fp32 losses: {string.Join(", ", fp32Losses)}\nbf16 losses: {string.Join(", ", bf16Losses)}");
        for (int step = 0; step < steps; step++)
            Assert.True(Math.Abs(bf16Losses[step] - fp32Losses[step]) <= stepRelative * fp32Losses[step],
                $"step {step}: bf16 loss {bf16Losses[step]} vs fp32 {fp32Losses[step]}");
        Assert.True(fp32Losses[^1] < (1 - 2 * stepRelative) * fp32Losses[0], $"fp32 loss went from {fp32Losses[0]} to {fp32Losses[^1]}");
        Assert.True(bf16Losses[^1] < (1 - 2 * stepRelative) * bf16Losses[0], $"bf16 loss went from {bf16Losses[0]} to {bf16Losses[^1]}");

        // The bf16 copy the products read follows the fp32 masters AdamW updated: after a download the CPU forward
        // with the updated weights agrees with the bf16 GPU forward.
        bf16.DownloadParameters();
        var probe = RandomTokens(2 * 40, bf16Model.Shape.Vocab, seed: 3);
        var actual = new float[2 * 40 * bf16Model.Shape.Vocab];
        bf16.Forward(probe, 2, actual, LogitsFor.AllPositions);
        Assert.Null(WorstLogitError(actual, bf16Model.Forward(probe, 2)).Error);
    }

    [GpuFact]
    public void DecodingAfterABf16PrefillFollowsTheCpu()
    {
        // The prefill runs in bf16 and hands fp32 conv and scan states to the decode steps, which read the bf16 weights.
        var cpu = OddWidthModel.Create(13);
        using var gpu = cpu.To(Bf16);
        var cpuState = ((IDecodingModel)cpu).CreateDecodeState(2);
        var gpuState = ((IDecodingModel)gpu).CreateDecodeState(2);
        int vocab = cpu.Shape.Vocab;
        foreach (var (length, seed) in new[] { (150, 1), (1, 2), (3, 3) })
        {
            var tokens = RandomTokens(2 * length, vocab, seed);
            var expected = new float[2 * vocab];
            var actual = new float[2 * vocab];
            ((IDecodingModel)cpu).Advance(cpuState, tokens, expected);
            ((IDecodingModel)gpu).Advance(gpuState, tokens, actual);
            Assert.True(WorstLogitError(actual, expected).Error is null, $"after {length} more tokens: {WorstLogitError(actual, expected).Error}");
        }
    }

    /// <summary>The worst element as a fraction of its tolerance, and a description when some element is outside it.</summary>
    internal static (double Ratio, string? Error) WorstLogitError(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        int at = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double ratio = Math.Abs(actual[i] - expected[i]) / (LogitAbsolute + LogitRelative * Math.Abs(expected[i]));
            if (double.IsNaN(ratio)) ratio = double.PositiveInfinity;
            if (ratio > worst) (worst, at) = (ratio, i);
        }
        return (worst, worst <= 1 ? null : $"logit {at}: GPU {actual[at]} vs {expected[at]} ({worst:F2}× the tolerance)");
    }

    private static int[] RandomTokens(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }
}
