using MambaGen.Tasks;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

/// <summary>
/// The trainer's device path and its data-parallel logic, run on the CPU through <see cref="FakeDeviceModel"/> and
/// <see cref="ThreadGroup"/>: the device step must equal the host step bit for bit, W ranks must together train on
/// exactly the global batch a single rank sees, and checkpoints must resume every rank.
/// </summary>
public sealed class DataParallelTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-dp-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly SelectiveCopyingTask CopyTask = new(sequenceLength: 24, count: 4, dataVocab: 6);

    /// <summary>Clipping at 0.5 is active in most of these steps (the fake's gradient norms are O(1)).</summary>
    private static TrainingOptions Options(int steps, int batch = 4) => new()
    {
        Steps = steps, BatchSize = batch, LearningRate = 0.05f, WarmupSteps = 3, MinLearningRateRatio = 0.1f,
        GradientClipNorm = 0.5f, Seed = 42, EvaluationSequences = 8,
    };

    /// <summary>
    /// W ranks compared with one: the ranks' weighted gradients are summed in another order than one backward over
    /// the whole batch sums them, so losses and parameters agree to float rounding carried through a few AdamW
    /// steps: relative 1e-5 on the loss, 1e-4 absolute on O(1) parameters (a wrong share or weight moves the loss
    /// by percents at once).
    /// </summary>
    private const double LossRelative = 1e-5, ParameterAbsolute = 1e-4;

    [Fact]
    public void TheDeviceStepIsBitForBitTheHostStep()
    {
        var host = new Trainer(new FakeLinearModel(CopyTask.VocabSize, 1), CopyTask, Options(30));
        var deviceModel = new FakeDeviceModel(CopyTask.VocabSize, 1);
        using var device = new Trainer(deviceModel, CopyTask, Options(30));
        var hostRecord = new StepRecorder();
        var deviceRecord = new StepRecorder();
        host.Run(hostRecord);
        device.Run(deviceRecord);

        Assert.Null(device.Optimizer);
        Assert.NotNull(device.DeviceOptimizer);
        Assert.Contains(hostRecord.Norms, norm => norm > 0.5f); // clipping did happen
        Assert.Equal(hostRecord.Norms, deviceRecord.Norms);
        Assert.Equal(host.LossHistory.ToArray(), device.LossHistory.ToArray());
        Assert.Equal(host.Model.Parameters.Values, deviceModel.Parameters.Values);
        Assert.Equal(host.Evaluations[^1].Score, device.Evaluations[^1].Score);
        Assert.True(deviceModel.DownloadCount >= 1, "the run must leave the host parameters current");
    }

    [Fact]
    public void ADivergedDeviceStepThrowsAndLeavesTheWeights()
    {
        var model = new FakeDeviceModel(CopyTask.VocabSize, 1) { ForcedLoss = float.NaN };
        using var trainer = new Trainer(model, CopyTask, Options(5));
        var before = model.Parameters.Values.ToArray();
        var error = Assert.Throws<InvalidOperationException>(() => trainer.TrainStep());
        Assert.Contains("diverged at step 1", error.Message);
        Assert.Equal(0, trainer.Step);
        Assert.Equal(0, trainer.DeviceOptimizer!.StepCount);
        Assert.Equal(before, model.Parameters.Values);
    }

    [Fact]
    public void ADeviceRunResumedFromACheckpointEqualsAStraightRun()
    {
        const int total = 20, stopAt = 8;
        var straightModel = new FakeDeviceModel(CopyTask.VocabSize, 1);
        using var straight = new Trainer(straightModel, CopyTask, Options(total));
        straight.Run();

        string path = Path.Combine(_directory, "device.state");
        using (var source = new CancellationTokenSource())
        using (var first = new Trainer(new FakeDeviceModel(CopyTask.VocabSize, 1), CopyTask, Options(total) with { CheckpointPath = path }))
            first.Run(new StopAt(stopAt, source), source.Token);

        // Other initial weights: parameters and moments must come from the file.
        var resumedModel = new FakeDeviceModel(CopyTask.VocabSize, 99);
        using var resumed = new Trainer(resumedModel, CopyTask, Options(total) with { CheckpointPath = path });
        resumed.LoadCheckpoint(path);
        Assert.Equal(stopAt, resumed.DeviceOptimizer!.StepCount);
        resumed.Run();

        ResumeAssertions.AssertSameRun(straight, resumed);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void RanksTrainOnDisjointSharesOfTheSingleRankBatchAndFollowItsCurve(int worldSize)
    {
        const int steps = 12, batch = 8;
        var singleModel = new FakeDeviceModel(CopyTask.VocabSize, 1);
        using var single = new Trainer(singleModel, CopyTask, Options(steps, batch));
        single.Run();

        // Each rank starts from other weights: the broadcast must make them rank 0's.
        var (trainers, models) = RunRanks(worldSize, rank => new FakeDeviceModel(CopyTask.VocabSize, rank == 0 ? 1UL : 50UL + (ulong)rank),
            Options(steps, batch), null);

        for (int step = 0; step < steps; step++)
        {
            // Rank 0's share, then rank 1's, ... is the single run's batch: disjoint, complete, in order.
            var joined = models.SelectMany(m => m.Batches[step]).ToArray();
            Assert.Equal(singleModel.Batches[step], joined);
        }
        Assert.All(models, m => Assert.All(m.Batches, b => Assert.Equal(batch / worldSize * CopyTask.SequenceLength, b.Length)));
        for (int rank = 1; rank < worldSize; rank++)
        {
            Assert.Equal(trainers[0].LossHistory.ToArray(), trainers[rank].LossHistory.ToArray());
            Assert.Equal(models[0].Parameters.Values, models[rank].Parameters.Values);
        }
        for (int step = 0; step < steps; step++)
        {
            double expected = single.LossHistory[step], actual = trainers[0].LossHistory[step];
            Assert.True(Math.Abs(actual - expected) <= LossRelative * Math.Abs(expected), $"step {step + 1}: loss {actual} on {worldSize} ranks, {expected} on one");
        }
        double worst = singleModel.Parameters.Values.Zip(models[0].Parameters.Values).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst <= ParameterAbsolute, $"parameters differ by up to {worst:E2} after {steps} steps");
    }

    [Fact]
    public void AGroupOfOneIsBitForBitNoGroup()
    {
        var aloneModel = new FakeDeviceModel(CopyTask.VocabSize, 1);
        using var alone = new Trainer(aloneModel, CopyTask, Options(10));
        alone.Run();
        var (trainers, models) = RunRanks(1, _ => new FakeDeviceModel(CopyTask.VocabSize, 1), Options(10), null);
        Assert.Equal(alone.LossHistory.ToArray(), trainers[0].LossHistory.ToArray());
        Assert.Equal(aloneModel.Parameters.Values, models[0].Parameters.Values);
    }

    [Fact]
    public void OnlyRankZeroWritesAndEveryRankResumesFromItsFile()
    {
        const int total = 12, stopAt = 5, worldSize = 2;
        var (straight, straightModels) = RunRanks(worldSize, _ => new FakeDeviceModel(CopyTask.VocabSize, 1), Options(total), null);

        string path = Path.Combine(_directory, "dp.state");
        RunRanks(worldSize, _ => new FakeDeviceModel(CopyTask.VocabSize, 1), Options(total) with { CheckpointPath = path }, stopAt);
        Assert.True(File.Exists(path));

        // A rank other than 0 writes nothing, even when asked directly.
        string other = Path.Combine(_directory, "rank1.state");
        using (var lone = new Trainer(new FakeDeviceModel(CopyTask.VocabSize, 1), CopyTask, Options(total), new RankOneOfTwo()))
            lone.SaveCheckpoint(other);
        Assert.False(File.Exists(other));

        var (resumed, resumedModels) = RunRanks(worldSize, _ => new FakeDeviceModel(CopyTask.VocabSize, 77),
            Options(total) with { CheckpointPath = path }, null, resumeFrom: path);
        for (int rank = 0; rank < worldSize; rank++)
        {
            Assert.Equal(straight[rank].LossHistory.ToArray(), resumed[rank].LossHistory.ToArray());
            Assert.Equal(straightModels[rank].Parameters.Values, resumedModels[rank].Parameters.Values);
        }
    }

    [Fact]
    public void DataParallelSettingsThatCannotWorkAreRefused()
    {
        var cpu = Assert.Throws<ArgumentException>(() => new Trainer(new FakeLinearModel(CopyTask.VocabSize, 1), CopyTask, Options(3), new ThreadGroup(1).Member(0)));
        Assert.Contains("trains on its device", cpu.Message);
        var uneven = Assert.Throws<ArgumentException>(() => new Trainer(new FakeDeviceModel(CopyTask.VocabSize, 1), CopyTask, Options(3, batch: 6), new RankOneOfTwo() with { World = 4 }));
        Assert.Contains("BatchSize 6", uneven.Message);
        Assert.Contains("4 ranks", uneven.Message);
        Assert.Equal((48, 24), Trainer.ShareOf(2, 4, 4, 24));
        Assert.Throws<ArgumentOutOfRangeException>(() => Trainer.ShareOf(4, 4, 8, 24));
        Assert.Throws<ArgumentException>(() => Trainer.ShareOf(0, 3, 8, 24));
    }

    /// <summary>Runs <paramref name="worldSize"/> ranks on their own threads; optionally each stops (and saves) at a step or resumes first.</summary>
    private static (Trainer[] Trainers, FakeDeviceModel[] Models) RunRanks(int worldSize, Func<int, FakeDeviceModel> create,
        TrainingOptions options, int? stopAt, string? resumeFrom = null)
    {
        var group = new ThreadGroup(worldSize);
        var models = Enumerable.Range(0, worldSize).Select(create).ToArray();
        var trainers = new Trainer[worldSize];
        var failures = new Exception?[worldSize];
        var threads = Enumerable.Range(0, worldSize).Select(rank => new Thread(() =>
        {
            try
            {
                trainers[rank] = new Trainer(models[rank], CopyTask, options, group.Member(rank));
                if (resumeFrom is not null) trainers[rank].LoadCheckpoint(resumeFrom);
                using var source = new CancellationTokenSource();
                trainers[rank].Run(stopAt is { } step ? new StopAt(step, source) : null, source.Token);
            }
            catch (Exception e)
            {
                failures[rank] = e;
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) Assert.True(thread.Join(TimeSpan.FromMinutes(2)), "a rank hung");
        if (failures.OfType<Exception>().ToList() is { Count: > 0 } errors) throw new AggregateException(errors);
        return (trainers, models);
    }

    /// <summary>Rank 1 of a group whose collectives are never reached (the tests that use it make no step).</summary>
    private sealed record RankOneOfTwo : IDataParallelGroup
    {
        public int World { get; init; } = 2;
        public int Rank => 1;
        public int WorldSize => World;
        public void BroadcastParameters(IDeviceTraining model) { }
        public float AllReduceGradients(IDeviceTraining model, float loss, float weight) => throw new InvalidOperationException("not reached");
        public void Dispose() { }
    }

    private sealed class StopAt(long step, CancellationTokenSource source) : ITrainingProgress
    {
        public void OnStep(in TrainingStepReport report) { if (report.Step == step) source.Cancel(); }
        public void OnEvaluation(EvaluationResult evaluation) { }
        public void OnCheckpoint(string path, long step) { }
    }

    private sealed class StepRecorder : ITrainingProgress
    {
        public List<float> Norms { get; } = [];
        public void OnStep(in TrainingStepReport report) => Norms.Add(report.GradientNorm);
        public void OnEvaluation(EvaluationResult evaluation) { }
        public void OnCheckpoint(string path, long step) { }
    }
}
