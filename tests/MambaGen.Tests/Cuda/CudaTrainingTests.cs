using MambaGen.Cuda;
using MambaGen.Cuda.Backend;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;
using MambaGen.Training;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// Training on the GPU against the CPU path, which is itself checked against finite differences and PyTorch
/// (tests/MambaGen.Tests/Training, Model): the loss and every parameter's gradient of ForwardBackward, determinism
/// of the backward, unscored targets, and AdamW on the device against the CPU optimizer.
/// </summary>
public class CudaTrainingTests
{
    /// <summary>
    /// Gradient tolerance, per tensor: |g_gpu − g_cpu| ≤ 2e-3·max|g_cpu of that tensor| + 1e-5. The GPU sums in
    /// other orders (cuBLAS, per-block partials) and takes the scan's decays with the hardware exp2 (≈ 2 ulp), so
    /// gradients differ by fp32 rounding carried through the layers; scaling by the tensor's largest gradient keeps
    /// the bar meaningful for tensors whose gradients are all small, where relative error per element is noise. A
    /// wrong index, transpose, missing term or chain-rule factor moves a tensor's gradient by far more than 0.2 % of
    /// its largest element.
    /// </summary>
    private const double GradientRelativeToMax = 2e-3, GradientAbsolute = 1e-5;

    /// <summary>The mean loss: relative 1e-4 (fp32 rounding of the same logits, summed in another order).</summary>
    private const double LossRelative = 1e-4;

    /// <summary>
    /// AdamW: given the same gradients the device kernel performs the CPU's operations in the CPU's order with
    /// explicit rounding, so parameters agree to 1e-5 absolute (in practice bit for bit).
    /// </summary>
    private const double AdamWAbsolute = 1e-5;

    /// <summary>
    /// Every selectivity ablation, N = 3 … 16, odd and padded widths, biases, tied and untied heads. Variants whose
    /// N the scan's tiling does not support yet fail to compile and are reported as failures.
    /// </summary>
    private static readonly (string Name, Func<int, IMambaModel> Create, string CudaSource)[] Variants =
    [
        (nameof(BiasedUntiedModel), s => BiasedUntiedModel.Create(s), BiasedUntiedModel.CudaSource),
        (nameof(LtiModel), s => LtiModel.Create(s), LtiModel.CudaSource),
        (nameof(HfTinyA), s => HfTinyA.Create(s), HfTinyA.CudaSource),
        (nameof(DeltaOnlyModel), s => DeltaOnlyModel.Create(s), DeltaOnlyModel.CudaSource),
        (nameof(BcOnlyModel), s => BcOnlyModel.Create(s), BcOnlyModel.CudaSource),
        (nameof(OddWidthModel), s => OddWidthModel.Create(s), OddWidthModel.CudaSource),
        (nameof(DeltaAndBModel), s => DeltaAndBModel.Create(s), DeltaAndBModel.CudaSource),
        (nameof(COnlyModel), s => COnlyModel.Create(s), COnlyModel.CudaSource),
    ];

    /// <summary>The CUDA backend itself (device-resident training needs it, not just the model's API) over <paramref name="model"/>'s parameters.</summary>
    private static CudaMambaModel OnGpu(IMambaModel model, string cudaSource, string name) =>
        new(model.Parameters, cudaSource, name + ".cu", Device.Cuda());

