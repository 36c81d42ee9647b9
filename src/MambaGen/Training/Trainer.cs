using System.Diagnostics;
using MambaGen.Numerics;
using MambaGen.Tasks;

namespace MambaGen.Training;

/// <summary>
/// Trains any <see cref="IMambaModel"/> on a <see cref="ISequenceTask"/> with AdamW, warm-up + cosine schedule and
/// global-norm clipping. Token, target and gradient buffers are allocated once, so a step allocates nothing beyond
/// what the model itself does. The data stream is a <see cref="Xoshiro256"/> seeded from the options and saved with
/// the weights and moments, so a run resumed from a checkpoint continues bit-for-bit.
/// </summary>
public sealed class Trainer
{
    /// <summary>Offsets the evaluation seed from the training seed so held-out sequences come from another stream.</summary>
    private const ulong EvaluationSeedOffset = 0x5DEECE66DUL;

    private readonly int[] _tokens;
    private readonly int[] _targets;
    private readonly float[] _gradients;
    private readonly float[] _lossHistory;
    private readonly List<EvaluationResult> _evaluations = [];
    private readonly string _modelShape;
    private readonly string _fingerprint;
    private Xoshiro256 _dataRandom;

    /// <summary>Prepares to train <paramref name="model"/> on <paramref name="task"/>; allocates every buffer the run needs.</summary>
    public Trainer(IMambaModel model, ISequenceTask task, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (model.Shape.Vocab < task.VocabSize)
            throw new ArgumentException($"The model's vocabulary ({model.Shape.Vocab}) is smaller than the task's ({task.VocabSize}: {task.Description}).", nameof(model));
        Model = model;
        SequenceTask = task;
        Options = options;
        Optimizer = new AdamW(model.Parameters.Layout, options.Optimizer);
        Schedule = new LearningRateSchedule(options.LearningRate, options.WarmupSteps, options.Steps, options.MinLearningRateRatio);
        int positions = checked(options.BatchSize * task.SequenceLength);
        _tokens = new int[positions];
        _targets = new int[positions];
        _gradients = new float[model.Parameters.Values.Length];
        _lossHistory = new float[options.Steps];
        _modelShape = model.Shape.ToString();
        _fingerprint = options.Fingerprint(task);
        _dataRandom = new Xoshiro256(options.Seed);
    }

    /// <summary>The model being trained (updated in place).</summary>
    public IMambaModel Model { get; }
    /// <summary>Where the training and evaluation sequences come from.</summary>
    public ISequenceTask SequenceTask { get; }
    /// <summary>The run's settings.</summary>
    public TrainingOptions Options { get; }
    /// <summary>The optimizer and its moments.</summary>
    public AdamW Optimizer { get; }
    /// <summary>The learning rate at each step.</summary>
    public LearningRateSchedule Schedule { get; }

    /// <summary>Updates completed so far.</summary>
    public long Step { get; private set; }

    /// <summary>Tokens (all positions) processed per update.</summary>
    public long TokensPerStep => (long)Options.BatchSize * SequenceTask.SequenceLength;

    /// <summary>Loss of each completed update, in order.</summary>
    public ReadOnlySpan<float> LossHistory => _lossHistory.AsSpan(0, (int)Step);

    /// <summary>Held-out evaluations so far, in order.</summary>
    public IReadOnlyList<EvaluationResult> Evaluations => _evaluations;

    /// <summary>
    /// One update: draw a batch, forward + backward, clip, step AdamW at the scheduled rate. Returns the batch loss.
    /// Throws <see cref="InvalidOperationException"/> (leaving the weights as they were) when the loss or the
    /// gradient is not finite.
    /// </summary>
    public float TrainStep() => TrainStep(out _, out _);

