namespace MambaGen.Training;

/// <summary>What the trainer reports after each completed update.</summary>
/// <param name="Step">Updates completed so far (1 after the first).</param>
/// <param name="TotalSteps">Updates the run will make in all.</param>
/// <param name="Loss">Mean cross-entropy of this update's batch over its scored positions.</param>
/// <param name="LearningRate">Rate this update used.</param>
/// <param name="GradientNorm">Global L2 norm of the gradient before clipping.</param>
/// <param name="TokensPerSecond">Throughput (all positions of every sequence) since this Run call began.</param>
/// <param name="Elapsed">Time since this Run call began.</param>
/// <param name="Remaining">Estimated time to the last step at the throughput so far.</param>
public readonly record struct TrainingStepReport(
    long Step, long TotalSteps, float Loss, float LearningRate, float GradientNorm,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining);

/// <summary>Receives a run's progress. Called on the training thread; OnStep should be cheap.</summary>
public interface ITrainingProgress
{
    /// <summary>After each update.</summary>
    void OnStep(in TrainingStepReport report);

    /// <summary>After each held-out evaluation.</summary>
    void OnEvaluation(EvaluationResult evaluation);

    /// <summary>After the training state was saved to <paramref name="path"/> at <paramref name="step"/>.</summary>
    void OnCheckpoint(string path, long step);
}

/// <summary>How a <see cref="Trainer.Run"/> call ended.</summary>
/// <param name="Step">Updates completed in all (including those before a resume).</param>
/// <param name="Cancelled">True when the cancellation token stopped the run before its last step.</param>
/// <param name="Elapsed">Wall time of this Run call.</param>
/// <param name="TokensPerSecond">Training throughput of this Run call (evaluation and checkpoint time excluded).</param>
/// <param name="FinalEvaluation">The held-out evaluation at the end; null when cancelled.</param>
public sealed record TrainingSummary(long Step, bool Cancelled, TimeSpan Elapsed, double TokensPerSecond, EvaluationResult? FinalEvaluation);
