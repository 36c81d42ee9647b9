using System.Globalization;
using MambaGen.Tasks;

namespace MambaGen.Training;

/// <summary>Settings of one training run. Those that shape the trajectory form its fingerprint (see <see cref="Fingerprint"/>).</summary>
public sealed record TrainingOptions
{
    /// <summary>Total optimizer updates of the run (the schedule decays over exactly these).</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Sequences per update.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Peak learning rate, reached at the end of warm-up.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>Steps of linear learning-rate warm-up.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>The cosine decay ends at LearningRate × this.</summary>
    public float MinLearningRateRatio { get; init; } = 0.1f;

    /// <summary>Maximum global L2 norm of the gradient; +∞ disables clipping.</summary>
    public float GradientClipNorm { get; init; } = 1f;

    /// <summary>AdamW hyperparameters.</summary>
    public AdamWOptions Optimizer { get; init; } = new();

    /// <summary>Seeds the training data stream (and, through a fixed offset, the held-out evaluation set).</summary>
    public ulong Seed { get; init; }

    /// <summary>Evaluate every this many steps; 0 evaluates only at the end.</summary>
    public int EvaluationInterval { get; init; }

    /// <summary>Held-out sequences per evaluation.</summary>
    public int EvaluationSequences { get; init; } = 256;

    /// <summary>Where training state is saved; null saves nothing.</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>Save every this many steps; 0 saves only at the end or when cancelled.</summary>
    public int CheckpointInterval { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, object value, string expected)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be {expected}, was {value}.");
        }
        Check(Steps >= 1, nameof(Steps), Steps, ">= 1");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, ">= 1");
        Check(LearningRate > 0 && float.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "finite and > 0");
        Check(WarmupSteps >= 0 && WarmupSteps <= Steps, nameof(WarmupSteps), WarmupSteps, $"in 0..{Steps} (Steps)");
        Check(MinLearningRateRatio is >= 0 and <= 1, nameof(MinLearningRateRatio), MinLearningRateRatio, "in [0, 1]");
        Check(GradientClipNorm > 0, nameof(GradientClipNorm), GradientClipNorm, "> 0 (+∞ disables clipping)");
        Check(EvaluationInterval >= 0, nameof(EvaluationInterval), EvaluationInterval, ">= 0");
        Check(EvaluationSequences >= 1, nameof(EvaluationSequences), EvaluationSequences, ">= 1");
        Check(CheckpointInterval >= 0, nameof(CheckpointInterval), CheckpointInterval, ">= 0");
        ArgumentNullException.ThrowIfNull(Optimizer);
        Optimizer.Validate();
    }

    /// <summary>
    /// Canonical "key=value" lines of everything that determines the sequence of weights: a checkpoint resumes only
    /// under the same fingerprint. Evaluation and checkpoint settings are left out because they do not change it.
    /// </summary>
    public string Fingerprint(ISequenceTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        static string F(float value) => value.ToString("R", CultureInfo.InvariantCulture);
        return string.Join('\n',
            $"task={task.Description}",
            $"steps={Steps}",
            $"batchSize={BatchSize}",
            $"learningRate={F(LearningRate)}",
            $"warmupSteps={WarmupSteps}",
            $"minLearningRateRatio={F(MinLearningRateRatio)}",
            $"gradientClipNorm={F(GradientClipNorm)}",
            $"beta1={F(Optimizer.Beta1)}",
            $"beta2={F(Optimizer.Beta2)}",
            $"epsilon={F(Optimizer.Epsilon)}",
            $"weightDecay={F(Optimizer.WeightDecay)}",
            $"seed={Seed.ToString(CultureInfo.InvariantCulture)}");
    }
}
