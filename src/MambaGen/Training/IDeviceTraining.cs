namespace MambaGen.Training;

/// <summary>
/// Training where a backend's parameters live (a GPU): forward and backward leave the gradient on the device, its
/// global norm is measured there, and <see cref="IDeviceOptimizer"/> updates the parameters there, so a step moves
/// only the tokens up and two numbers (loss, squared norm) down. The <see cref="Trainer"/> chooses this path when
/// <see cref="IMambaModel.DeviceTraining"/> is not null; the CPU backend does not offer it.
/// </summary>
public interface IDeviceTraining
{
    /// <summary>
    /// As <see cref="IMambaModel.ForwardBackward"/>, but the gradient stays on the device (for <see cref="GradientSumOfSquares"/>
    /// and the optimizer); returns the mean cross-entropy over scored positions. Host parameters marked changed
    /// since the device last saw them are copied up first.
    /// </summary>
    float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch);

    /// <summary>Σ g² over the device gradient, accumulated in double in a fixed order (the same bits every call).</summary>
    double GradientSumOfSquares();

    /// <summary>An optimizer with zero moments on the device, for this backend's parameters.</summary>
    IDeviceOptimizer CreateOptimizer(AdamWOptions options);

    /// <summary>Copies the device parameters into the host <see cref="MambaParameters"/> (for checkpoints and the CPU path).</summary>
    void DownloadParameters();

    /// <summary>
    /// Copies the host parameters to the device and derives there what follows from them exactly as after an
    /// optimizer step, so that a run resumed from a checkpoint computes what the uninterrupted run computed.
    /// </summary>
    void UploadParameters();
}

/// <summary>AdamW whose moments live on the device, updating the device parameters with the device gradient.</summary>
public interface IDeviceOptimizer : IDisposable
{
    /// <summary>Updates applied so far (t in the bias corrections).</summary>
    long StepCount { get; }

    /// <summary>
    /// One update at <paramref name="learningRate"/> with the gradient multiplied by <paramref name="gradientScale"/>
    /// first (the clipping factor; 1 leaves it unchanged), rounding exactly as <see cref="GradientClipping"/> then
    /// <see cref="AdamW.Update"/> do on the host.
    /// </summary>
    void Update(float learningRate, float gradientScale);

    /// <summary>Copies both moments to the host, laid out like the parameters.</summary>
    void CopyMomentsToHost(Span<float> firstMoment, Span<float> secondMoment);

    /// <summary>Replaces the moments and the step count (a resumed run).</summary>
    void Restore(long stepCount, ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment);
}
