using MambaGen.Cpu;

namespace MambaGen.Cuda.Backend;

/// <summary>
/// A generated model's forward pass on one NVIDIA GPU. The variant's kernels arrive as CUDA C with its constants
/// baked in (the generator renders them from <c>templates/</c>); they are compiled here by NVRTC for the device's
/// architecture (cached on disk), and launched on one stream between cuBLAS products. Activations are fp32; the mixer
/// works channel-major, (batch, channels, L) per tensor, as the scan and convolution kernels read them, while the
/// residual stream stays token-major, (tokens, D), for the norms and the head.
/// </summary>
/// <remarks>
/// The parameters are copied to the device when the model is made; <see cref="UploadParameters"/> copies them again
/// after they change on the host. Calls on one instance run one at a time.
/// </remarks>
public sealed partial class CudaMambaModel : IMambaBackend
{
    private const int ElementwiseThreads = 256;

    /// <summary>NVRTC options every variant's kernels are compiled with (the templates use C++17).</summary>
    public static IReadOnlyList<string> CompileOptions { get; } = ["-std=c++17"];

    private readonly object _sync = new();
    private readonly MambaShape _shape;
    private readonly MambaParameters _parameters;
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly CublasHandle _blas;
    private readonly CudaModule _module;
    private readonly CudaDeviceVariable<float> _weights;
    private readonly CudaDeviceVariable<float> _scaledA;
    private readonly KernelSet _kernels;
    private readonly ScanLaunch _scan;
    private Activations? _activations;
    private bool _disposed;