    private float TrainStep(out float learningRate, out float gradientNorm)
    {
        if (Step >= Options.Steps)
            throw new InvalidOperationException($"The run is complete: all {Options.Steps} steps are done.");
        SequenceTask.Fill(_dataRandom, _tokens, _targets, Options.BatchSize);
        float loss = Model.ForwardBackward(_tokens, _targets, Options.BatchSize, _gradients);
        gradientNorm = GradientClipping.ClipByGlobalNorm(_gradients, Options.GradientClipNorm);
        if (!float.IsFinite(loss) || !float.IsFinite(gradientNorm))
            throw new InvalidOperationException($"Training diverged at step {Step + 1}: loss {loss}, gradient norm {gradientNorm}. The weights are those after step {Step}.");
        learningRate = Schedule.At(Step);
        Optimizer.Update(Model.Parameters.Values, _gradients, learningRate);
        Model.Parameters.MarkChanged();
        _lossHistory[Step] = loss;
        Step++;
        return loss;
    }

    /// <summary>
    /// Trains until <see cref="TrainingOptions.Steps"/> or until <paramref name="cancellationToken"/> is cancelled
    /// (checked between steps). Evaluates and checkpoints as the options say; when cancelled with a checkpoint path
    /// it saves the last completed step, so the run can resume from there.
    /// </summary>
    public TrainingSummary Run(ITrainingProgress? progress = null, CancellationToken cancellationToken = default)
    {
        long runStart = Stopwatch.GetTimestamp();
        long trainingTicks = 0, stepsThisRun = 0, lastSaved = -1;
        bool cancelled = false;
        while (Step < Options.Steps)
        {
            if (cancellationToken.IsCancellationRequested) { cancelled = true; break; }
            long stepStart = Stopwatch.GetTimestamp();
            float loss = TrainStep(out float learningRate, out float gradientNorm);
            long now = Stopwatch.GetTimestamp();
            trainingTicks += now - stepStart;
            stepsThisRun++;
            if (progress is not null)
            {
                double trainingSeconds = (double)trainingTicks / Stopwatch.Frequency;
                double secondsPerStep = trainingSeconds / stepsThisRun;
                progress.OnStep(new TrainingStepReport(
                    Step, Options.Steps, loss, learningRate, gradientNorm,
                    TokensPerSecond: trainingSeconds > 0 ? stepsThisRun * TokensPerStep / trainingSeconds : 0,
                    Elapsed: Stopwatch.GetElapsedTime(runStart, now),
                    Remaining: TimeSpan.FromSeconds(secondsPerStep * (Options.Steps - Step))));
            }
            if (Options.EvaluationInterval > 0 && Step % Options.EvaluationInterval == 0 && Step < Options.Steps)
                progress?.OnEvaluation(Evaluate());
            // The last step's evaluation and checkpoint come after the loop, so the saved history includes it.
            if (Options.CheckpointPath is not null && Options.CheckpointInterval > 0 && Step % Options.CheckpointInterval == 0 && Step < Options.Steps)
            {
                SaveCheckpoint(Options.CheckpointPath);
                progress?.OnCheckpoint(Options.CheckpointPath, Step);
                lastSaved = Step;
            }
        }

        EvaluationResult? final = null;
        if (!cancelled)
        {
            final = Evaluate();
            progress?.OnEvaluation(final);
        }
        if (Options.CheckpointPath is not null && !(cancelled && lastSaved == Step))
        {
            SaveCheckpoint(Options.CheckpointPath);
            progress?.OnCheckpoint(Options.CheckpointPath, Step);
        }
        double seconds = (double)trainingTicks / Stopwatch.Frequency;
        return new TrainingSummary(Step, cancelled, Stopwatch.GetElapsedTime(runStart),
            seconds > 0 ? stepsThisRun * TokensPerStep / seconds : 0, final);
    }

    /// <summary>
    /// Scores the model on a fixed held-out set (<see cref="TrainingOptions.EvaluationSequences"/> sequences, the
    /// same ones every time, drawn from a stream separate from the training data) and records the result.
    /// </summary>
    public EvaluationResult Evaluate()
    {
        var result = new EvaluationResult(Step, TaskScore.Evaluate(Model, SequenceTask, Options.EvaluationSequences, Options.BatchSize, HeldOutRandom(Options.Seed)));
        _evaluations.Add(result);
        return result;
    }

