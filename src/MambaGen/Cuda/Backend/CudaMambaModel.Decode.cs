using MambaGen.Cpu;

namespace MambaGen.Cuda.Backend;

/// <summary>
/// Recurrent decoding on the GPU: the state of a batch of sequences lives on the device, a prompt fed to a fresh
/// state is read in one parallel pass (the scan hands over its final state), and every later token is one step of
/// the decode kernels between cuBLAS matrix-vector products.
/// </summary>
public sealed partial class CudaMambaModel
{
    Generation.IDecodeState IMambaBackend.CreateDecodeState(int batch) => CreateDecodeState(batch);

    void IMambaBackend.Advance(Generation.IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits) =>
        Advance(state as CudaDecodeState ?? throw new ArgumentException($"state is a {state.GetType().FullName}, not a state of a model on {Device}.", nameof(state)), tokens, lastLogits);

    /// <summary>A zero decode state for <paramref name="batch"/> sequences, on this model's device.</summary>
    public CudaDecodeState CreateDecodeState(int batch = 1)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be at least 1.");
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new CudaDecodeState(_context, _shape, batch);
        }
    }

    /// <summary>
    /// Feeds <paramref name="tokens"/> (state.Batch sequences of equal length, row-major) through the model from
    /// <paramref name="state"/>, updates it, and writes the logits after each sequence's last token into
    /// <paramref name="lastLogits"/> (state.Batch × Vocab): exactly what the CPU path's Advance does. From a fresh state
    /// the tokens are read in one parallel forward pass; from a state that has seen tokens, one step per token.
    /// </summary>
    public void Advance(CudaDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits)
    {
        ArgumentNullException.ThrowIfNull(state);
        int length = ModelInput.RequireTokenBatch(tokens, state.Batch, _shape.Vocab);
        ModelInput.RequireLength(lastLogits.Length, state.Batch * _shape.Vocab, nameof(lastLogits));
        if (state.Owner != _context) throw new ArgumentException("The decode state belongs to another model instance or device.", nameof(state));
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RefreshParametersIfChanged();
            if (state.IsFresh) Prefill(state, tokens, length);
            else
                for (int step = 0; step < length; step++) Step(state, tokens, length, step);
            state.IsFresh = false;
            _stream.Synchronize();
            state.Logits.CopyToHost(lastLogits[..(state.Batch * _shape.Vocab)]);
        }
    }

    /// <summary>The parallel forward pass from the zero state, with the head on each sequence's last position only.</summary>
    private void Prefill(CudaDecodeState state, ReadOnlySpan<int> tokens, int length)
    {
        var a = ActivationsFor(state.Batch, length, training: false);
        a.Tokens.CopyToDevice(tokens);
        RunForward(a, state.Batch, length, LogitsFor.LastPosition, state);
        state.Logits.CopyFrom(a.Logits, 0, 0, state.Logits.Count);
    }

    /// <summary>One token per sequence (column <paramref name="step"/> of the row-major tokens) through every layer.</summary>
    private void Step(CudaDecodeState d, ReadOnlySpan<int> tokens, int length, int step)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        int batch = d.Batch;
        for (int b = 0; b < batch; b++) d.HostTokens[b] = tokens[b * length + step];
        d.Tokens.CopyToDevice(d.HostTokens);
        LaunchElementwise(_kernels.Embed, (long)batch * s.DModel, d.Tokens, Weight(layout.Embedding), d.ResidualA, batch, s.Vocab);

        var residualIn = d.ResidualA;
        var residualOut = d.ResidualB;
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            LaunchNorm(residualIn, layer == 0 ? 0 : d.MixerOut.DevicePointer, Weight(o.Norm), residualOut, d.Normed, d.InverseRms, batch);
            (residualIn, residualOut) = (residualOut, residualIn);

            // xz (batch × 2ED) = normed · W_inᵀ (+ bias).
            RowProduct(d.Xz, 2 * s.DInner, Weight(o.InProj), s.DModel, o.InProjBias < 0 ? 0 : Weight(o.InProjBias), d.Normed.DevicePointer, s.DModel, batch);
            var conv = _kernels.DecodeConvolution;
            LaunchRows(conv, (long)batch * s.DInner,
                d.Xz, 2L * s.DInner, d.ConvOf(layer), Weight(o.ConvWeight), o.ConvBias < 0 ? 0UL : Weight(o.ConvBias), d.Xc, batch);

            // x_dbl (batch × XProjRows) = xc · W_xᵀ; dt (batch × ED) = dt_low · W_dtᵀ.
            if (s.XProjRows > 0)
                RowProduct(d.XDbl, s.XProjRows, Weight(o.XProj), s.DInner, 0, d.Xc.DevicePointer, s.DInner, batch);
            if (s.SelectiveDelta)
                RowProduct(d.Dt, s.DInner, Weight(o.DtProjWeight), s.DtRank, 0, d.XDbl.DevicePointer, s.XProjRows, batch);
            int bColumn = s.SelectiveDelta ? s.DtRank : 0;
            int cColumn = bColumn + (s.SelectiveB ? s.DState : 0);
            ulong ColumnOf(int column) => d.XDbl.DevicePointer + (ulong)column * sizeof(float);
            LaunchRows(_kernels.DecodeScan, (long)batch * s.DInner,
                d.Xc, s.SelectiveDelta ? d.Dt.DevicePointer : 0UL, (long)s.DInner, Weight(o.DtProjBias), ScaledA(layer),
                s.SelectiveB ? ColumnOf(bColumn) : Weight(o.B), s.SelectiveC ? ColumnOf(cColumn) : Weight(o.C), (long)s.XProjRows,
                Weight(o.D), d.Xz.DevicePointer + (ulong)s.DInner * sizeof(float), 2L * s.DInner, d.SsmOf(layer), d.Y, batch);

            // mixer_out (batch × D) = y · W_outᵀ (+ bias).
            RowProduct(d.MixerOut, s.DModel, Weight(o.OutProj), s.DInner, o.OutProjBias < 0 ? 0 : Weight(o.OutProjBias), d.Y.DevicePointer, s.DInner, batch);
        }
        LaunchNorm(residualIn, d.MixerOut.DevicePointer, Weight(layout.NormF), residualOut, d.Normed, d.InverseRms, batch);
        RowProduct(d.Logits, s.Vocab, Weight(HeadOffset), s.DModel, 0, d.Normed.DevicePointer, s.DModel, batch);
    }

    /// <summary>
    /// out (rows of <paramref name="outputs"/>, one per sequence) = in · Wᵀ (+ bias), W row-major outputs × depth and
    /// each input row <paramref name="inputStride"/> floats apart.
    /// </summary>
    private void RowProduct(CudaDeviceVariable<float> output, int outputs, ulong weight, int depth, ulong bias, ulong input, int inputStride, int batch)
    {
        float beta = FillBias(output, bias, outputs, 1, (long)batch * outputs);
        // Column-major view: outᵀ (outputs × batch) = W (outputs × depth) · inᵀ (depth × batch).
        _blas.GemmEx(CublasOperation.Transpose, CublasOperation.None, outputs, batch, depth,
            1f, weight, CudaDataType.Float32, depth, input, CudaDataType.Float32, inputStride,
            beta, output.DevicePointer, CudaDataType.Float32, outputs);
    }

    /// <summary>Launches a one-thread-per-item kernel (no grid stride) over <paramref name="items"/>.</summary>
    private void LaunchRows(CudaKernel kernel, long items, params ReadOnlySpan<KernelArgument> arguments)
    {
        const int threads = 128;
        kernel.GridDimensions = new Dim3((uint)((items + threads - 1) / threads));
        kernel.BlockDimensions = new Dim3(threads);
        kernel.Launch(_stream, arguments);
    }
}

