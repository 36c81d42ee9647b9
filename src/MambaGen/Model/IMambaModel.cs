namespace MambaGen;

/// <summary>What every generated model offers the runtime (training loop, evaluation, checkpointing, samples).</summary>
public interface IMambaModel : IDisposable
{
    /// <summary>The constants the type was generated with.</summary>
    MambaShape Shape { get; }

    /// <summary>The model's parameters (flat, HF-keyed); training updates them in place.</summary>
    MambaParameters Parameters { get; }

    /// <summary>The processor this instance computes on.</summary>
    Device Device { get; }

    /// <summary>The same model (sharing <see cref="Parameters"/>) on <paramref name="device"/>; dispose it when done.</summary>
    IMambaModel To(Device device);

    /// <summary>
    /// The backend's device-side training (parameters, gradients and optimizer moments kept on a GPU), or null where
    /// the model trains on the host. The <see cref="Training.Trainer"/> uses it when present.
    /// </summary>
    Training.IDeviceTraining? DeviceTraining => null;

    /// <summary>Logits for every position: tokens are batch×len ids row-major; the result is batch×len×Vocab.</summary>
    float[] Forward(int[] tokens, int batch);

    /// <summary>
    /// Forward and backward for next-token training. <paramref name="targets"/> has one id per token, −1 where the
    /// position is not scored. Overwrites <paramref name="gradients"/> (laid out like <see cref="Parameters"/>) with
    /// the gradient of the mean cross-entropy over scored positions, and returns that mean loss.
    /// </summary>
    float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients);
}
