using MambaGen.Cuda.Backend;
using MambaGen.Training;

namespace MambaGen.Cuda.Nccl;

/// <summary>
/// Data-parallel training over NCCL: one process per GPU, found through <see cref="TcpRendezvous"/> (rank 0 makes
/// the NCCL unique id and serves it), then an NCCL communicator on the model's GPU. Parameters are broadcast from
/// rank 0 at the start; each step the ranks' weighted gradients and losses are summed in place on the device, in one
/// NCCL group, on the model's stream.
/// </summary>
/// <remarks>
/// The gradient is reduced once, after the whole backward pass, as one buffer: the all-reduce does not yet overlap
/// the backward. Overlapping it would mean launching per-layer buckets on a second stream as the backward finishes
/// each layer's gradient (they are laid out layer by layer, so buckets are contiguous ranges).
/// </remarks>
public sealed class NcclDataParallelGroup : IDataParallelGroup
{
    private readonly NcclCommunicator _communicator;
    private readonly CudaDeviceVariable<float> _loss;

    private NcclDataParallelGroup(NcclCommunicator communicator, CudaDeviceVariable<float> loss)
    {
        _communicator = communicator;
        _loss = loss;
    }

    /// <summary>
    /// Joins the run <paramref name="options"/> describes with <paramref name="model"/>, which must be on CUDA device
    /// <see cref="DataParallelOptions.LocalRank"/>. Blocks until every rank has joined (or the timeout passes).
    /// </summary>
    public static NcclDataParallelGroup Join(DataParallelOptions options, IMambaModel model)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(model);
        options.Validate();
        var gpu = GpuOf(model.DeviceTraining, model.Device);
        if (gpu.Context.DeviceOrdinal != options.LocalRank)
            throw new ArgumentException($"Rank {options.Rank} has local rank {options.LocalRank} and so should train on cuda:{options.LocalRank}, but the model is on {model.Device}.", nameof(model));
        // Load NCCL before the rendezvous, so a missing library fails fast on every rank rather than as a timeout elsewhere.
        _ = NcclCommunicator.LibraryVersion;
        var id = TcpRendezvous.Exchange(options, NcclCommunicator.CreateUniqueId);
        var communicator = new NcclCommunicator(gpu.Context, id, options.WorldSize, options.Rank, options.Timeout);
        try
        {
            return new NcclDataParallelGroup(communicator, new CudaDeviceVariable<float>(gpu.Context, 1));
        }
        catch
        {
            communicator.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public int Rank => _communicator.Rank;

    /// <inheritdoc/>
    public int WorldSize => _communicator.WorldSize;

    /// <summary>The NCCL library in use.</summary>
    public static Version LibraryVersion => NcclCommunicator.LibraryVersion;

    /// <inheritdoc/>
    public void BroadcastParameters(IDeviceTraining model)
    {
        var gpu = GpuOf(model, null);
        var weights = gpu.CurrentWeights;
        _communicator.Broadcast(weights.DevicePointer, weights.Count, root: 0, gpu.Stream);
        _communicator.Wait(gpu.Stream, "the broadcast of rank 0's parameters");
        gpu.OnDeviceParametersReplaced();
    }

    /// <inheritdoc/>
    public float AllReduceGradients(IDeviceTraining model, float loss, float weight)
    {
        var gpu = GpuOf(model, null);
        var gradients = gpu.GradientBuffer;
        if (weight != 1f) gpu.ScaleGradients(weight);
        Span<float> value = [loss * weight];
        // A plain copy runs on the legacy default stream, which the model's blocking stream is ordered with.
        _loss.CopyToDevice(value);
        using (_communicator.Group())
        {
            _communicator.AllReduceSum(gradients.DevicePointer, gradients.Count, gpu.Stream);
            _communicator.AllReduceSum(_loss.DevicePointer, 1, gpu.Stream);
        }
        _communicator.Wait(gpu.Stream, "the all-reduce of the gradients");
        _loss.CopyToHost(value);
        return value[0];
    }

    /// <summary>Frees the communicator (aborted if a peer failed) and its buffer.</summary>
    public void Dispose()
    {
        _communicator.Dispose();
        _loss.Dispose();
    }

    private static CudaMambaModel GpuOf(IDeviceTraining? training, Device? device) => training as CudaMambaModel
        ?? throw new ArgumentException($"NCCL data-parallel training needs a model on a CUDA device{(device is { } d ? $", not {d}" : "")}.");
}
