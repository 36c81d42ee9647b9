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
/// <remarks>
/// <para>A model whose backend offers <see cref="IMambaModel.DeviceTraining"/> (a GPU) trains there: parameters,
/// gradient and AdamW moments stay on the device, the gradient's norm is measured there and only the loss and that
/// norm come back each step. Checkpoints copy the parameters and moments down; a resume copies them up.</para>
/// <para>With an <see cref="IDataParallelGroup"/> of W ranks, <see cref="TrainingOptions.BatchSize"/> is the global
/// batch: every rank draws the same global batch from the one seeded stream (the batch a single-device run sees)
/// and trains on its own contiguous share of BatchSize/W sequences, rank r taking sequences r·BatchSize/W onwards,
/// so the shares are disjoint and together are exactly that batch. The group sums the shares' gradients weighted
/// by scored positions, which makes the step the single-device step up to float rounding.</para>
/// </remarks>
public sealed class Trainer : IDisposable
{
    /// <summary>Offsets the evaluation seed from the training seed so held-out sequences come from another stream.</summary>
    private const ulong EvaluationSeedOffset = 0x5DEECE66DUL;

    private readonly int[] _tokens;
    private readonly int[] _targets;
    private readonly float[]? _gradients;
    private readonly IDeviceTraining? _device;
    private readonly IDataParallelGroup? _group;
    private readonly int _localBatch;
    private readonly float[] _lossHistory;
    private readonly List<EvaluationResult> _evaluations = [];
    private readonly string _modelShape;
    private readonly string _fingerprint;
    private Xoshiro256 _dataRandom;

    /// <summary>Prepares to train <paramref name="model"/> on <paramref name="task"/>; allocates every buffer the run needs.</summary>
    public Trainer(IMambaModel model, ISequenceTask task, TrainingOptions options) : this(model, task, options, group: null) { }

