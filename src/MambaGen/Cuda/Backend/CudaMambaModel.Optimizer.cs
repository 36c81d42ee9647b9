using MambaGen.Training;

namespace MambaGen.Cuda.Backend;

/// <summary>
/// The device side of the <see cref="Trainer"/>'s step (<see cref="IDeviceTraining"/>): the gradient stays where the
/// backward wrote it, its global norm is measured by the deterministic two-pass reduction of templates/grad_norm.cu,
/// and <see cref="CudaAdamW"/> clips (through its gradient scale) and updates the device parameters. Data-parallel
/// training reaches the same buffers through the internal members below.
/// </summary>
public sealed partial class CudaMambaModel : IDeviceTraining
{
    private NormReduction? _normReduction;

    float IDeviceTraining.ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RefreshParametersIfChanged();
            return ForwardBackwardOnDevice(tokens, targets, batch);
        }
    }

    /// <inheritdoc/>
    public double GradientSumOfSquares()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_gradients is null)
                throw new InvalidOperationException("There is no gradient on the device yet: call ForwardBackward first.");
            var reduction = _normReduction ??= new NormReduction(_module, _context);
            var partial = reduction.Partial;
            partial.GridDimensions = new Dim3((uint)reduction.Blocks);
            partial.BlockDimensions = new Dim3((uint)reduction.Threads);
            partial.Launch(_stream, _gradients, _gradients.Count, reduction.Partials);
            var finish = reduction.Finish;
            finish.GridDimensions = new Dim3(1);
            finish.BlockDimensions = new Dim3((uint)reduction.Threads);
            finish.Launch(_stream, reduction.Partials, reduction.Blocks, reduction.Total);
            _stream.Synchronize();
            Span<double> total = stackalloc double[1];
            reduction.Total.CopyToHost(total);
            return total[0];
        }
    }

    void IDeviceTraining.UploadParameters()
    {
        lock (_sync)
        {
            // The host upload derives the scan's A·log2 e in double; after an optimizer step the device derives it
            // with its own kernel, whose bits can differ in the last place. A resumed run must continue with the
            // latter, as the uninterrupted run does.
            UploadParameters();
            RecomputeScaledA();
            _stream.Synchronize();
        }
    }

    /// <inheritdoc/>
    public IDeviceOptimizer CreateOptimizer(AdamWOptions options) => new CudaAdamW(this, options);

    /// <summary>The device gradient (laid out like the parameters), allocated on first use.</summary>
    internal CudaDeviceVariable<float> GradientBuffer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _gradients ??= new CudaDeviceVariable<float>(_context, _parameters.Layout.TotalLength);
        }
    }

    /// <summary>The device parameters, brought up to date with the host copy first.</summary>
    internal CudaDeviceVariable<float> CurrentWeights
    {
        get
        {
            lock (_sync)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                RefreshParametersIfChanged();
                return _weights;
            }
        }
    }

    /// <summary>The stream every kernel of this model runs on; collective operations are ordered on it too.</summary>
    internal CudaStream Stream => _stream;

    /// <summary>Multiplies the device gradient by <paramref name="factor"/> (queued on <see cref="Stream"/>).</summary>
    internal void ScaleGradients(float factor)
    {
        lock (_sync)
        {
            var gradients = GradientBuffer;
            var scale = (_normReduction ??= new NormReduction(_module, _context)).Scale;
            LaunchElementwise(scale, gradients.Count, gradients, gradients.Count, factor);
        }
    }

    /// <summary>
    /// After something other than this model wrote the device parameters (a broadcast from another rank): derives
    /// the scan's scaled A and the bf16 weight copy again and copies the parameters down so the host agrees.
    /// </summary>
    internal void OnDeviceParametersReplaced()
    {
        lock (_sync)
        {
            RecomputeScaledA();
            RefreshComputeWeights();
            DownloadParameters();
        }
    }

    /// <summary>The scan reads A·log2 e, which follows A_log: recomputed on the device after the parameters change there.</summary>
    private void RecomputeScaledA()
    {
        int perLayer = _shape.DInner * _shape.DState;
        for (int layer = 0; layer < _shape.Layers; layer++)
            LaunchElementwise(Training.ScaledA, perLayer, Weight(_parameters.Layout.LayerOffsets[layer].ALog), ScaledA(layer), (long)perLayer);
    }

    private void DisposeOptimizer()
    {
        _normReduction?.Dispose();
        _normReduction = null;
    }

    /// <summary>The norm reduction's kernels, launch shape (read from the module) and its two small buffers.</summary>
    private sealed class NormReduction : IDisposable
    {
        public NormReduction(CudaModule module, CudaContext context)
        {
            Partial = module.GetKernel("mg_sumsq_partial_f64");
            Finish = module.GetKernel("mg_sum_f64");
            Scale = module.GetKernel("mg_scale_f32");
            var config = module.ReadConstant<int>("mg_norm_config", 2);
            (Threads, Blocks) = (config[0], config[1]);
            Partials = new CudaDeviceVariable<double>(context, Blocks);
            try
            {
                Total = new CudaDeviceVariable<double>(context, 1);
            }
            catch
            {
                Partials.Dispose();
                throw;
            }
        }

        public CudaKernel Partial { get; }
        public CudaKernel Finish { get; }
        public CudaKernel Scale { get; }
        public int Threads { get; }
        public int Blocks { get; }
        public CudaDeviceVariable<double> Partials { get; }
        public CudaDeviceVariable<double> Total { get; }

        public void Dispose()
        {
            Total.Dispose();
            Partials.Dispose();
        }
    }
}
