namespace MambaGen.Training;

/// <summary>
/// The ranks of a data-parallel run, one process (and one GPU) each, as the <see cref="Trainer"/> sees them: every
/// rank holds the whole model, computes the gradient of its share of the global batch, and the group combines the
/// shares so that every rank takes the same optimizer step. <c>MambaGen.Cuda.Nccl.NcclDataParallelGroup</c>
/// implements it with NCCL.
/// </summary>
public interface IDataParallelGroup : IDisposable
{
    /// <summary>This process's rank, 0 .. WorldSize − 1. Rank 0 writes checkpoints.</summary>
    int Rank { get; }

    /// <summary>Ranks in the run.</summary>
    int WorldSize { get; }

    /// <summary>Overwrites every rank's device parameters with rank 0's (the start of a run).</summary>
    void BroadcastParameters(IDeviceTraining model);

    /// <summary>
    /// Replaces each rank's device gradient g_r by Σ_r w_r·g_r and returns Σ_r w_r·loss_r, where w_r is
    /// <paramref name="weight"/> on rank r (its share of the global batch's scored positions), so every rank ends
    /// with the gradient and loss of the global batch. Throws, after aborting the group, when a rank fails or does
    /// not answer in time.
    /// </summary>
    float AllReduceGradients(IDeviceTraining model, float loss, float weight);
}