    /// <summary>
    /// Prepares one rank of a data-parallel run (<paramref name="group"/>; null trains alone). The model must train
    /// on its device; rank 0's parameters are broadcast to every rank here, so all ranks start equal.
    /// </summary>
    public Trainer(IMambaModel model, ISequenceTask task, TrainingOptions options, IDataParallelGroup? group)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (model.Shape.Vocab < task.VocabSize)
            throw new ArgumentException($"The model's vocabulary ({model.Shape.Vocab}) is smaller than the task's ({task.VocabSize}: {task.Description}).", nameof(model));
        _device = model.DeviceTraining;
        if (group is not null)
        {
            if (_device is null)
                throw new ArgumentException($"Data-parallel training needs a model that trains on its device (a GPU); this one is on {model.Device}.", nameof(model));
            if (options.BatchSize % group.WorldSize != 0)
                throw new ArgumentException($"The global batch (BatchSize {options.BatchSize}) must split evenly over the {group.WorldSize} ranks.", nameof(options));
        }
        Model = model;
        SequenceTask = task;
        Options = options;
        _group = group;
        _localBatch = options.BatchSize / (group?.WorldSize ?? 1);
        if (_device is null)
        {
            Optimizer = new AdamW(model.Parameters.Layout, options.Optimizer);
            _gradients = new float[model.Parameters.Values.Length];
        }
        else
        {
            DeviceOptimizer = _device.CreateOptimizer(options.Optimizer);
            // What the device derives from the parameters comes from the device from the first step on, as after
            // every update and every resume, so runs that start, resume or broadcast compute the same bits.
            _device.UploadParameters();
        }
        Schedule = new LearningRateSchedule(options.LearningRate, options.WarmupSteps, options.Steps, options.MinLearningRateRatio);
        int positions = checked(options.BatchSize * task.SequenceLength);
        _tokens = new int[positions];
        _targets = new int[positions];
        _lossHistory = new float[options.Steps];
        _modelShape = model.Shape.ToString();
        _fingerprint = options.Fingerprint(task);
        _dataRandom = new Xoshiro256(options.Seed);
        group?.BroadcastParameters(_device!);
    }

    /// <summary>The model being trained (updated in place).</summary>
    public IMambaModel Model { get; }
    /// <summary>Where the training and evaluation sequences come from.</summary>
    public ISequenceTask SequenceTask { get; }
    /// <summary>The run's settings.</summary>
    public TrainingOptions Options { get; }
    /// <summary>The host optimizer and its moments; null when the model trains on its device (see <see cref="DeviceOptimizer"/>).</summary>
    public AdamW? Optimizer { get; }
    /// <summary>The device optimizer (moments on the device) when the model trains there; null on the host.</summary>
    public IDeviceOptimizer? DeviceOptimizer { get; }
    /// <summary>This process's rank in a data-parallel run; 0 when training alone.</summary>
    public int Rank => _group?.Rank ?? 0;
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
        learningRate = Schedule.At(Step);
        float loss = _device is null
            ? HostStep(learningRate, out gradientNorm)
            : DeviceStep(_device, learningRate, out gradientNorm);
        _lossHistory[Step] = loss;
        Step++;
        return loss;
    }

    /// <summary>Gradient to the host, clipped and applied there; the device copy (if any) refreshes from the host.</summary>
    private float HostStep(float learningRate, out float gradientNorm)
    {
        float loss = Model.ForwardBackward(_tokens, _targets, Options.BatchSize, _gradients);
        gradientNorm = GradientClipping.ClipByGlobalNorm(_gradients, Options.GradientClipNorm);
        ThrowIfDiverged(loss, gradientNorm);
        Optimizer!.Update(Model.Parameters.Values, _gradients, learningRate);
        Model.Parameters.MarkChanged();
        return loss;
    }

    /// <summary>This rank's share of the batch forward and backward, combined over the group, clipped and applied on the device.</summary>
    private float DeviceStep(IDeviceTraining device, float learningRate, out float gradientNorm)
    {
        var (start, length) = ShareOf(Rank, _group?.WorldSize ?? 1, Options.BatchSize, SequenceTask.SequenceLength);
        var tokens = _tokens.AsSpan(start, length);
        var targets = _targets.AsSpan(start, length);
        float loss = device.ForwardBackward(tokens, targets, _localBatch);
        if (_group is not null) loss = _group.AllReduceGradients(device, loss, ScoredShare(targets));
        double norm = Math.Sqrt(device.GradientSumOfSquares());
        gradientNorm = (float)norm;
        ThrowIfDiverged(loss, gradientNorm);
        DeviceOptimizer!.Update(learningRate, GradientClipping.ScaleFor(norm, Options.GradientClipNorm));
        return loss;
    }

    private void ThrowIfDiverged(float loss, float gradientNorm)
    {
        if (!float.IsFinite(loss) || !float.IsFinite(gradientNorm))
            throw new InvalidOperationException($"Training diverged at step {Step + 1}: loss {loss}, gradient norm {gradientNorm}. The weights are those after step {Step}.");
    }

    /// <summary>
    /// This rank's weight in the sum over ranks: its scored positions over the global batch's, so the weighted sum of
    /// the ranks' mean losses (and gradients) is the global batch's mean. 1/W when nothing is scored anywhere.
    /// </summary>
    private float ScoredShare(ReadOnlySpan<int> localTargets)
    {
        static int Scored(ReadOnlySpan<int> targets)
        {
            int count = 0;
            foreach (int target in targets)
                if (target != Cpu.CrossEntropy.Unscored) count++;
            return count;
        }
        int total = Scored(_targets);
        return total == 0 ? 1f / _group!.WorldSize : (float)((double)Scored(localTargets) / total);
    }

    /// <summary>
    /// Where rank <paramref name="rank"/>'s share of a global batch lies in its row-major token buffer: sequences
    /// rank·(batch/world) .. (rank+1)·(batch/world) − 1, as (first token, token count). The shares of ranks 0 .. W−1
    /// are disjoint and, in rank order, are the whole batch.
    /// </summary>
    public static (int Start, int Length) ShareOf(int rank, int worldSize, int batch, int sequenceLength)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"worldSize must be >= 1, was {worldSize}.");
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in 0..{worldSize - 1}, was {rank}.");
        if (batch < 1 || batch % worldSize != 0)
            throw new ArgumentException($"The batch ({batch}) must be a positive multiple of the world size ({worldSize}).", nameof(batch));
        int perRank = checked(batch / worldSize * sequenceLength);
        return (rank * perRank, perRank);
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

        // The host parameters are what users save or run elsewhere: bring them level with the device.
        _device?.DownloadParameters();
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

    /// <summary>
    /// Saves the full training state atomically (a failed write leaves the previous file intact). On the device the
    /// parameters and moments are copied down first. In a data-parallel run only rank 0 writes (every rank holds the
    /// same state); the other ranks return at once.
    /// </summary>
    public void SaveCheckpoint(string path)
    {
        if (Rank != 0) return;
        float[] firstMoment, secondMoment;
        if (_device is null)
        {
            firstMoment = Optimizer!.FirstMoment.ToArray();
            secondMoment = Optimizer.SecondMoment.ToArray();
        }
        else
        {
            _device.DownloadParameters();
            firstMoment = new float[Model.Parameters.Values.Length];
            secondMoment = new float[firstMoment.Length];
            DeviceOptimizer!.CopyMomentsToHost(firstMoment, secondMoment);
        }
        StateFormat.Write(path, new TrainingState(
            Step, _dataRandom.GetState(), _modelShape, _fingerprint,
            (float[])Model.Parameters.Values.Clone(), firstMoment, secondMoment,
            LossHistory.ToArray(), _evaluations.ToArray()));
    }

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
        if (state.Parameters.Length != Model.Parameters.Values.Length)
            throw new InvalidOperationException($"Training state file '{path}' holds {state.Parameters.Length} parameters; this model has {Model.Parameters.Values.Length}.");
        if (state.Step > Options.Steps)
            throw new InvalidOperationException($"Training state file '{path}' is at step {state.Step}, beyond this run's {Options.Steps} steps.");

        // Marked changed, the host parameters reach a device copy before its next use.
        state.Parameters.CopyTo(Model.Parameters.Values, 0);
        Model.Parameters.MarkChanged();
        if (_device is null)
        {
            Optimizer!.Restore(state.Step, state.FirstMoment, state.SecondMoment);
        }
        else
        {
            _device.UploadParameters();
            DeviceOptimizer!.Restore(state.Step, state.FirstMoment, state.SecondMoment);
        }
        _dataRandom = Xoshiro256.FromState(state.DataRandomState);
        Array.Clear(_lossHistory);
        state.LossHistory.CopyTo(_lossHistory, 0);
        _evaluations.Clear();
        _evaluations.AddRange(state.Evaluations);
        Step = state.Step;
    }

    /// <summary>Frees the device optimizer's moments (nothing on the host path). The model and the group stay the caller's.</summary>
    public void Dispose() => DeviceOptimizer?.Dispose();

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