/// <summary>
/// The recurrent state of a batch of sequences on the GPU: per layer and sequence the last K inputs of the causal
/// convolution (ED × K, newest last) and the SSM state h (ED × N, fp32), plus the step's scratch buffers.
/// </summary>
public sealed class CudaDecodeState : Generation.IDecodeState, IDisposable
{
    private readonly List<IDisposable> _buffers = new();
    private readonly int _convPerLayer, _ssmPerLayer;

    internal CudaDecodeState(CudaContext context, MambaShape s, int batch)
    {
        Owner = context;
        Batch = batch;
        HostTokens = new int[batch];
        _convPerLayer = batch * s.DInner * s.ConvKernel;
        _ssmPerLayer = batch * s.DInner * s.DState;
        try
        {
            Conv = Floats(context, (long)s.Layers * _convPerLayer);
            Ssm = Floats(context, (long)s.Layers * _ssmPerLayer);
            Tokens = Add(new CudaDeviceVariable<int>(context, batch));
            ResidualA = Floats(context, (long)batch * s.DModel);
            ResidualB = Floats(context, (long)batch * s.DModel);
            Normed = Floats(context, (long)batch * s.DModel);
            InverseRms = Floats(context, batch);
            MixerOut = Floats(context, (long)batch * s.DModel);
            Xz = Floats(context, 2L * batch * s.DInner);
            Xc = Floats(context, (long)batch * s.DInner);
            XDbl = Floats(context, (long)batch * Math.Max(1, s.XProjRows));
            Dt = Floats(context, (long)batch * s.DInner);
            Y = Floats(context, (long)batch * s.DInner);
            Logits = Floats(context, (long)batch * s.Vocab);
            Reset();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Sequences decoded side by side.</summary>
    public int Batch { get; }

    /// <summary>
    /// Whether the state is still zero (made or reset, nothing fed or copied in since): only then can a prompt be read in
    /// one parallel pass, since the scan starts from h = 0.
    /// </summary>
    public bool IsFresh { get; internal set; }

    internal CudaContext Owner { get; }
    internal readonly CudaDeviceVariable<float> Conv = null!, Ssm = null!;
    internal readonly CudaDeviceVariable<int> Tokens = null!;
    internal readonly int[] HostTokens;
    internal readonly CudaDeviceVariable<float> ResidualA = null!, ResidualB = null!, Normed = null!, InverseRms = null!, MixerOut = null!;
    internal readonly CudaDeviceVariable<float> Xz = null!, Xc = null!, XDbl = null!, Dt = null!, Y = null!, Logits = null!;

    internal ulong ConvOf(int layer) => Conv.DevicePointer + (ulong)layer * (ulong)_convPerLayer * sizeof(float);

    internal ulong SsmOf(int layer) => Ssm.DevicePointer + (ulong)layer * (ulong)_ssmPerLayer * sizeof(float);

    /// <summary>Forgets every token: back to the zero state.</summary>
    public void Reset()
    {
        Conv.Memset(0u);
        Ssm.Memset(0u);
        IsFresh = true;
    }

    /// <summary>
    /// Makes sequence <paramref name="sequence"/> a copy of sequence <paramref name="sourceSequence"/> of
    /// <paramref name="source"/>, a GPU state of the same model: how prompts of different lengths, each prefilled on its
    /// own, share a batch.
    /// </summary>
    public void CopySequenceFrom(Generation.IDecodeState source, int sourceSequence, int sequence)
    {
        var from = source as CudaDecodeState ?? throw new ArgumentException($"source is a {source?.GetType().FullName ?? "null"}, not a GPU decode state.", nameof(source));
        if (from.Owner != Owner || from._convPerLayer / from.Batch != _convPerLayer / Batch || from._ssmPerLayer / from.Batch != _ssmPerLayer / Batch)
            throw new ArgumentException("source is a state of another model or device.", nameof(source));
        if ((uint)sourceSequence >= (uint)from.Batch) throw new ArgumentOutOfRangeException(nameof(sourceSequence), sourceSequence, $"source holds {from.Batch} sequences.");
        if ((uint)sequence >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(sequence), sequence, $"this state holds {Batch} sequences.");
        int conv = _convPerLayer / Batch, ssm = _ssmPerLayer / Batch;
        int layers = (int)(Conv.Count / _convPerLayer);
        for (int layer = 0; layer < layers; layer++)
        {
            Conv.CopyFrom(from.Conv, (long)layer * from._convPerLayer + (long)sourceSequence * conv, (long)layer * _convPerLayer + (long)sequence * conv, conv);
            Ssm.CopyFrom(from.Ssm, (long)layer * from._ssmPerLayer + (long)sourceSequence * ssm, (long)layer * _ssmPerLayer + (long)sequence * ssm, ssm);
        }
        IsFresh = false;
    }

    /// <summary>Frees the state's device memory.</summary>
    public void Dispose()
    {
        for (int i = _buffers.Count - 1; i >= 0; i--) _buffers[i].Dispose();
        _buffers.Clear();
    }

    private CudaDeviceVariable<float> Floats(CudaContext context, long count) => Add(new CudaDeviceVariable<float>(context, count));

    private T Add<T>(T buffer) where T : IDisposable
    {
        _buffers.Add(buffer);
        return buffer;
    }
}