    /// <summary>
    /// A fresh copy of the stream the held-out sequences of a run seeded with <paramref name="seed"/> are drawn from,
    /// so code outside the trainer (an untrained baseline, other sequence lengths) scores on the same set.
    /// </summary>
    public static Xoshiro256 HeldOutRandom(ulong seed) => new(unchecked(seed + EvaluationSeedOffset));

    /// <summary>Saves the full training state atomically (a failed write leaves the previous file intact).</summary>
    public void SaveCheckpoint(string path) => StateFormat.Write(path, new TrainingState(
        Step, _dataRandom.GetState(), _modelShape, _fingerprint,
        (float[])Model.Parameters.Values.Clone(), Optimizer.FirstMoment.ToArray(), Optimizer.SecondMoment.ToArray(),
        LossHistory.ToArray(), _evaluations.ToArray()));

    /// <summary>
    /// Restores a state saved by <see cref="SaveCheckpoint"/>. Refuses, changing nothing, a file that is corrupt,
    /// was saved by another model variant (naming the differing shape fields) or under other training options.
    /// </summary>
    public void LoadCheckpoint(string path)
    {
        var state = StateFormat.Read(path);
        if (state.ModelShape != _modelShape)
            throw new InvalidOperationException(
                $"Training state file '{path}' belongs to another model variant: {DescribeDifferences(state.ModelShape, _modelShape, "checkpoint", "this model")}.");
        if (state.OptionsFingerprint != _fingerprint)
            throw new InvalidOperationException(
                $"Training state file '{path}' was saved under other training options: {DescribeDifferences(state.OptionsFingerprint, _fingerprint, "checkpoint", "now")}.");
        if (state.Parameters.Length != _gradients.Length)
            throw new InvalidOperationException($"Training state file '{path}' holds {state.Parameters.Length} parameters; this model has {_gradients.Length}.");
        if (state.Step > Options.Steps)
            throw new InvalidOperationException($"Training state file '{path}' is at step {state.Step}, beyond this run's {Options.Steps} steps.");

        state.Parameters.CopyTo(Model.Parameters.Values, 0);
        Model.Parameters.MarkChanged();
        Optimizer.Restore(state.Step, state.FirstMoment, state.SecondMoment);
        _dataRandom = Xoshiro256.FromState(state.DataRandomState);
        Array.Clear(_lossHistory);
        state.LossHistory.CopyTo(_lossHistory, 0);
        _evaluations.Clear();
        _evaluations.AddRange(state.Evaluations);
        Step = state.Step;
    }

    /// <summary>The storage format; tests swap in one that fails mid-write.</summary>
    internal ITrainingStateFormat StateFormat { get; init; } = new SafeTensorsTrainingStateFormat();

    /// <summary>
    /// Lists the fields that differ between two canonical descriptions (a record's "{ A = 1, B = 2 }" text or
    /// "key=value" lines), e.g. "SelectiveB: checkpoint True, this model False".
    /// </summary>
    private static string DescribeDifferences(string saved, string current, string savedName, string currentName)
    {
        static Dictionary<string, string> Fields(string text)
        {
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            int open = text.IndexOf('{'), close = text.LastIndexOf('}');
            var entries = open >= 0 && close > open ? text[(open + 1)..close].Split(", ") : text.Split('\n');
            foreach (var entry in entries)
            {
                int separator = entry.IndexOf('=');
                if (separator > 0) fields[entry[..separator].Trim()] = entry[(separator + 1)..].Trim();
            }
            return fields;
        }
        var a = Fields(saved);
        var b = Fields(current);
        var differences = a.Keys.Union(b.Keys)
            .Where(key => a.GetValueOrDefault(key) != b.GetValueOrDefault(key))
            .Select(key => $"{key}: {savedName} {a.GetValueOrDefault(key) ?? "(absent)"}, {currentName} {b.GetValueOrDefault(key) ?? "(absent)"}")
            .ToList();
        return differences.Count > 0 ? string.Join("; ", differences) : $"{savedName} '{saved}', {currentName} '{current}'";
    }
}
