using MambaGen.Cuda;
using MambaGen.Cuda.Backend;
using MambaGen.Cuda.Interop;
using MambaGen.Cuda.Nccl;
using MambaGen.Numerics;
using MambaGen.Tasks;
using MambaGen.Tests.Model;
using MambaGen.Tests.Training;
using MambaGen.Training;

namespace MambaGen.Tests.Cuda;

/// <summary>A fact that needs a GPU and the NCCL library; skipped, with the reason, where either is missing.</summary>
public sealed class NcclFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> s_skipReason = new(() =>
        !CudaContext.IsAvailable(out var reason) ? $"No usable CUDA device: {reason}"
        : CudaLibrary.TryLoad(CudaLibraryKind.Nccl, out var failure) ? null : failure);

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when no device or no NCCL is usable (checked once per test run).</summary>
    public NcclFactAttribute()
    {
        if (s_skipReason.Value is { } reason) Skip = reason;
    }
}

/// <summary>
/// The <see cref="Trainer"/> on the GPU (parameters, gradient and moments on the device) against the CPU trainer,
/// its checkpoints and resume, and NCCL data-parallel training with a world of one, which runs every line of the
/// data-parallel path (rendezvous, communicator, weighted all-reduce, broadcast) that W ranks run.
/// </summary>
public class GpuTrainerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-gpu-trainer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly SelectiveCopyingTask CopyTask = new(sequenceLength: 48, count: 4, dataVocab: 8);

    private static TrainingOptions Options(int steps) => new()
    {
        Steps = steps, BatchSize = 4, LearningRate = 5e-3f, WarmupSteps = 2, GradientClipNorm = 0.5f, Seed = 7, EvaluationSequences = 8,
    };

    /// <summary>
    /// GPU against CPU trainer: the forward and backward differ by fp32 rounding (CudaTrainingTests bounds the
    /// gradients at 2e-3 of each tensor's largest), which AdamW carries into the next steps; over the first six
    /// steps the loss stays within relative 2e-3 and the gradient norm within 1e-2. A missing clip, a wrong factor or
    /// a stale parameter on either side moves them by far more.
    /// </summary>
    private const double LossRelative = 2e-3, NormRelative = 1e-2;

    [GpuFact]
    public void TheTrainerOnTheGpuFollowsTheCpuTrainer()
    {
        const int steps = 6;
        var cpu = new Trainer(BiasedUntiedModel.Create(3), CopyTask, Options(steps));
        var cpuNorms = new Norms();
        cpu.Run(cpuNorms);

        using var model = BiasedUntiedModel.Create(3).To(Device.Cuda());
        using var gpu = new Trainer(model, CopyTask, Options(steps));
        Assert.NotNull(gpu.DeviceOptimizer);
        Assert.Null(gpu.Optimizer);
        var gpuNorms = new Norms();
        gpu.Run(gpuNorms);

        Assert.Contains(cpuNorms.Values, norm => norm > 0.5f); // clipping was exercised
        for (int step = 0; step < steps; step++)
        {
            double expected = cpu.LossHistory[step], actual = gpu.LossHistory[step];
            Assert.True(Math.Abs(actual - expected) <= LossRelative * expected, $"step {step + 1}: GPU loss {actual}, CPU {expected}");
            Assert.True(Math.Abs(gpuNorms.Values[step] - cpuNorms.Values[step]) <= NormRelative * cpuNorms.Values[step],
                $"step {step + 1}: GPU gradient norm {gpuNorms.Values[step]}, CPU {cpuNorms.Values[step]}");
        }
        // The run ends with the host parameters level with the device's.
        var moved = model.Parameters.Values.Zip(BiasedUntiedModel.Create(3).Parameters.Values).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(moved > 1e-4, "the host parameters were not brought down from the device");
    }

    [GpuFact]
    public void TheDeviceNormIsTheDoubleSumOfTheGradientAndRepeatsExactly()
    {
        var host = LtiModel.Create(2);
        using var gpu = new CudaMambaModel(host.Parameters, LtiModel.CudaSource, "LtiModel.cu", Device.Cuda());
        var tokens = new int[2 * 40];
        var targets = new int[tokens.Length];
        new SelectiveCopyingTask(40, 3, 6).Fill(new Xoshiro256(5), tokens, targets, 2);
        var gradients = new float[host.Parameters.Values.Length];
        gpu.ForwardBackward(tokens, targets, 2, gradients);
        double expected = GradientClipping.SumOfSquares(gradients);
        double first = gpu.GradientSumOfSquares(), second = gpu.GradientSumOfSquares();
        // Both sum the same floats' squares in double, in different orders: relative 1e-12 is far above that rounding.
        Assert.True(Math.Abs(first - expected) <= 1e-12 * expected, $"device Σg² {first:R}, host {expected:R}");
        Assert.Equal(first, second);
    }

    [GpuFact]
    public void AResumedGpuRunContinuesExactlyAsAnUninterruptedOne()
    {
        const int total = 10, stopAt = 4;
        using var straightModel = BiasedUntiedModel.Create(3).To(Device.Cuda());
        using var straight = new Trainer(straightModel, CopyTask, Options(total));
        straight.Run();

        string path = Path.Combine(_directory, "gpu.state");
        using (var firstModel = BiasedUntiedModel.Create(3).To(Device.Cuda()))
        using (var first = new Trainer(firstModel, CopyTask, Options(total) with { CheckpointPath = path }))
        using (var source = new CancellationTokenSource())
            Assert.True(first.Run(new StopAt(stopAt, source), source.Token).Cancelled);

        // Other initial weights: parameters and moments must come up from the file.
        using var resumedModel = BiasedUntiedModel.Create(99).To(Device.Cuda());
        using var resumed = new Trainer(resumedModel, CopyTask, Options(total) with { CheckpointPath = path });
        resumed.LoadCheckpoint(path);
        resumed.Run();

        // One GPU computes deterministically (no atomics; cuBLAS repeats its bits), so the runs agree exactly.
        ResumeAssertions.AssertSameRun(straight, resumed);
    }

    [NcclFact]
    public void AllReduceAndBroadcastOfAKnownBufferWithAWorldOfOne()
    {
        Assert.True(NcclCommunicator.LibraryVersion.Major >= 2);
        using var context = new CudaContext(0);
        using var stream = new CudaStream(context, nonBlocking: false);
        using var communicator = new NcclCommunicator(context, NcclCommunicator.CreateUniqueId(), 1, 0, TimeSpan.FromSeconds(60));
        var values = Enumerable.Range(0, 1000).Select(i => i * 0.25f - 7f).ToArray();
        using var buffer = new CudaDeviceVariable<float>(context, values);
        using (communicator.Group())
            communicator.AllReduceSum(buffer.DevicePointer, buffer.Count, stream);
        communicator.Wait(stream, "the test all-reduce");
        Assert.Equal(values, buffer.ToArray()); // the sum over one rank is the rank's own buffer
        communicator.Broadcast(buffer.DevicePointer, buffer.Count, root: 0, stream);
        communicator.Wait(stream, "the test broadcast");
        Assert.Equal(values, buffer.ToArray());
        Assert.Throws<ArgumentException>(() => new NcclCommunicator(context, new byte[5], 1, 0, TimeSpan.FromSeconds(1)));
    }

    [NcclFact]
    public void TheGroupWeightsTheGradientAndTheLoss()
    {
        using var model = LtiModel.Create(2).To(Device.Cuda());
        using var group = NcclDataParallelGroup.Join(new DataParallelOptions { MasterPort = 29611 }, model);
        var gpu = (CudaMambaModel)((IMambaModel)model).DeviceTraining!;
        var tokens = new int[2 * 40];
        var targets = new int[tokens.Length];
        new SelectiveCopyingTask(40, 3, 6).Fill(new Xoshiro256(5), tokens, targets, 2);
        var gradients = new float[model.Parameters.Values.Length];
        float loss = gpu.ForwardBackward(tokens, targets, 2, gradients);
        float reduced = group.AllReduceGradients(gpu, loss, 0.25f);
        Assert.Equal(loss * 0.25f, reduced);
        var after = gpu.GradientBuffer.ToArray();
        Assert.Equal(gradients.Select(g => g * 0.25f).ToArray(), after); // ×0.25 is exact in binary floating point
    }

    [NcclFact]
    public void AWorldOfOneThroughNcclTrainsExactlyAsWithoutIt()
    {
        const int steps = 8;
        using var aloneModel = BiasedUntiedModel.Create(3).To(Device.Cuda());
        using var alone = new Trainer(aloneModel, CopyTask, Options(steps));
        alone.Run();

        using var model = BiasedUntiedModel.Create(3).To(Device.Cuda());
        using var group = NcclDataParallelGroup.Join(new DataParallelOptions { MasterPort = 29612 }, model);
        using var trainer = new Trainer(model, CopyTask, Options(steps), group);
        trainer.Run();
        Assert.Equal(alone.LossHistory.ToArray(), trainer.LossHistory.ToArray());
        Assert.Equal(aloneModel.Parameters.Values, model.Parameters.Values);
    }

    private sealed class Norms : ITrainingProgress
    {
        public List<float> Values { get; } = [];
        public void OnStep(in TrainingStepReport report) => Values.Add(report.GradientNorm);
        public void OnEvaluation(EvaluationResult evaluation) { }
        public void OnCheckpoint(string path, long step) { }
    }

    private sealed class StopAt(long step, CancellationTokenSource source) : ITrainingProgress
    {
        public void OnStep(in TrainingStepReport report) { if (report.Step == step) source.Cancel(); }
        public void OnEvaluation(EvaluationResult evaluation) { }
        public void OnCheckpoint(string path, long step) { }
    }
}
