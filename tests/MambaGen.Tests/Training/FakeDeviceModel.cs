using System.Numerics.Tensors;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

/// <summary>
/// <see cref="FakeLinearModel"/> behind <see cref="IDeviceTraining"/>, with host arrays standing in for device memory,
/// so the trainer's device path (norm, clipping factor, optimizer, checkpoints, data-parallel shares) can be tested
/// on a machine without a GPU. Its "device" step performs the host path's operations in the host path's order, so
/// a run through either path must give the same bits. It records every batch it trained on.
/// </summary>
internal sealed class FakeDeviceModel : IMambaModel, IDeviceTraining
{
    private readonly FakeLinearModel _inner;

    public FakeDeviceModel(int vocab, ulong seed)
    {
        _inner = new FakeLinearModel(vocab, seed);
        Gradients = new float[_inner.Parameters.Values.Length];
    }

    /// <summary>The gradient of the last ForwardBackward, as the group left it.</summary>
    public float[] Gradients { get; }

    /// <summary>The tokens of every ForwardBackward, in order.</summary>
    public List<int[]> Batches { get; } = [];

    public float? ForcedLoss { get => _inner.ForcedLoss; set => _inner.ForcedLoss = value; }

    public MambaShape Shape => _inner.Shape;
    public MambaParameters Parameters => _inner.Parameters;
    public Device Device => Device.Cuda();
    public IDeviceTraining DeviceTraining => this;
    public IMambaModel To(Device device) => throw new NotSupportedException("The fake device model stays where it is.");
    public float[] Forward(int[] tokens, int batch) => _inner.Forward(tokens, batch);
    public float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients) =>
        _inner.ForwardBackward(tokens, targets, batch, gradients);
    public void Dispose() { }

    float IDeviceTraining.ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch)
    {
        Batches.Add(tokens.ToArray());
        return _inner.ForwardBackward(tokens, targets, batch, Gradients);
    }

    public double GradientSumOfSquares() => GradientClipping.SumOfSquares(Gradients);

    public IDeviceOptimizer CreateOptimizer(AdamWOptions options) => new Optimizer(this, options);

    public void DownloadParameters() => DownloadCount++;

    public void UploadParameters() { } // the "device" shares the host array

    /// <summary>How often the trainer asked for the parameters to be copied down.</summary>
    public int DownloadCount { get; private set; }

    private sealed class Optimizer(FakeDeviceModel model, AdamWOptions options) : IDeviceOptimizer
    {
        private readonly AdamW _adamW = new(model.Parameters.Layout, options);

        public long StepCount => _adamW.StepCount;

        public void Update(float learningRate, float gradientScale)
        {
            if (gradientScale != 1f) TensorPrimitives.Multiply(model.Gradients, gradientScale, model.Gradients);
            _adamW.Update(model.Parameters.Values, model.Gradients, learningRate);
        }

        public void CopyMomentsToHost(Span<float> firstMoment, Span<float> secondMoment)
        {
            _adamW.FirstMoment.CopyTo(firstMoment);
            _adamW.SecondMoment.CopyTo(secondMoment);
        }

        public void Restore(long stepCount, ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment) =>
            _adamW.Restore(stepCount, firstMoment, secondMoment);

        public void Dispose() { }
    }
}

/// <summary>
/// W ranks on W threads of one process: the sum over ranks in rank order through shared slots and a barrier, the
/// way an all-reduce combines them, and a broadcast of rank 0's parameters.
/// </summary>
internal sealed class ThreadGroup
{
    private readonly Barrier _barrier;
    private readonly float[][] _gradients;
    private readonly float[] _losses;
    private float[]? _rootParameters;

    public ThreadGroup(int worldSize)
    {
        WorldSize = worldSize;
        _barrier = new Barrier(worldSize);
        _gradients = new float[worldSize][];
        _losses = new float[worldSize];
    }

    public int WorldSize { get; }

    /// <summary>Rank <paramref name="rank"/>'s member of the group.</summary>
    public IDataParallelGroup Member(int rank) => new Rank(this, rank);

    private sealed class Rank(ThreadGroup group, int rank) : IDataParallelGroup
    {
        int IDataParallelGroup.Rank => rank;
        public int WorldSize => group.WorldSize;

        public void BroadcastParameters(IDeviceTraining model)
        {
            var parameters = ((FakeDeviceModel)model).Parameters.Values;
            if (rank == 0) group._rootParameters = parameters;
            group._barrier.SignalAndWait();
            if (rank != 0) group._rootParameters!.CopyTo(parameters, 0);
            group._barrier.SignalAndWait();
        }

        public float AllReduceGradients(IDeviceTraining model, float loss, float weight)
        {
            var gradients = ((FakeDeviceModel)model).Gradients;
            var weighted = new float[gradients.Length];
            TensorPrimitives.Multiply(gradients, weight, weighted);
            group._gradients[rank] = weighted;
            group._losses[rank] = loss * weight;
            group._barrier.SignalAndWait();
            Array.Clear(gradients);
            float total = 0;
            for (int r = 0; r < group.WorldSize; r++)
            {
                TensorPrimitives.Add(gradients, group._gradients[r], gradients);
                total += group._losses[r];
            }
            group._barrier.SignalAndWait();
            return total;
        }

        public void Dispose() { }
    }
}