    [GpuFact]
    public void ForwardBackwardMatchesTheCpuPathForEveryVariant()
    {
        var failures = new List<string>();
        var report = new List<string>();
        foreach (var (name, create, source) in Variants)
        {
            try
            {
                var model = create(5);
                using var gpu = OnGpu(model, source, name);
                failures.AddRange(CompareForwardBackward(model, gpu, name, LossRelative, GradientRelativeToMax, GradientAbsolute, report));
            }
            catch (Exception error)
            {
                // A variant whose kernels do not compile or launch is reported with the others, not in place of them.
                failures.Add($"{name}: {error.GetType().Name}: {error.Message}");
            }
        }
        Console.WriteLine(string.Join("\n", report));
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void TheBackwardIsBitIdenticalRunToRun()
    {
        var model = BiasedUntiedModel.Create(3);
        using var gpu = OnGpu(model, BiasedUntiedModel.CudaSource, nameof(BiasedUntiedModel));
        AssertBackwardIsBitIdentical(model, gpu);
    }

    [GpuFact]
    public void UnscoredTargetsAreIgnored()
    {
        var model = LtiModel.Create(2);
        using var gpu = OnGpu(model, LtiModel.CudaSource, nameof(LtiModel));
        var (tokens, targets) = Batch(2 * 40, model.Shape.Vocab, seed: 3);
        var gradients = new float[model.Parameters.Values.Length];

        // Nothing scored: loss 0 and every gradient exactly 0 (as the CPU path defines it), however the
        // gradient buffer was filled before.
        Array.Fill(gradients, float.NaN);
        float loss = gpu.ForwardBackward(tokens, Enumerable.Repeat(-1, tokens.Length).ToArray(), 2, gradients);
        Assert.Equal(0f, loss);
        Assert.All(gradients, g => Assert.Equal(0f, g));

        // Scoring only the second half of each sequence: the loss and gradients are the CPU path's mean over
        // those positions alone.
        var halves = targets.Select((t, i) => i % 40 < 20 ? -1 : t).ToArray();
        var expected = new float[gradients.Length];
        float expectedLoss = model.ForwardBackward(tokens, halves, 2, expected);
        loss = gpu.ForwardBackward(tokens, halves, 2, gradients);
        Assert.True(Math.Abs(loss - expectedLoss) <= LossRelative * Math.Abs(expectedLoss), $"loss {loss} vs CPU {expectedLoss}");
        var (_, errors) = CompareGradients(model.Parameters.Layout, gradients, expected);
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    [GpuFact]
    public void AdamWOnTheDeviceEqualsTheCpuOptimizer()
    {
        // Two copies of the same model: the GPU trains one, the CPU optimizer the other. Each step the CPU optimizer
        // gets the GPU's gradients, so the comparison isolates the optimizer (and the device's refresh of A·log2 e
        // after A_log moves, which the next step's gradients depend on).
        var gpuModel = BiasedUntiedModel.Create(9);
        var cpuModel = BiasedUntiedModel.Create(9);
        var options = new AdamWOptions { WeightDecay = 0.1f };
        var cpuOptimizer = new AdamW(cpuModel.Parameters.Layout, options);
        using var gpu = OnGpu(gpuModel, BiasedUntiedModel.CudaSource, nameof(BiasedUntiedModel));
        using var gpuOptimizer = new CudaAdamW(gpu, options);
        var (tokens, targets) = Batch(2 * 64, gpuModel.Shape.Vocab, seed: 11);
        var gradients = new float[gpuModel.Parameters.Values.Length];
        var cpuGradients = new float[gradients.Length];
        for (int step = 0; step < 3; step++)
        {
            float loss = gpu.ForwardBackward(tokens, targets, 2, gradients);
            float cpuLoss = cpuModel.ForwardBackward(tokens, targets, 2, cpuGradients);
            Assert.True(Math.Abs(loss - cpuLoss) <= LossRelative * Math.Abs(cpuLoss), $"step {step}: loss {loss} vs CPU {cpuLoss}");
            gpuOptimizer.Update(1e-2f);
            cpuOptimizer.Update(cpuModel.Parameters.Values, gradients, 1e-2f);
        }
        gpu.DownloadParameters();
        var actual = gpuModel.Parameters.Values;
        var expected = cpuModel.Parameters.Values;
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.True(worst <= AdamWAbsolute, $"parameters differ by up to {worst:E2} after 3 steps");
        Assert.Equal(3, gpuOptimizer.StepCount);
        // The steps did move the parameters (a no-op optimizer would pass the comparison above only if the CPU's did nothing too).
        var initial = BiasedUntiedModel.Create(9).Parameters.Values;
        Assert.True(actual.Zip(initial).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "AdamW did not move the parameters");
    }

    [GpuFact]
    public void BadTrainingInputIsRejectedBeforeAnyLaunch()
    {
        var model = LtiModel.Create(1);
        using var gpu = OnGpu(model, LtiModel.CudaSource, nameof(LtiModel));
        int vocab = model.Shape.Vocab;
        var gradients = new float[model.Parameters.Values.Length];
        var targets = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.ForwardBackward([1, 2], [2, vocab], 1, gradients));
        Assert.Contains("targets", targets.Message);
        var count = Assert.Throws<ArgumentException>(() => gpu.ForwardBackward([1, 2], [2], 1, gradients));
        Assert.Contains("targets", count.Message);
        var size = Assert.Throws<ArgumentException>(() => gpu.ForwardBackward([1, 2], [2, 3], 1, new float[3]));
        Assert.Contains("gradients", size.Message);
        using var optimizer = new CudaAdamW(gpu);
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.Update(float.NaN));
    }

    [GpuFact]
    public void TheModelsOwnTrainingEntryOnTheGpuFollowsHostParameterChanges()
    {
        // Through the generated API, as the Trainer calls it: the CPU optimizer changes the host parameters between
        // steps, and the GPU instance (sharing them) must train on the new values.
        using var cpu = BiasedUntiedModel.Create(4);
        using var gpu = cpu.To(Device.Cuda());
        var (tokens, targets) = Batch(2 * 50, cpu.Shape.Vocab, seed: 5);
        var expected = new float[cpu.Parameters.Values.Length];
        var actual = new float[expected.Length];
        var optimizer = new AdamW(cpu.Parameters.Layout);
        for (int step = 0; step < 2; step++)
        {
            float expectedLoss = cpu.ForwardBackward(tokens, targets, 2, expected);
            float loss = gpu.ForwardBackward(tokens, targets, 2, actual);
            Assert.True(Math.Abs(loss - expectedLoss) <= LossRelative * Math.Abs(expectedLoss), $"step {step}: loss {loss} vs CPU {expectedLoss}");
            var (_, errors) = CompareGradients(cpu.Parameters.Layout, actual, expected);
            Assert.True(errors.Count == 0, $"step {step}:\n" + string.Join("\n", errors));
            optimizer.Update(cpu.Parameters.Values, expected, 1e-2f);
            cpu.Parameters.MarkChanged();
        }
    }

