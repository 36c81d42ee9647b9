using MambaGen.Numerics;
using MambaGen.Tasks;
using MambaGen.Tests.Checkpoints;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

[Collection(AllocationMeasurements.Name)]
public sealed class TrainerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-trainer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly SelectiveCopyingTask CopyTask = new(sequenceLength: 24, count: 4, dataVocab: 6);

    private static TrainingOptions Options(int steps) => new()
    {
        Steps = steps, BatchSize = 4, LearningRate = 0.05f, WarmupSteps = 5, MinLearningRateRatio = 0.1f,
        GradientClipNorm = 0.5f, Seed = 42, EvaluationSequences = 16,
    };

    private static Trainer NewTrainer(TrainingOptions options, ulong modelSeed = 1, bool selectiveB = true) =>
        new(new FakeLinearModel(CopyTask.VocabSize, modelSeed, selectiveB), CopyTask, options);

    /// <summary>Cancels the run once it reaches a given step.</summary>
    private sealed class StopAt(long step, CancellationTokenSource source) : ITrainingProgress
    {
        public void OnStep(in TrainingStepReport report) { if (report.Step == step) source.Cancel(); }
        public void OnEvaluation(EvaluationResult evaluation) { }
        public void OnCheckpoint(string path, long step) { }
    }

    private sealed class Recorder : ITrainingProgress
    {
        public List<TrainingStepReport> Steps { get; } = [];
        public List<EvaluationResult> Evaluations { get; } = [];
        public List<long> Checkpoints { get; } = [];
        public void OnStep(in TrainingStepReport report) => Steps.Add(report);
        public void OnEvaluation(EvaluationResult evaluation) => Evaluations.Add(evaluation);
        public void OnCheckpoint(string path, long step) => Checkpoints.Add(step);
    }

    [Fact]
    public void FakeModelGradientMatchesFiniteDifferences()
    {
        // The fake's analytic gradient is what the trainer tests rely on, so check it against central differences
        // (h = 1e-2 on O(1) weights; the model is smooth, so the truncation error O(h²·f''') stays far below the 2e-3
        // tolerance, and fp32 loss rounding contributes ≈ 1e-7/1e-2 = 1e-5).
        var model = new FakeLinearModel(CopyTask.VocabSize, seed: 3);
        var tokens = new int[2 * CopyTask.SequenceLength];
        var targets = new int[tokens.Length];
        CopyTask.Fill(new Xoshiro256(1), tokens, targets, 2);
        var gradients = new float[model.Parameters.Values.Length];
        model.ForwardBackward(tokens, targets, 2, gradients);
        var scratch = new float[gradients.Length];
        var layout = model.Parameters.Layout;
        long[] probes = [layout.Embedding + 5, layout.Embedding + 4 * 7 + 2, layout.NormF + 1, layout.LayerOffsets[0].D + 3, layout.LayerOffsets[0].ALog];
        foreach (int i in probes)
        {
            float saved = model.Parameters.Values[i];
            model.Parameters.Values[i] = saved + 1e-2f;
            double plus = model.ForwardBackward(tokens, targets, 2, scratch);
            model.Parameters.Values[i] = saved - 1e-2f;
            double minus = model.ForwardBackward(tokens, targets, 2, scratch);
            model.Parameters.Values[i] = saved;
            Assert.Equal((plus - minus) / 2e-2, gradients[i], 2e-3);
        }
    }

    [Fact]
    public void TrainingLowersTheLossTowardsWhatTheTaskAllows()
    {
        // The fake sees only the current and previous token, so at a marker the best it can do is the uniform
        // distribution over the 6 data tokens: loss ln 6 ≈ 1.79. From random weights it starts well above that
        // (≈ 2.6 with this seed). The mean of the last 50 steps averages 800 answers, so its sampling noise is about
        // 0.01; ±0.1 around ln 6 separates "learned the task's floor" from "still learning" or "diverged".
        var trainer = NewTrainer(Options(300));
        var summary = trainer.Run();
        var losses = trainer.LossHistory.ToArray();
        Assert.Equal(300, losses.Length);
        Assert.True(losses.Take(10).Average() > Math.Log(6) + 0.5, $"initial loss {losses.Take(10).Average()}");
        Assert.InRange(losses.TakeLast(50).Average(), Math.Log(6) - 0.1, Math.Log(6) + 0.1);
        Assert.False(summary.Cancelled);
        Assert.Equal(300, summary.Step);
        Assert.NotNull(summary.FinalEvaluation);
        Assert.Equal(16, summary.FinalEvaluation!.Score.Sequences);
        Assert.Equal(16 * 4, summary.FinalEvaluation.Score.ScoredTokens);
    }

    [Fact]
    public void SteadyStateStepsAllocateNothing()
    {
        var trainer = NewTrainer(Options(400));
        for (int i = 0; i < 20; i++) trainer.TrainStep();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++) trainer.TrainStep();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void RunAllocatesTheSameWhateverItsLength()
    {
        // Run has fixed costs (the final evaluation, the summary); if a step allocated anything, a run of 250 steps
        // would allocate more than one of 50. A progress sink is attached so the reporting path is covered too.
        long Allocated(int steps) => Allocations.LeastOf(() =>
        {
            var trainer = NewTrainer(Options(steps));
            var sink = new StopAt(-1, new CancellationTokenSource());
            return Allocations.During(() => trainer.Run(sink));
        });
        Allocated(250); // warm-up: first calls load types and fill caches
        Assert.Equal(Allocated(50), Allocated(250));
    }

    [Fact]
    public void ResumingFromACheckpointIsBitForBitIdenticalToAStraightRun()
    {
        const int total = 40, stopAt = 15;
        var straight = NewTrainer(Options(total));
        straight.Run();

        string path = Path.Combine(_directory, "state.bin");
        using (var source = new CancellationTokenSource())
        {
            var first = NewTrainer(Options(total) with { CheckpointPath = path });
            var summary = first.Run(new StopAt(stopAt, source), source.Token);
            Assert.True(summary.Cancelled);
            Assert.Equal(stopAt, summary.Step);
            Assert.Null(summary.FinalEvaluation);
        }

        // A fresh model with other initial weights: everything must come from the checkpoint.
        var resumed = NewTrainer(Options(total) with { CheckpointPath = path }, modelSeed: 99);
        resumed.LoadCheckpoint(path);
        Assert.Equal(stopAt, resumed.Step);
        var finished = resumed.Run();
        Assert.Equal(total, finished.Step);

        Assert.Equal(straight.Model.Parameters.Values, resumed.Model.Parameters.Values);
        Assert.Equal(straight.Optimizer!.FirstMoment.ToArray(), resumed.Optimizer!.FirstMoment.ToArray());
        Assert.Equal(straight.Optimizer!.SecondMoment.ToArray(), resumed.Optimizer!.SecondMoment.ToArray());
        Assert.Equal(straight.Optimizer!.StepCount, resumed.Optimizer!.StepCount);
        Assert.Equal(straight.LossHistory.ToArray(), resumed.LossHistory.ToArray());
        Assert.Equal(straight.Evaluations[^1].Score, resumed.Evaluations[^1].Score);
    }

    [Fact]
    public void PeriodicCheckpointsAndEvaluationsAreReportedAndTheRunEndsWithBoth()
    {
        string path = Path.Combine(_directory, "periodic.bin");
        var trainer = NewTrainer(Options(20) with { CheckpointPath = path, CheckpointInterval = 10, EvaluationInterval = 5 });
        var recorder = new Recorder();
        trainer.Run(recorder);
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), recorder.Steps.Select(s => s.Step));
        Assert.All(recorder.Steps, s => Assert.Equal(20, s.TotalSteps));
        Assert.Equal([5L, 10, 15, 20], recorder.Evaluations.Select(e => e.Step));
        Assert.Equal([10L, 20], recorder.Checkpoints); // 20 is the end-of-run save, after the final evaluation
        Assert.Equal(trainer.Options.LearningRate / 5, recorder.Steps[0].LearningRate, 1e-7);
        Assert.All(recorder.Steps, s => Assert.True(s.TokensPerSecond > 0 && s.GradientNorm > 0));

        var reloaded = NewTrainer(Options(20), modelSeed: 5);
        reloaded.LoadCheckpoint(path);
        Assert.Equal(20, reloaded.Step);
        Assert.Equal(4, reloaded.Evaluations.Count); // the final evaluation is saved with the final state
        Assert.Equal(trainer.Model.Parameters.Values, reloaded.Model.Parameters.Values);
    }

    [Fact]
    public void ACheckpointFromAnotherVariantIsRefusedNamingTheDifferenceAndChangesNothing()
    {
        string path = Path.Combine(_directory, "s6.bin");
        var s6 = NewTrainer(Options(10));
        s6.TrainStep();
        s6.SaveCheckpoint(path);

        var constantB = NewTrainer(Options(10), selectiveB: false);
        var before = (float[])constantB.Model.Parameters.Values.Clone();
        var error = Assert.Throws<InvalidOperationException>(() => constantB.LoadCheckpoint(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("SelectiveB: checkpoint True, this model False", error.Message);
        Assert.Equal(before, constantB.Model.Parameters.Values);
        Assert.Equal(0, constantB.Step);
    }

    [Fact]
    public void ACheckpointSavedUnderOtherOptionsIsRefusedNamingThem()
    {
        string path = Path.Combine(_directory, "options.bin");
        NewTrainer(Options(10)).SaveCheckpoint(path);
        var error = Assert.Throws<InvalidOperationException>(() => NewTrainer(Options(12) with { Seed = 7 }).LoadCheckpoint(path));
        Assert.Contains("steps: checkpoint 10, now 12", error.Message);
        Assert.Contains("seed: checkpoint 42, now 7", error.Message);
    }

    [Fact]
    public void AFailedSaveLeavesThePreviousCheckpointIntact()
    {
        string path = Path.Combine(_directory, "keep.bin");
        var trainer = NewTrainer(Options(10));
        trainer.TrainStep();
        trainer.SaveCheckpoint(path);
        byte[] good = File.ReadAllBytes(path);

        // Same trainer state, but the next save fails after the header and the first tensors are written: the
        // last tensor's data cannot be produced.
        var failing = new Trainer(trainer.Model, trainer.SequenceTask, trainer.Options)
        {
            StateFormat = new SafeTensorsTrainingStateFormat(tensors =>
                [.. tensors.SkipLast(1), tensors[^1] with { Data = FailingMemory.OfLength(tensors[^1].Data.Length) }]),
        };
        failing.TrainStep();
        Assert.Throws<IOException>(() => failing.SaveCheckpoint(path));

        Assert.Equal(good, File.ReadAllBytes(path));
        Assert.Equal(["keep.bin"], Directory.GetFiles(_directory).Select(Path.GetFileName));
        var reloaded = NewTrainer(Options(10));
        reloaded.LoadCheckpoint(path);
        Assert.Equal(1, reloaded.Step);
    }

    [Fact]
    public void CancellingBeforeTheFirstStepChangesNothing()
    {
        var trainer = NewTrainer(Options(10));
        var before = (float[])trainer.Model.Parameters.Values.Clone();
        var summary = trainer.Run(cancellationToken: new CancellationToken(canceled: true));
        Assert.True(summary.Cancelled);
        Assert.Equal(0, summary.Step);
        Assert.Equal(before, trainer.Model.Parameters.Values);
    }

    [Fact]
    public void ANonFiniteLossStopsTrainingBeforeTheWeightsChange()
    {
        var model = new FakeLinearModel(CopyTask.VocabSize, 1);
        var trainer = new Trainer(model, CopyTask, Options(10));
        trainer.TrainStep();
        var before = (float[])model.Parameters.Values.Clone();
        model.ForcedLoss = float.NaN;
        var error = Assert.Throws<InvalidOperationException>(() => trainer.TrainStep());
        Assert.Contains("step 2", error.Message);
        Assert.Equal(before, model.Parameters.Values);
        Assert.Equal(1, trainer.Step);
    }

    [Fact]
    public void RejectsAModelWhoseVocabularyIsSmallerThanTheTasks()
    {
        var error = Assert.Throws<ArgumentException>(() => new Trainer(new FakeLinearModel(5, 1), CopyTask, Options(10)));
        Assert.Contains("(5)", error.Message);
        Assert.Contains("(8", error.Message);
    }

    [Fact]
    public void RejectsOutOfRangeOptionsNamingThem()
    {
        Assert.Equal("WarmupSteps", Assert.Throws<ArgumentOutOfRangeException>(() => NewTrainer(Options(10) with { WarmupSteps = 11 })).ParamName);
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => NewTrainer(Options(10) with { BatchSize = 0 })).ParamName);
        Assert.Equal("GradientClipNorm", Assert.Throws<ArgumentOutOfRangeException>(() => NewTrainer(Options(10) with { GradientClipNorm = 0 })).ParamName);
    }

    [Fact]
    public void StepsBeyondTheEndAreRefused()
    {
        var trainer = NewTrainer(Options(5));
        for (int i = 0; i < 5; i++) trainer.TrainStep();
        Assert.Throws<InvalidOperationException>(() => trainer.TrainStep());
    }
}
