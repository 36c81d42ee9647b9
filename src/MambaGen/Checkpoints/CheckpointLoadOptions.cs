namespace MambaGen.Checkpoints;

/// <summary>
/// How strictly <see cref="MambaCheckpoint.Load"/> checks what it reads. A generated model's <c>Load(dir)</c> uses
/// the defaults; to relax them, load the parameters yourself and wrap them:
/// <c>MyModel.FromParameters(MambaCheckpoint.Load(dir, MyModel.ModelShape, new CheckpointLoadOptions { AllowNonFiniteWeights = true }))</c>.
/// </summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>The defaults: every check on.</summary>
    public static CheckpointLoadOptions Default { get; } = new();

    /// <summary>
    /// Accept NaN and ±∞ among the weights (by default the first one found is an error naming the tensor and the
    /// element). Useful only to inspect a broken checkpoint: such a model's outputs are NaN wherever they touch it.
    /// </summary>
    public bool AllowNonFiniteWeights { get; init; }
}