    /// <summary>Per tensor, the gradients outside the tolerance (described), and the worst error as a fraction of its tolerance.</summary>
    private static (double WorstRatio, List<string> Errors) CompareGradients(ParameterLayout layout, float[] actual, float[] expected) =>
        CompareGradients(layout, actual, expected, GradientRelativeToMax, GradientAbsolute);

    /// <summary>
    /// Per tensor, the gradients outside |g_gpu − g_cpu| ≤ relativeToMax·max|g_cpu of that tensor| + absolute (described),
    /// and the worst error as a fraction of its tolerance. Shared with the bf16 tests, which pass their own bar.
    /// </summary>
    /// <summary>
    /// The loss and every gradient of <paramref name="gpu"/>'s ForwardBackward against the CPU path's, on two sequences
    /// of 300 tokens (several scan chunks and a partial last one), then a short odd shape through reallocated
    /// buffers; returns the failures and adds a line per shape to <paramref name="report"/>.
    /// </summary>
    internal static List<string> CompareForwardBackward(IMambaModel model, CudaMambaModel gpu, string name, double lossRelative,
        double gradientRelativeToMax, double gradientAbsolute, List<string> report)
    {
        var failures = new List<string>();
        foreach (var (batch, length) in new[] { (2, 300), (3, 7) })
        {
            var (tokens, targets) = Batch(batch * length, model.Shape.Vocab, seed: batch * 1000 + length);
            var expected = new float[model.Parameters.Values.Length];
            float expectedLoss = model.ForwardBackward(tokens, targets, batch, expected);
            var actual = new float[expected.Length];
            float loss = gpu.ForwardBackward(tokens, targets, batch, actual);
            string shape = $"{name} {gpu.Precision} batch {batch} length {length}";
            if (!(Math.Abs(loss - expectedLoss) <= lossRelative * Math.Abs(expectedLoss)))
                failures.Add($"{shape}: loss {loss} vs CPU {expectedLoss}");
            var (worstRatio, errors) = CompareGradients(model.Parameters.Layout, actual, expected, gradientRelativeToMax, gradientAbsolute);
            failures.AddRange(errors.Select(e => $"{shape}: {e}"));
            report.Add($"{shape}: loss {loss} vs {expectedLoss}; worst gradient error {worstRatio:P1} of its tolerance");
        }
        return failures;
    }

    /// <summary>Two identical ForwardBackward calls give the same loss and gradients, bit for bit (the backward has no atomics).</summary>
    internal static void AssertBackwardIsBitIdentical(IMambaModel model, CudaMambaModel gpu)
    {
        var (tokens, targets) = Batch(2 * 300, model.Shape.Vocab, seed: 7);
        var first = new float[model.Parameters.Values.Length];
        var second = new float[first.Length];
        float firstLoss = gpu.ForwardBackward(tokens, targets, 2, first);
        float secondLoss = gpu.ForwardBackward(tokens, targets, 2, second);
        Assert.Equal(BitConverter.SingleToInt32Bits(firstLoss), BitConverter.SingleToInt32Bits(secondLoss));
        for (int i = 0; i < first.Length; i++)
            if (BitConverter.SingleToInt32Bits(first[i]) != BitConverter.SingleToInt32Bits(second[i]))
                Assert.Fail($"gradient {i} differs between two identical calls: {first[i]:R} vs {second[i]:R}");
    }

    internal static (double WorstRatio, List<string> Errors) CompareGradients(ParameterLayout layout, float[] actual, float[] expected,
        double relativeToMax, double absolute)
    {
        var errors = new List<string>();
        double worstRatio = 0;
        foreach (var tensor in layout.Tensors)
        {
            double scale = 0;
            for (long i = tensor.Offset; i < tensor.Offset + tensor.Length; i++) scale = Math.Max(scale, Math.Abs(expected[i]));
            double tolerance = relativeToMax * scale + absolute;
            double worst = -1;
            long at = -1;
            for (long i = tensor.Offset; i < tensor.Offset + tensor.Length; i++)
            {
                double error = Math.Abs(actual[i] - expected[i]);
                if (double.IsNaN(error)) error = double.PositiveInfinity;
                if (error > worst) (worst, at) = (error, i);
            }
            worstRatio = Math.Max(worstRatio, worst / tolerance);
            if (worst > tolerance)
                errors.Add($"{tensor.Key}[{at - tensor.Offset}]: GPU {actual[at]:G6} vs CPU {expected[at]:G6} (error {worst:E2}, tolerance {tolerance:E2})");
        }
        return (worstRatio, errors);
    }

    /// <summary>Random token ids and next-token targets with about one position in seven unscored (−1).</summary>
    internal static (int[] Tokens, int[] Targets) Batch(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        var tokens = Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
        var targets = Enumerable.Range(0, count).Select(_ => random.Next(7) == 0 ? -1 : random.Next(vocab)).ToArray();
        return (tokens, targets);
    }
}
