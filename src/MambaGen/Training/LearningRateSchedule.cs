namespace MambaGen.Training;

/// <summary>
/// Linear warm-up to the peak learning rate, then cosine decay to PeakLearningRate·MinRatio at the last step.
/// Steps are 0-based: step s is the (s+1)-th update.
/// </summary>
/// <remarks>
/// During warm-up the rate is peak·(s+1)/WarmupSteps, so the first update already moves the weights and the peak is
/// reached at the last warm-up step. After it, with progress p = (s − WarmupSteps)/(TotalSteps − WarmupSteps − 1)
/// clamped to [0, 1], the rate is floor + (peak − floor)·(1 + cos πp)/2: the first decay step is at the peak and the
/// last step (TotalSteps − 1) is at the floor (a decay phase of a single step stays at the peak).
/// </remarks>
public sealed class LearningRateSchedule
{
    /// <summary>A schedule of <paramref name="totalSteps"/> steps; throws naming the first argument out of range.</summary>
    public LearningRateSchedule(float peakLearningRate, int warmupSteps, int totalSteps, float minRatio)
    {
        if (!(peakLearningRate > 0 && float.IsFinite(peakLearningRate)))
            throw new ArgumentOutOfRangeException(nameof(peakLearningRate), peakLearningRate, $"peakLearningRate must be finite and > 0, was {peakLearningRate}.");
        if (totalSteps < 1)
            throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, $"totalSteps must be >= 1, was {totalSteps}.");
        if (warmupSteps < 0 || warmupSteps > totalSteps)
            throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, $"warmupSteps must be in 0..{totalSteps} (totalSteps), was {warmupSteps}.");
        if (!(minRatio >= 0 && minRatio <= 1))
            throw new ArgumentOutOfRangeException(nameof(minRatio), minRatio, $"minRatio must be in [0, 1], was {minRatio}.");
        PeakLearningRate = peakLearningRate;
        WarmupSteps = warmupSteps;
        TotalSteps = totalSteps;
        MinRatio = minRatio;
    }

    /// <summary>Rate at the end of warm-up.</summary>
    public float PeakLearningRate { get; }
    /// <summary>Steps of linear warm-up.</summary>
    public int WarmupSteps { get; }
    /// <summary>Steps in the whole run.</summary>
    public int TotalSteps { get; }
    /// <summary>The last step's rate as a fraction of the peak.</summary>
    public float MinRatio { get; }

    /// <summary>The learning rate for 0-based update <paramref name="step"/> (steps past the end stay at the floor).</summary>
    public float At(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, $"step must be >= 0, was {step}.");
        double peak = PeakLearningRate;
        if (step < WarmupSteps) return (float)(peak * (step + 1) / WarmupSteps);
        int decaySteps = TotalSteps - WarmupSteps - 1;
        double progress = decaySteps <= 0 ? 0 : Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        double floor = peak * MinRatio;
        return (float)(floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