    /// <summary>
    /// Compiles <paramref name="cudaSource"/> (the variant's rendered kernels) for <paramref name="device"/>, copies the
    /// parameters there and prepares the launches.
    /// </summary>
    public CudaMambaModel(MambaParameters parameters, string cudaSource, string sourceName, Device device, KernelCompiler? compiler = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(cudaSource);
        if (device.Kind != DeviceKind.Cuda) throw new ArgumentException($"A CUDA model needs a CUDA device, not '{device}'.", nameof(device));
        _parameters = parameters;
        _shape = parameters.Shape;
        var owned = new List<IDisposable>();
        try
        {
            _context = Own(new CudaContext(device.Ordinal));
            // A blocking stream: it is ordered with the legacy default stream, where the plain (non-async) copies and memsets of
            // parameters, tokens and decode states run, so kernels never race those copies.
            _stream = Own(new CudaStream(_context, nonBlocking: false));
            _blas = Own(new CublasHandle(_context, _stream));
            var image = (compiler ?? new KernelCompiler()).CompileFor(_context, cudaSource, sourceName, CompileOptions);
            _module = Own(_context.LoadModule(image.Image));
            _kernels = new KernelSet(_module);
            _scan = ScanLaunch.Read(_module, _kernels.ScanForward, _context);
            _weights = Own(new CudaDeviceVariable<float>(_context, parameters.Values.Length));
            _scaledA = Own(new CudaDeviceVariable<float>(_context, (long)_shape.Layers * _shape.DInner * _shape.DState));
            UploadParameters();
        }
        catch
        {
            for (int i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
            throw;
        }

        T Own<T>(T resource) where T : IDisposable
        {
            owned.Add(resource);
            return resource;
        }
    }

    /// <summary>The host parameters' <see cref="MambaParameters.Version"/> when they were last copied here.</summary>
    private long _uploadedVersion;

    /// <summary>Copies the host parameters again when they have been marked changed since the last copy.</summary>
    private void RefreshParametersIfChanged()
    {
        if (_parameters.Version != _uploadedVersion) UploadParameters();
    }

    /// <summary>The GPU the model runs on.</summary>
    public CudaContext Context => _context;

    /// <inheritdoc/>
    public Device Device => Device.Cuda(_context.DeviceOrdinal);

    /// <summary>
    /// Copies the host parameters to the device, with A = −exp(A_log) pre-scaled by log2 e for the scan (each decay
    /// is then one hardware exp2).
    /// </summary>
    public void UploadParameters()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _uploadedVersion = _parameters.Version;
            _uploads++;
            _weights.CopyToDevice(_parameters.Values);
            int perLayer = _shape.DInner * _shape.DState;
            var scaled = new float[(long)_shape.Layers * perLayer];
            for (int layer = 0; layer < _shape.Layers; layer++)
            {
                var aLog = _parameters.Values.AsSpan(_parameters.Layout.LayerOffsets[layer].ALog, perLayer);
                for (int i = 0; i < perLayer; i++)
                    scaled[layer * perLayer + i] = (float)(-Math.Exp(aLog[i]) * 1.4426950408889634);
            }
            _scaledA.CopyToDevice(scaled);
        }
    }

    /// <summary>
    /// Logits for every position (batch×len×Vocab) or, with <see cref="LogitsFor.LastPosition"/>, for the last position
    /// of each sequence (batch×Vocab); tokens are batch×len ids row-major.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int batch, Span<float> logits, LogitsFor logitsFor)
    {
        int length = ModelInput.RequireTokenBatch(tokens, batch, _shape.Vocab);
        bool lastOnly = logitsFor == LogitsFor.LastPosition;
        long needed = (long)(lastOnly ? batch : tokens.Length) * _shape.Vocab;
        if (logits.Length < needed)
            throw new ArgumentException(lastOnly
                ? $"logits holds {logits.Length} values; batch {batch} × vocab {_shape.Vocab} = {needed} are needed for the last positions."
                : $"logits holds {logits.Length} values; batch {batch} × length {length} × vocab {_shape.Vocab} = {needed} are needed.", nameof(logits));
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RefreshParametersIfChanged();
            var a = ActivationsFor(batch, length, training: false);
            a.Tokens.CopyToDevice(tokens);
            RunForward(a, batch, length, logitsFor);
            _stream.Synchronize();
            a.Logits.CopyToHost(logits[..checked((int)needed)]);
        }
    }

    /// <summary>
    /// The forward pass over batch × length tokens already in <c>a.Tokens</c>, with logits for every position or each
    /// sequence's last one. With a (zero) decode state it also leaves each layer's last conv inputs and final scan state
    /// there, which is how a prefill starts decoding.
    /// </summary>
    private void RunForward(Activations a, int batch, int length, LogitsFor logitsFor = LogitsFor.AllPositions, CudaDecodeState? state = null)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        int tokens = batch * length;
        LaunchElementwise(_kernels.Embed, (long)tokens * s.DModel,
            a.Tokens, Weight(layout.Embedding), a.Embedded, tokens, s.Vocab);

        var residualIn = a.Embedded;
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            var norm = a.NormAt(layer);
            var m = a.MixerAt(layer);
            // r = r + mixer output of the previous layer (nothing to add before the first), then RMSNorm.
            LaunchNorm(residualIn, layer == 0 ? 0 : a.MixerOut.DevicePointer, Weight(o.Norm), norm.Residual, norm.Normed, norm.InverseRms, tokens);
            residualIn = norm.Residual;

            // in_proj, per sequence: x and z (ED×L each, channel-major) = W_in[rows]·normedᵀ (+ bias).
            ChannelMajorProduct(m.X, s.DInner, Weight(o.InProj), o.InProjBias < 0 ? 0 : Weight(o.InProjBias), norm.Normed.DevicePointer, s.DModel, batch, length);
            ChannelMajorProduct(m.Z, s.DInner, Weight(o.InProj) + RowBytes(s.DInner, s.DModel),
                o.InProjBias < 0 ? 0 : Weight(o.InProjBias) + (ulong)s.DInner * sizeof(float), norm.Normed.DevicePointer, s.DModel, batch, length);

            // Causal depthwise conv + SiLU over time.
            LaunchElementwise(_kernels.Convolution, (long)tokens * s.DInner,
                m.X, (long)s.DInner * length, (long)length, 1L, Weight(o.ConvWeight), o.ConvBias < 0 ? 0UL : Weight(o.ConvBias),
                0UL, m.U, state?.ConvOf(layer) ?? 0UL, batch, length);

            // x_proj's selective rows (dt_low, B, C) and dt_proj, per sequence, channel-major.
            int row = 0;
            if (s.SelectiveDelta)
            {
                TokenMixProduct(m.DtLow, s.DtRank, Weight(o.XProj), m.U, s.DInner, batch, length);
                TokenMixProduct(m.Dt, s.DInner, Weight(o.DtProjWeight), m.DtLow, s.DtRank, batch, length);
                row += s.DtRank;
            }
            if (s.SelectiveB)
            {
                TokenMixProduct(m.B, s.DState, Weight(o.XProj) + RowBytes(row, s.DInner), m.U, s.DInner, batch, length);
                row += s.DState;
            }
            if (s.SelectiveC)
                TokenMixProduct(m.C, s.DState, Weight(o.XProj) + RowBytes(row, s.DInner), m.U, s.DInner, batch, length);

            // The selective scan with Δ = softplus(dt + bias), D skip and the SiLU(z) gate fused in.
            var scan = _kernels.ScanForward;
            scan.GridDimensions = new Dim3((uint)(batch * _scan.ForwardBlocksPerSequence));
            scan.BlockDimensions = new Dim3((uint)_scan.ForwardThreads);
            scan.DynamicSharedMemory = _scan.ForwardSharedBytes;
            scan.Launch(_stream,
                m.U, s.SelectiveDelta ? m.Dt.DevicePointer : 0UL, Weight(o.DtProjBias), ScaledA(layer),
                s.SelectiveB ? m.B.DevicePointer : Weight(o.B), s.SelectiveC ? m.C.DevicePointer : Weight(o.C),
                Weight(o.D), m.Z, m.Y, m.ChunkStates, length);
            if (state is not null)
            {
                long rows = (long)batch * s.DInner;
                int chunks = (length + _scan.ChunkLength - 1) / _scan.ChunkLength;
                LaunchElementwise(_kernels.TakeLastState, rows * s.DState, m.ChunkStates, state.SsmOf(layer), rows, chunks, s.DState);
            }

            // out_proj back to the token-major residual stream: mixer_out (tokens×D) = yᵀ·W_outᵀ (+ bias).
            TokenMajorProduct(a.MixerOut, s.DModel, Weight(o.OutProj), o.OutProjBias < 0 ? 0 : Weight(o.OutProjBias), m.Y, s.DInner, batch, length);
        }

        // Final norm of r + the last mixer output, then the head: logits (rows×V) = normed·Eᵀ over every row, or over
        // each sequence's last row only (the head GEMM reads normed with a stride of a whole sequence, length·D, and
        // writes batch rows to the start of Logits).
        var final = a.NormAt(s.Layers);
        LaunchNorm(residualIn, a.MixerOut.DevicePointer, Weight(layout.NormF), final.Residual, final.Normed, final.InverseRms, tokens);
        bool lastOnly = logitsFor == LogitsFor.LastPosition;
        ulong headInput = final.Normed.DevicePointer + (lastOnly ? RowBytes(length - 1, s.DModel) : 0UL);
        _blas.GemmEx(CublasOperation.Transpose, CublasOperation.None, s.Vocab, lastOnly ? batch : tokens, s.DModel,
            1f, Weight(HeadOffset), CudaDataType.Float32, s.DModel, headInput, CudaDataType.Float32, lastOnly ? checked(length * s.DModel) : s.DModel,
            0f, a.Logits.DevicePointer, CudaDataType.Float32, s.Vocab);
    }

    private ulong Weight(int offset) => _weights.DevicePointer + (ulong)offset * sizeof(float);

    /// <summary>The output head's offset: the untied head, or the embedding it is tied to.</summary>
    private int HeadOffset => _parameters.Layout.LmHead >= 0 ? _parameters.Layout.LmHead : _parameters.Layout.Embedding;

    /// <summary>Layer <paramref name="layer"/>'s A·log2 e (D_INNER × N).</summary>
    private ulong ScaledA(int layer) =>
        _scaledA.DevicePointer + (ulong)layer * (ulong)(_shape.DInner * _shape.DState) * sizeof(float);

    private static ulong RowBytes(int rows, int width) => (ulong)rows * (ulong)width * sizeof(float);

    /// <summary>
    /// Per sequence b: out_b (rows×L, channel-major) = W (rows×width, row-major) · in_bᵀ where in_b is token-major
    /// (L×width); with an optional per-row bias broadcast first.
    /// </summary>
    private void ChannelMajorProduct(CudaDeviceVariable<float> output, int rows, ulong weight, ulong bias, ulong input, int width, int batch, int length)
    {
        float beta = FillBias(output, bias, rows, length, (long)batch * rows * length);
        // Column-major view: out_bᵀ (L×rows) = in_b (L×width) · Wᵀ (width×rows).
        _blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.None, length, rows, width,
            1f, input, CudaDataType.Float32, width, (long)length * width,
            weight, CudaDataType.Float32, width, 0,
            beta, output.DevicePointer, CudaDataType.Float32, length, (long)rows * length, batch);
    }

    /// <summary>Per sequence b: out_b (rows×L) = W (rows×width) · in_b (width×L), both channel-major.</summary>
    private void TokenMixProduct(CudaDeviceVariable<float> output, int rows, ulong weight, CudaDeviceVariable<float> input, int width, int batch, int length)
    {
        // Column-major view: out_bᵀ (L×rows) = in_bᵀ (L×width) · Wᵀ (width×rows).
        _blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.None, length, rows, width,
            1f, input.DevicePointer, CudaDataType.Float32, length, (long)width * length,
            weight, CudaDataType.Float32, width, 0,
            0f, output.DevicePointer, CudaDataType.Float32, length, (long)rows * length, batch);
    }

    /// <summary>Per sequence b: out_b (L×rows, token-major) = in_bᵀ · Wᵀ with in_b channel-major (width×L).</summary>
    private void TokenMajorProduct(CudaDeviceVariable<float> output, int rows, ulong weight, ulong bias, CudaDeviceVariable<float> input, int width, int batch, int length)
    {
        float beta = FillBias(output, bias, rows, 1, (long)batch * length * rows);
        // Column-major view: out_bᵀ (rows×L) = W (rows×width) · in_b (width×L).
        _blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.Transpose, rows, length, width,
            1f, weight, CudaDataType.Float32, width, 0,
            input.DevicePointer, CudaDataType.Float32, length, (long)width * length,
            beta, output.DevicePointer, CudaDataType.Float32, rows, (long)rows * length, batch);
    }

    /// <summary>Broadcasts a per-channel bias into <paramref name="output"/>; returns the β the product then uses.</summary>
    private float FillBias(CudaDeviceVariable<float> output, ulong bias, int channels, long inner, long total)
    {
        if (bias == 0) return 0f;
        LaunchElementwise(_kernels.FillBroadcast, total, output, bias, channels, inner, total);
        return 1f;
    }

    private void LaunchNorm(CudaDeviceVariable<float> residualIn, ulong addend, ulong weight, CudaDeviceVariable<float> residualOut,
        CudaDeviceVariable<float> normed, CudaDeviceVariable<float> inverseRms, int rows)
    {
        var norm = _kernels.NormForward;
        norm.GridDimensions = new Dim3((uint)rows);
        norm.BlockDimensions = new Dim3((uint)_scan.NormThreads);
        norm.Launch(_stream, residualIn, addend, weight, residualOut, normed, inverseRms, rows);
    }

    /// <summary>Launches a grid-stride kernel with enough blocks to cover <paramref name="work"/> items once.</summary>
    private void LaunchElementwise(CudaKernel kernel, long work, params ReadOnlySpan<KernelArgument> arguments)
    {
        long blocks = Math.Clamp((work + ElementwiseThreads - 1) / ElementwiseThreads, 1, 65_535L * 16);
        kernel.GridDimensions = new Dim3((uint)blocks);
        kernel.BlockDimensions = new Dim3(ElementwiseThreads);
        kernel.Launch(_stream, arguments);
    }

    /// <summary>
    /// Buffers for (batch, length). Training keeps every layer's activations for the backward; inference shares
    /// one set. A training set also serves inference, so alternating calls do not reallocate.
    /// </summary>
    private Activations ActivationsFor(int batch, int length, bool training)
    {
        if (_activations is { } current && current.Batch == batch && current.Length == length && (current.KeepsEveryLayer || !training))
            return current;
        _activations?.Dispose();
        _activations = null;
        _activations = new Activations(_context, _shape, batch, length, _scan.ChunkLength, training);
        return _activations;
    }

    /// <summary>Frees the device memory, the compiled module, the cuBLAS handle, the stream and the context reference.</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            if (_disposed) return;
            _disposed = true;
            _activations?.Dispose();
            DisposeTraining();
            DisposeDecoding();
            _scaledA.Dispose();
            _weights.Dispose();
            _module.Dispose();
            _blas.Dispose();
            _stream.Dispose();
            _context.Dispose();
        }
    }

    /// <summary>The kernels of one compiled variant, looked up once by their <c>extern "C"</c> names.</summary>
    private sealed class KernelSet(CudaModule module)
    {
        public CudaKernel Embed { get; } = module.GetKernel("mamba_embed_fwd");
        public CudaKernel FillBroadcast { get; } = module.GetKernel("mamba_fill_broadcast");
        public CudaKernel NormForward { get; } = module.GetKernel("mamba_rmsnorm_fwd");
        public CudaKernel Convolution { get; } = module.GetKernel("mamba_conv_fwd");
        public CudaKernel ScanForward { get; } = module.GetKernel("mamba_scan_fwd");
        public CudaKernel TakeLastState { get; } = module.GetKernel("mamba_take_last_state");
        public CudaKernel DecodeConvolution { get; } = module.GetKernel("mamba_decode_conv");
        public CudaKernel DecodeScan { get; } = module.GetKernel("mamba_decode_ssm");
    }

    /// <summary>
    /// Launch facts the kernels publish in constant memory: they follow from the variant's constants through the
    /// kernels' own tiling, so they are read from the compiled module rather than computed a second time here.
    /// </summary>
    private sealed record ScanLaunch(int ForwardThreads, int ForwardBlocksPerSequence, int ForwardSharedBytes, int ChunkLength, int NormThreads)
    {
        public static ScanLaunch Read(CudaModule module, CudaKernel scanForward, CudaContext context)
        {
            var scan = module.ReadConstant<int>("mamba_scan_config", 8);
            var norm = module.ReadConstant<int>("mamba_norm_config", 3);
            var launch = new ScanLaunch(scan[0], scan[1], scan[2], scan[3], norm[0]);
            if (launch.ForwardSharedBytes > scanForward.MaxDynamicSharedMemory)
            {
                if (launch.ForwardSharedBytes > context.MaxSharedMemoryPerBlockOptin)
                    throw new InvalidOperationException(
                        $"The scan kernel needs {launch.ForwardSharedBytes} bytes of shared memory per block; {context.DeviceName} allows {context.MaxSharedMemoryPerBlockOptin}.");
                scanForward.MaxDynamicSharedMemory = launch.ForwardSharedBytes;
            }
            return launch;
        }
    }

    /// <summary>
    /// Device buffers for one (batch, length), reused while calls keep that shape. The residual stream after each
    /// norm's add, the normed rows and their inverse RMS live in <see cref="NormBuffers"/> (one per layer plus the
    /// final norm when training; two that alternate otherwise); the mixer's tensors in <see cref="MixerBuffers"/>
    /// (one per layer when training, one shared otherwise).
    /// </summary>
    private sealed class Activations : IDisposable
    {
        private readonly List<IDisposable> _all = new();
        private readonly NormBuffers[] _norms;
        private readonly MixerBuffers[] _mixers;

        public Activations(CudaContext context, MambaShape s, int batch, int length, int chunkLength, bool keepEveryLayer)
        {
            Batch = batch;
            Length = length;
            KeepsEveryLayer = keepEveryLayer;
            long tokens = (long)batch * length;
            int chunks = (length + chunkLength - 1) / chunkLength;
            try
            {
                Tokens = Add(new CudaDeviceVariable<int>(context, tokens));
                Embedded = Floats(tokens * s.DModel);
                MixerOut = Floats(tokens * s.DModel);
                Logits = Floats(tokens * s.Vocab);
                _norms = new NormBuffers[keepEveryLayer ? s.Layers + 1 : 2];
                for (int i = 0; i < _norms.Length; i++)
                    _norms[i] = new NormBuffers(Floats(tokens * s.DModel), Floats(tokens * s.DModel), Floats(tokens));
                _mixers = new MixerBuffers[keepEveryLayer ? s.Layers : 1];
                for (int i = 0; i < _mixers.Length; i++)
                    _mixers[i] = new MixerBuffers(
                        X: Floats(tokens * s.DInner),
                        Z: Floats(tokens * s.DInner),
                        U: Floats(tokens * s.DInner),
                        Y: Floats(tokens * s.DInner),
                        DtLow: Floats(tokens * (s.SelectiveDelta ? s.DtRank : 1)),
                        Dt: Floats(tokens * (s.SelectiveDelta ? s.DInner : 1)),
                        B: Floats(tokens * (s.SelectiveB ? s.DState : 1)),
                        C: Floats(tokens * (s.SelectiveC ? s.DState : 1)),
                        ChunkStates: Floats((long)batch * s.DInner * chunks * s.DState));
            }
            catch
            {
                Dispose();
                throw;
            }

            CudaDeviceVariable<float> Floats(long count) => Add(new CudaDeviceVariable<float>(context, count));
        }

        public int Batch { get; }
        public int Length { get; }

        /// <summary>True when every layer has its own buffers (what the backward needs).</summary>
        public bool KeepsEveryLayer { get; }

        public readonly CudaDeviceVariable<int> Tokens;
        public readonly CudaDeviceVariable<float> Embedded, MixerOut, Logits;

        /// <summary>The norm of layer <paramref name="layer"/>; <c>Layers</c> is the final norm.</summary>
        public NormBuffers NormAt(int layer) => _norms[KeepsEveryLayer ? layer : layer % 2];

        public MixerBuffers MixerAt(int layer) => _mixers[KeepsEveryLayer ? layer : 0];

        /// <summary>Registers a buffer to be freed with the rest (the backward's scratch is added this way).</summary>
        public T Add<T>(T buffer) where T : IDisposable
        {
            _all.Add(buffer);
            return buffer;
        }

        public void Dispose()
        {
            for (int i = _all.Count - 1; i >= 0; i--) _all[i].Dispose();
            _all.Clear();
        }
    }

    /// <summary>One norm's outputs: the residual stream after the add, the normed rows, 1/rms per row.</summary>
    private sealed record NormBuffers(CudaDeviceVariable<float> Residual, CudaDeviceVariable<float> Normed, CudaDeviceVariable<float> InverseRms);

    /// <summary>One mixer's tensors, channel-major (batch, channels, L); chunk states (batch, ED, chunks, N).</summary>
    private sealed record MixerBuffers(
        CudaDeviceVariable<float> X, CudaDeviceVariable<float> Z, CudaDeviceVariable<float> U, CudaDeviceVariable<float> Y,
        CudaDeviceVariable<float> DtLow, CudaDeviceVariable<float> Dt, CudaDeviceVariable<float> B, CudaDeviceVariable<float> C,
        CudaDeviceVariable<float> ChunkStates);
}
