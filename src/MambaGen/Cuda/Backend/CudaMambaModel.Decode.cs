using MambaGen.Cpu;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda.Backend;

/// <summary>What the small-batch decode kernels read the matrices (in_proj, x_proj, out_proj, the head) as.</summary>
public enum DecodeWeightType
{
    /// <summary>The compute precision's: the fp32 weights, or in bf16 mode their bf16 copy.</summary>
    Compute,

    /// <summary>
    /// An fp16 copy of the fp32 weights: half the bytes of fp32 like bf16, with 3 more mantissa bits (a relative
    /// rounding of 2^-11) but a range of ±65,504 (a larger weight becomes ±inf).
    /// </summary>
    Float16,
}

/// <summary>
/// Recurrent decoding on the GPU: the state of a batch of sequences lives on the device, a prompt fed to a fresh
/// state is read in one parallel pass (the scan hands over its final state), and every later token is one step.
/// </summary>
/// <remarks>
/// A step runs on its own non-blocking stream. Up to <c>MAMBA_DECODE_MAX_BATCH</c> sequences every weight is read once
/// per step by fused kernels (decode_step.cu): four kernels per layer and one for the head (by default), or one
/// persistent kernel for all layers and the head with grid barriers between the phases
/// (<see cref="PersistentDecodeKernel"/>); above that batch, cuBLAS products around the per-channel kernels.
/// Either way the step ends with the greedy pick on the device, and the whole step — the token copy in, every layer,
/// the head, the pick and the copy of the picked ids out — is captured once per decode state as a CUDA graph and
/// replayed, so a token costs one graph launch and one synchronisation.
/// <para>The step runs the compute build's kernels on the weights the products read (<see cref="ComputeWeight"/>). In
/// bf16 mode the fused kernels read the bf16 copy of the matrices and the cuBLAS path multiplies bf16 operands on
/// tensor cores, as the forward pass does; the states, the residual stream, the sums and the logits stay fp32. In fp32
/// mode the same kernels run the fp32 build on the fp32 weights.</para>
/// </remarks>
public sealed partial class CudaMambaModel
{
    /// <summary>Blocks per multiprocessor the fused row kernels are launched with (each then walks its rows).</summary>
    private const int DecodeBlocksPerMultiprocessor = 4;

    /// <summary>Slices each row of logits is cut into for the greedy pick (one block each).</summary>
    internal const int ArgmaxParts = 32;

    /// <summary>cuBLAS's scratch for the batched path, handed over so nothing is allocated inside a graph capture.</summary>
    private const int BlasWorkspaceBytes = 32 << 20;

    private DecodeLaunch? _decode;
    private bool _useCudaGraphs = true;
    /// <summary>The caller's choice of <see cref="OverlapDecodeKernels"/>; null: the default (on where the device has it).</summary>
    private bool? _overlapChoice;
    private bool _persistentDecodeKernel;
    private DecodeWeightType _decodeWeights;

    /// <summary>The variant's kernel source and compiler, kept for the fp16 decode build (made on first use).</summary>
    private readonly (string Text, string Name, KernelCompiler Compiler) _kernelSource;

    /// <summary>Counts <see cref="UploadParameters"/> calls, so a step knows when a parameter copy may still be in flight.</summary>
    private long _uploads;

    /// <summary>
    /// Whether one-token steps replay a CUDA graph captured once per decode state (the default) or launch their kernels
    /// one at a time. Both run the same kernels with the same arguments, so they give the same logits and tokens; the
    /// graph saves the per-kernel launch cost.
    /// </summary>
    public bool UseCudaGraphs
    {
        get { lock (_sync) return _useCudaGraphs; }
        set { lock (_sync) _useCudaGraphs = value; }
    }

    /// <summary>
    /// Whether each fused decode kernel may start while the one before it finishes (programmatic dependent launch,
    /// sm_90 and later): it loads its first weights meanwhile and waits for the previous kernel's results before it
    /// reads them. The results are the same either way. On by default where the device has it (sm_90 and later): on
    /// the H200 at the 130M shape, batch 1, it was the fastest plan measured (docs/benchmarks.md).
    /// </summary>
    public bool OverlapDecodeKernels
    {
        get { lock (_sync) return OverlapsKernels; }
        set
        {
            if (value && _context.Architecture < 90)
                throw new NotSupportedException($"Overlapping kernels (programmatic dependent launch) needs sm_90 or later; {_context.DeviceName} is sm_{_context.Architecture}.");
            lock (_sync) _overlapChoice = value;
        }
    }

    /// <summary>
    /// Whether steps of up to <c>MAMBA_DECODE_MAX_BATCH</c> sequences run as one persistent kernel: one block per
    /// multiprocessor, launched cooperatively, walking every layer and the head with a grid-wide barrier where the
    /// per-layer kernels would end, so a token costs one launch instead of four per layer. When false (the default),
    /// the four fused kernels per layer and the head kernel run instead. Both do the same arithmetic; the logits agree
    /// to rounding (the norm's sum of squares is split over a different number of threads). Off by default: on the
    /// H200 at the 130M shape, batch 1, its 97 barriers cost more than the launches they replace (1,914 against
    /// 2,062 tok/s for the per-layer kernels with overlapping launches, bf16; docs/benchmarks.md).
    /// </summary>
    public bool PersistentDecodeKernel
    {
        get { lock (_sync) return _persistentDecodeKernel; }
        set { lock (_sync) _persistentDecodeKernel = value; }
    }

    /// <summary>
    /// What the small-batch decode steps (up to <c>MAMBA_DECODE_MAX_BATCH</c> sequences) read the matrices as:
    /// <see cref="DecodeWeightType.Compute"/> (the default) or <see cref="DecodeWeightType.Float16"/>, which on first
    /// use compiles the decode kernels once more for fp16 weights and makes an fp16 copy of the weights (rewritten
    /// after every upload). The inputs, sums, states and logits stay fp32, and larger batches (cuBLAS products) keep
    /// reading the compute weights.
    /// </summary>
    public DecodeWeightType DecodeWeights
    {
        get { lock (_sync) return _decodeWeights; }
        set
        {
            if (!Enum.IsDefined(value)) throw new ArgumentOutOfRangeException(nameof(value), value, $"DecodeWeights must be Compute or Float16; got {(int)value}.");
            // The fp16 copy is made on the device from the fp32 weights, which 16-bit-only parameters do not have.
            if (value == DecodeWeightType.Float16 && _parameters.SixteenBitWeights is { } sixteenBit)
                throw new NotSupportedException(
                    $"DecodeWeights = Float16 converts the fp32 weights, but these parameters were loaded 16-bit only ({sixteenBit.Format}); " +
                    "they decode from their own 16-bit values (DecodeWeights = Compute), or load the checkpoint without KeepSixteenBitWeights.");
            lock (_sync) _decodeWeights = value;
        }
    }

    /// <summary>The effective <see cref="OverlapDecodeKernels"/> (read under the lock).</summary>
    private bool OverlapsKernels => _overlapChoice ?? _context.Architecture >= 90;

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
            return new CudaDecodeState(this, _context, _shape, batch);
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
        RequireOwnState(state);
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RefreshParametersIfChanged();
            if (state.IsFresh)
            {
                Prefill(state, tokens, length);
                _stream.Synchronize();
            }
            else
            {
                var column = new int[state.Batch];
                for (int step = 0; step < length; step++)
                {
                    for (int b = 0; b < state.Batch; b++) column[b] = tokens[b * length + step];
                    RunStep(state, column, _shape.Vocab);
                }
                Decoding().Stream.Synchronize();
            }
            state.IsFresh = false;
            state.Logits.CopyToHost(lastLogits[..(state.Batch * _shape.Vocab)]);
        }
    }

    /// <summary>
    /// One greedy step: feeds <paramref name="tokens"/> (one id per sequence) and writes into <paramref name="next"/> each
    /// sequence's most likely next id among those below <paramref name="vocabularyLimit"/> (the first on ties, as the
    /// host's argmax). The logits stay on the device; only the picked ids are copied back. A fresh state is fine: one
    /// step from the zero state is the one-token prefill.
    /// </summary>
    public void AdvanceGreedy(CudaDecodeState state, ReadOnlySpan<int> tokens, Span<int> next, int vocabularyLimit)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (tokens.Length != state.Batch)
            throw new ArgumentException($"tokens has {tokens.Length} ids; a greedy step takes one per sequence ({state.Batch}).", nameof(tokens));
        ModelInput.RequireTokenIds(tokens, _shape.Vocab);
        ModelInput.RequireLength(next.Length, state.Batch, nameof(next));
        if (vocabularyLimit < 1 || vocabularyLimit > _shape.Vocab)
            throw new ArgumentOutOfRangeException(nameof(vocabularyLimit), vocabularyLimit, $"vocabularyLimit must be in [1, {_shape.Vocab}], was {vocabularyLimit}.");
        RequireOwnState(state);
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RefreshParametersIfChanged();
            RunStep(state, tokens, vocabularyLimit);
            Decoding().Stream.Synchronize();
            state.IsFresh = false;
            state.PinnedNext.Span.CopyTo(next);
        }
    }

    private void RequireOwnState(CudaDecodeState state)
    {
        if (state.Model != this) throw new ArgumentException("The decode state belongs to another model instance or device.", nameof(state));
    }

    /// <summary>The parallel forward pass from the zero state, with the head on each sequence's last position only.</summary>
    private void Prefill(CudaDecodeState state, ReadOnlySpan<int> tokens, int length)
    {
        var a = ActivationsFor(state.Batch, length, training: false);
        a.Tokens.CopyToDevice(tokens);
        RunForward(a, state.Batch, length, LogitsFor.LastPosition, state);
        state.Logits.CopyFrom(a.Logits, 0, 0, state.Logits.Count);
    }

    /// <summary>
    /// Queues one step of every sequence (ids in <paramref name="stepTokens"/>) on the decode stream: the state's graph
    /// replayed, or its kernels launched one by one. Returns without waiting.
    /// </summary>
    private void RunStep(CudaDecodeState state, ReadOnlySpan<int> stepTokens, int vocabularyLimit)
    {
        var decode = Decoding();
        bool fused = state.Batch <= decode.MaxFusedBatch;
        var kernels = fused ? FusedKernelsFor(decode) : null;
        if (fused && state.LayerTableWeights != _decodeWeights) WriteLayerTable(state, decode);
        // Parameter uploads, resets and sequence copies run on the legacy stream, which a non-blocking stream does not
        // wait for: finish them before the first step that may read what they wrote.
        if (state.WrittenOutsideDecodeStream || decode.UploadsSeen != _uploads)
        {
            WaitForWorkOutsideDecodeStream();
            state.WrittenOutsideDecodeStream = false;
            decode.UploadsSeen = _uploads;
        }
        // The fp16 copy follows the fp32 weights, converted on the decode stream before the step reads it.
        if (fused && _decodeWeights == DecodeWeightType.Float16 && decode.HalfWeightsUploads != _uploads)
        {
            EnqueueOnDecodeStream(decode, decode.ToHalf, new Dim3((uint)Math.Min((_weights.Count + 255) / 256, 65_535L * 16)), 256, 0, false,
                _weights, decode.HalfWeights!, _weights.Count);
            decode.HalfWeightsUploads = _uploads;
        }
        // The previous step's copy may still be reading the pinned ids (several steps in one Advance).
        decode.Stream.Synchronize();
        stepTokens.CopyTo(state.PinnedTokens.Span);
        // A state's first step runs kernel by kernel even with graphs on, so whatever the libraries set up on first use
        // (cuBLAS loads its kernels lazily) is done before a capture, inside which nothing may be loaded or allocated.
        if (!_useCudaGraphs || !state.HasStepped)
        {
            EnqueueStep(state, vocabularyLimit, decode, kernels);
            state.HasStepped = true;
            return;
        }
        var plan = new StepPlan(vocabularyLimit, OverlapsKernels, _persistentDecodeKernel, _decodeWeights);
        if (state.Graph is null || state.GraphPlan != plan)
        {
            state.Graph?.Dispose();
            state.Graph = null;
            try
            {
                state.Graph = decode.Stream.Capture(() => EnqueueStep(state, vocabularyLimit, decode, kernels));
            }
            catch (CudaException)
            {
                // The context is the device's primary one, shared by every model in the process, and CUDA invalidates a
                // capture when another thread makes a context-wide call meanwhile (cuCtxSynchronize). The capture is
                // abandoned and the stream usable: this step runs launch by launch (a real fault fails there too) and
                // the next one captures again.
                EnqueueStep(state, vocabularyLimit, decode, kernels);
                return;
            }
            state.GraphPlan = plan;
        }
        state.Graph.Launch(decode.Stream);
    }

    /// <summary>
    /// Waits for what the legacy default stream (plain copies and memsets) and the model's blocking stream (prefill,
    /// weight conversion) were given. Not cuCtxSynchronize: CUDA refuses a context-wide synchronisation while any
    /// stream of the context is being captured, and the context is the device's primary one, on which another thread
    /// may be capturing another model's step.
    /// </summary>
    private void WaitForWorkOutsideDecodeStream()
    {
        _stream.Synchronize();
        _context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuStreamSynchronize(IntPtr.Zero), "cuStreamSynchronize", "(the legacy default stream)");
    }

    /// <summary>
    /// The whole step on the decode stream: ids in, every layer (the fused <paramref name="kernels"/>, or the batched
    /// path when null), the head, the greedy pick, picked ids out.
    /// </summary>
    private void EnqueueStep(CudaDecodeState d, int vocabularyLimit, DecodeLaunch decode, FusedKernels? kernels)
    {
        d.Tokens.CopyToDeviceAsync(d.PinnedTokens, decode.Stream);
        bool fused = kernels is not null;
        if (kernels is not null && _persistentDecodeKernel) EnqueuePersistentStep(d, decode, kernels);
        else if (kernels is not null) EnqueueFusedLayers(d, decode, kernels);
        else EnqueueBatchedLayers(d, decode);
        // After the fused head the pick may overlap it too; after a cuBLAS product it waits as usual.
        EnqueueOnDecodeStream(decode, decode.Argmax, new Dim3(ArgmaxParts, (uint)d.Batch), decode.ArgmaxThreads, 0, fused && OverlapsKernels,
            d.Logits, vocabularyLimit, d.PartValues, d.PartIndices, d.Counters, d.NextIds);
        d.NextIds.CopyToHostAsync(d.PinnedNext, decode.Stream);
    }

    /// <summary>Small batches: per layer the fused in_proj (norm, conv), x_proj, Δ + scan, out_proj kernels; then the head.</summary>
    private void EnqueueFusedLayers(CudaDecodeState d, DecodeLaunch decode, FusedKernels kernels)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        int batch = d.Batch;
        uint normedBytes = (uint)(batch * s.DModel * sizeof(float)), innerBytes = (uint)(batch * s.DInner * sizeof(float));
        ulong residualIn = d.ResidualA.DevicePointer, residualOut = d.ResidualB.DevicePointer;
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            // The first layer reads its residual rows straight from the embedding by token id.
            // The first kernel follows the token copy, not a kernel: it starts as usual.
            FusedRows(decode, kernels.InProj, 2 * s.DInner, normedBytes, layer > 0,
                layer == 0 ? d.Tokens.DevicePointer : 0UL, Weight(layout.Embedding), residualIn, layer == 0 ? 0UL : d.MixerOut.DevicePointer,
                Weight(o.Norm), residualOut, FusedWeight(decode, o.InProj), o.InProjBias < 0 ? 0UL : Weight(o.InProjBias), d.ConvOf(layer),
                Weight(o.ConvWeight), o.ConvBias < 0 ? 0UL : Weight(o.ConvBias), d.Xc, d.Xz, batch);
            (residualIn, residualOut) = (residualOut, residualIn);
            if (s.XProjRows > 0)
                FusedRows(decode, kernels.Rows, s.XProjRows, innerBytes, true, d.Xc, FusedWeight(decode, o.XProj), 0UL, d.XDbl, s.XProjRows, batch);
            EnqueueOnDecodeStream(decode, kernels.SsmStep, ChannelBlocks(batch, FusedChannelThreads), FusedChannelThreads, 0, OverlapsKernels,
                d.Xc, d.XDbl, s.SelectiveDelta ? Weight(o.DtProjWeight) : 0UL, Weight(o.DtProjBias), ScaledA(layer),
                s.SelectiveB ? 0UL : Weight(o.B), s.SelectiveC ? 0UL : Weight(o.C), Weight(o.D), d.Xz, d.SsmOf(layer), d.Y, batch);
            FusedRows(decode, kernels.Rows, s.DModel, innerBytes, true, d.Y, FusedWeight(decode, o.OutProj), o.OutProjBias < 0 ? 0UL : Weight(o.OutProjBias), d.MixerOut, s.DModel, batch);
        }
        FusedRows(decode, kernels.Head, s.Vocab, normedBytes, true, residualIn, d.MixerOut, Weight(layout.NormF), FusedWeight(decode, HeadOffset), d.Logits, batch);
    }

    /// <summary>Small batches, one launch: every layer and the head in the persistent kernel (its layer table written before).</summary>
    private void EnqueuePersistentStep(CudaDecodeState d, DecodeLaunch decode, FusedKernels kernels)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        uint sharedBytes = (uint)(d.Batch * Math.Max(s.DModel, s.DInner) * sizeof(float));
        // The grid barrier counts arrivals from zero in every launch (a memset node in the graph).
        d.Barrier.MemsetAsync(0u, decode.Stream);
        EnqueueOnDecodeStream(decode, kernels.Persistent, new Dim3((uint)decode.PersistentBlocks), decode.PersistentThreads, sharedBytes, false,
            d.Tokens, Weight(layout.Embedding), d.LayerTable, s.Layers, d.ResidualA, d.ResidualB, d.MixerOut, d.Xc, d.Xz, d.XDbl, d.Y,
            Weight(layout.NormF), FusedWeight(decode, HeadOffset), d.Logits, d.Barrier, d.Batch);
    }

    /// <summary>
    /// Writes the persistent kernel's table of per-layer pointers (decode_step.cu's DecodeLayer: 16 per layer, 0 where
    /// the variant has no such tensor): the weights' places never change and the state's buffers are its own, so once
    /// per state and weight type is enough.
    /// </summary>
    private void WriteLayerTable(CudaDecodeState d, DecodeLaunch decode)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        ulong Optional(long offset) => offset < 0 ? 0UL : Weight(offset);
        var table = new ulong[s.Layers * CudaDecodeState.LayerTablePointers];
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            ReadOnlySpan<ulong> row =
            [
                Weight(o.Norm), FusedWeight(decode, o.InProj), Optional(o.InProjBias), d.ConvOf(layer), Weight(o.ConvWeight), Optional(o.ConvBias),
                s.XProjRows > 0 ? FusedWeight(decode, o.XProj) : 0UL, s.SelectiveDelta ? Weight(o.DtProjWeight) : 0UL, Weight(o.DtProjBias), ScaledA(layer),
                s.SelectiveB ? 0UL : Weight(o.B), s.SelectiveC ? 0UL : Weight(o.C), Weight(o.D), d.SsmOf(layer), FusedWeight(decode, o.OutProj), Optional(o.OutProjBias),
            ];
            row.CopyTo(table.AsSpan(layer * CudaDecodeState.LayerTablePointers));
        }
        d.LayerTable.CopyToDevice(table);
        d.LayerTableWeights = _decodeWeights;
        d.WrittenOutsideDecodeStream = true;
    }

    /// <summary>
    /// Larger batches: RMSNorm, cuBLAS products and the per-channel conv and scan kernels, layer by layer, with the
    /// forward pass's kernels and operand types (in bf16 mode the activations between them are bf16; the logits fp32).
    /// </summary>
    private void EnqueueBatchedLayers(CudaDecodeState d, DecodeLaunch decode)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        int batch = d.Batch;
        EnqueueOnDecodeStream(decode, _compute.Embed, ElementwiseBlocks((long)batch * s.DModel), ElementwiseThreads, 0, false,
            d.Tokens, ComputeWeight(layout.Embedding), d.ResidualA, batch, s.Vocab);
        var residualIn = d.ResidualA;
        var residualOut = d.ResidualB;
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            EnqueueNorm(decode, residualIn, layer == 0 ? 0 : d.MixerOut.DevicePointer, Weight(o.Norm), residualOut, d, batch);
            (residualIn, residualOut) = (residualOut, residualIn);

            // xz (batch × 2ED) = normed · W_inᵀ (+ bias).
            RowProduct(decode, d.Xz, 2 * s.DInner, ComputeWeight(o.InProj), s.DModel, o.InProjBias < 0 ? 0 : Weight(o.InProjBias), d.Normed.DevicePointer, s.DModel, batch);
            EnqueueOnDecodeStream(decode, _compute.DecodeConvolution, ChannelBlocks(batch), DecodeChannelThreads, 0, false,
                d.Xz, 2L * s.DInner, d.ConvOf(layer), Weight(o.ConvWeight), o.ConvBias < 0 ? 0UL : Weight(o.ConvBias), d.Xc, batch);

            // x_dbl (batch × XProjRows) = xc · W_xᵀ; dt (batch × ED) = dt_low · W_dtᵀ.
            if (s.XProjRows > 0)
                RowProduct(decode, d.XDbl, s.XProjRows, ComputeWeight(o.XProj), s.DInner, 0, d.Xc.DevicePointer, s.DInner, batch);
            if (s.SelectiveDelta)
                RowProduct(decode, d.Dt, s.DInner, ComputeWeight(o.DtProjWeight), s.DtRank, 0, d.XDbl.DevicePointer, s.XProjRows, batch);
            int bColumn = s.SelectiveDelta ? s.DtRank : 0;
            int cColumn = bColumn + (s.SelectiveB ? s.DState : 0);
            ulong ColumnOf(int column) => d.XDbl.DevicePointer + (ulong)(column * ActivationBytes);
            EnqueueOnDecodeStream(decode, _compute.DecodeScan, ChannelBlocks(batch), DecodeChannelThreads, 0, false,
                d.Xc, s.SelectiveDelta ? d.Dt.DevicePointer : 0UL, (long)s.DInner, Weight(o.DtProjBias), ScaledA(layer),
                s.SelectiveB ? ColumnOf(bColumn) : Weight(o.B), s.SelectiveC ? ColumnOf(cColumn) : Weight(o.C), (long)s.XProjRows,
                Weight(o.D), d.Xz.DevicePointer + (ulong)(s.DInner * ActivationBytes), 2L * s.DInner, d.SsmOf(layer), d.Y, batch);

            // mixer_out (batch × D) = y · W_outᵀ (+ bias).
            RowProduct(decode, d.MixerOut, s.DModel, ComputeWeight(o.OutProj), s.DInner, o.OutProjBias < 0 ? 0 : Weight(o.OutProjBias), d.Y.DevicePointer, s.DInner, batch);
        }
        EnqueueNorm(decode, residualIn, d.MixerOut.DevicePointer, Weight(layout.NormF), residualOut, d, batch);
        RowProduct(decode, d.Logits, s.Vocab, ComputeWeight(HeadOffset), s.DModel, 0, d.Normed.DevicePointer, s.DModel, batch, CudaDataType.Float32);
    }

    /// <summary>The compute build's residual add + RMSNorm: fp32 residual rows, the addend and the normed rows in the activation type.</summary>
    private void EnqueueNorm(DecodeLaunch decode, CudaDeviceVariable<float> residualIn, ulong addend, ulong weight, CudaDeviceVariable<float> residualOut,
        CudaDecodeState d, int batch) =>
        EnqueueOnDecodeStream(decode, _compute.NormForward, (uint)batch, _launch.NormThreads, 0, false, residualIn, addend, weight, residualOut, d.Normed, d.InverseRms, batch);

    /// <summary>
    /// out (rows of <paramref name="outputs"/>, one per sequence) = in · Wᵀ (+ bias), W row-major outputs × depth and
    /// each input row <paramref name="inputStride"/> elements apart, by cuBLAS on the decode stream. W and the input
    /// are in the activation type, accumulated in fp32; the output is in the activation type unless
    /// <paramref name="outputType"/> says otherwise (the logits are fp32; a bias is only ever added to activations).
    /// </summary>
    private void RowProduct(DecodeLaunch decode, CudaDeviceVariable<float> output, int outputs, ulong weight, int depth, ulong bias, ulong input, int inputStride, int batch,
        CudaDataType? outputType = null)
    {
        float beta = 0f;
        if (bias != 0)
        {
            long total = (long)batch * outputs;
            EnqueueOnDecodeStream(decode, _compute.FillBroadcast, ElementwiseBlocks(total), ElementwiseThreads, 0, false, output, bias, outputs, 1L, total);
            beta = 1f;
        }
        // Column-major view: outᵀ (outputs × batch) = W (outputs × depth) · inᵀ (depth × batch).
        decode.Blas.GemmEx(CublasOperation.Transpose, CublasOperation.None, outputs, batch, depth,
            1f, weight, ActivationType, depth, input, ActivationType, inputStride,
            beta, output.DevicePointer, outputType ?? ActivationType, outputs);
    }

    /// <summary>
    /// One of the fused row kernels: enough blocks of whole warps for every row, capped so each block walks several;
    /// overlapping the previous kernel when <paramref name="afterKernel"/> and overlap is on.
    /// </summary>
    private void FusedRows(DecodeLaunch decode, CudaKernel kernel, int rows, uint sharedBytes, bool afterKernel, params ReadOnlySpan<KernelArgument> arguments)
    {
        int warps = decode.FusedThreads / 32;
        long blocks = Math.Min((rows + warps - 1) / warps, (long)_context.MultiprocessorCount * DecodeBlocksPerMultiprocessor);
        EnqueueOnDecodeStream(decode, kernel, (uint)blocks, decode.FusedThreads, sharedBytes, afterKernel && OverlapsKernels, arguments);
    }

    /// <summary>Threads per block of the per-channel kernels of the batched path.</summary>
    private const int DecodeChannelThreads = 128;

    /// <summary>
    /// Threads per block of the fused path's per-channel kernel: one warp, so a small batch's few channels spread over
    /// many multiprocessors (each thread reads its own rows of A and dt_proj: many cache lines per load).
    /// </summary>
    private const int FusedChannelThreads = 32;

    private Dim3 ChannelBlocks(int batch, int threads = DecodeChannelThreads) => new((uint)(((long)batch * _shape.DInner + threads - 1) / threads));

    private static Dim3 ElementwiseBlocks(long work) => new((uint)Math.Clamp((work + ElementwiseThreads - 1) / ElementwiseThreads, 1, 65_535L * 16));

    private static void EnqueueOnDecodeStream(DecodeLaunch decode, CudaKernel kernel, Dim3 grid, int threads, uint sharedBytes, bool overlap,
        params ReadOnlySpan<KernelArgument> arguments)
    {
        kernel.GridDimensions = grid;
        kernel.BlockDimensions = new Dim3((uint)threads);
        kernel.DynamicSharedMemory = (int)sharedBytes;
        kernel.StartsBeforePreviousKernelEnds = overlap;
        kernel.Launch(decode.Stream, arguments);
    }

    /// <summary>The decode stream, its cuBLAS handle and the fused kernels, made on the first step.</summary>
    private DecodeLaunch Decoding() => _decode ??= new DecodeLaunch(_context, _module, _shape, BlasWorkspaceBytes);

    /// <summary>
    /// The fused kernels of the current <see cref="DecodeWeights"/>: the compute build's, or the fp16 build's, which is
    /// compiled (and the fp16 weight buffer allocated) on first use.
    /// </summary>
    private FusedKernels FusedKernelsFor(DecodeLaunch decode)
    {
        if (_decodeWeights == DecodeWeightType.Compute) return decode.Fused;
        if (decode.HalfFused is null)
        {
            var options = _precision == GpuPrecision.BFloat16 ? BFloat16CompileOptions : CompileOptions;
            var image = _kernelSource.Compiler.CompileFor(_context, _kernelSource.Text, _kernelSource.Name, [.. options, "-DMAMBA_DECODE_F16=1"]);
            decode.LoadHalfBuild(_context.LoadModule(image.Image), _shape, new CudaDeviceVariable<ushort>(_context, _weights.Count));
        }
        return decode.HalfFused!;
    }

    /// <summary>The matrix at <paramref name="offset"/> as the fused kernels read it: in the fp16 copy, or the compute weight.</summary>
    private ulong FusedWeight(DecodeLaunch decode, long offset) => _decodeWeights == DecodeWeightType.Float16
        ? decode.HalfWeights!.DevicePointer + (ulong)offset * sizeof(ushort)
        : ComputeWeight(offset);

    /// <summary>What a captured step graph depends on besides the state's buffers.</summary>
    internal readonly record struct StepPlan(int VocabularyLimit, bool Overlap, bool Persistent, DecodeWeightType Weights);

    private void DisposeDecoding()
    {
        _decode?.Dispose();
        _decode = null;
    }

    /// <summary>What a decode step launches on, apart from the model's weights and the state's buffers.</summary>
    private sealed class DecodeLaunch : IDisposable
    {
        private readonly DisposalStack _owned = new();

        public DecodeLaunch(CudaContext context, CudaModule module, MambaShape s, int workspaceBytes)
        {
            try
            {
                Stream = Own(new CudaStream(context, nonBlocking: true));
                var workspace = Own(new CudaDeviceVariable<byte>(context, workspaceBytes));
                // The stream first: setting it resets the handle's workspace.
                Blas = Own(new CublasHandle(context, Stream));
                Blas.SetWorkspace(workspace);
                Argmax = module.GetKernel("mamba_decode_argmax");
                ToHalf = module.GetKernel("mamba_decode_to_f16");
                var config = module.ReadConstant<int>("mamba_decode_config", 4);
                FusedThreads = config[1];
                ArgmaxThreads = config[2];
                PersistentThreads = config[3];
                // One block per multiprocessor: all resident at once, as the grid barrier needs (a cooperative launch
                // checks it).
                PersistentBlocks = context.MultiprocessorCount;
                // The fused kernels hold batch × depth floats of input in shared memory: as many sequences as fit.
                int widest = Math.Max(s.DModel, s.DInner) * sizeof(float);
                const int StaticSharedBytes = 1024;
                MaxFusedBatch = Math.Min(config[0], (context.MaxSharedMemoryPerBlockOptin - StaticSharedBytes) / widest);
                Fused = new FusedKernels(module, s, MaxFusedBatch);
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public CudaStream Stream { get; } = null!;
        public CublasHandle Blas { get; } = null!;
        public CudaKernel Argmax { get; } = null!;
        public CudaKernel ToHalf { get; } = null!;

        /// <summary>The fused kernels of the compute build.</summary>
        public FusedKernels Fused { get; } = null!;

        /// <summary>The fp16 build's fused kernels and the fp16 weights they read (null until first asked for).</summary>
        public FusedKernels? HalfFused { get; private set; }
        public CudaDeviceVariable<ushort>? HalfWeights { get; private set; }

        /// <summary>The model's upload count when the fp16 weights were last converted (−1: never).</summary>
        public long HalfWeightsUploads { get; set; } = -1;

        public int FusedThreads { get; }
        public int PersistentThreads { get; }
        public int PersistentBlocks { get; }
        public int ArgmaxThreads { get; }

        /// <summary>Largest batch the fused kernels take (0: none fits the device's shared memory).</summary>
        public int MaxFusedBatch { get; }

        /// <summary>The model's upload count when the decode stream last caught up with the legacy stream.</summary>
        public long UploadsSeen { get; set; } = -1;

        /// <summary>Takes over the fp16 build's module and the fp16 weight buffer (disposed with this).</summary>
        public void LoadHalfBuild(CudaModule module, MambaShape s, CudaDeviceVariable<ushort> weights)
        {
            Own(module);
            HalfWeights = Own(weights);
            HalfFused = new FusedKernels(module, s, MaxFusedBatch);
        }

        private T Own<T>(T resource) where T : IDisposable => _owned.Own(resource);

        /// <summary>Frees in reverse order of making: the handle, its workspace, the stream.</summary>
        public void Dispose() => _owned.Dispose();
    }
}

/// <summary>The small-batch decode kernels of one build (compute weights, or fp16 weights).</summary>
internal sealed class FusedKernels
{
    /// <summary>Looks the kernels up and lets each take the shared memory <paramref name="maxBatch"/> sequences need.</summary>
    public FusedKernels(CudaModule module, MambaShape s, int maxBatch)
    {
        InProj = module.GetKernel("mamba_decode_in_proj");
        Rows = module.GetKernel("mamba_decode_rows");
        SsmStep = module.GetKernel("mamba_decode_ssm_step");
        Head = module.GetKernel("mamba_decode_head");
        Persistent = module.GetKernel("mamba_decode_persistent");
        Persistent.Cooperative = true;
        if (maxBatch <= 0) return;
        AllowSharedMemory(InProj, maxBatch * s.DModel * sizeof(float));
        AllowSharedMemory(Head, maxBatch * s.DModel * sizeof(float));
        AllowSharedMemory(Rows, maxBatch * s.DInner * sizeof(float));
        AllowSharedMemory(Persistent, maxBatch * Math.Max(s.DModel, s.DInner) * sizeof(float));
    }

    public CudaKernel InProj { get; }
    public CudaKernel Rows { get; }
    public CudaKernel SsmStep { get; }
    public CudaKernel Head { get; }
    public CudaKernel Persistent { get; }

    private static void AllowSharedMemory(CudaKernel kernel, int bytes)
    {
        if (bytes > kernel.MaxDynamicSharedMemory) kernel.MaxDynamicSharedMemory = bytes;
    }
}

/// <summary>
/// The recurrent state of a batch of sequences on the GPU: per layer and sequence the last K inputs of the causal
/// convolution (ED × K, newest last) and the SSM state h (ED × N, fp32), plus the step's scratch buffers and, once a
/// step has run with graphs on, the step's captured graph (it holds this state's buffer addresses).
/// </summary>
public sealed class CudaDecodeState : Generation.IGreedyDecodeState, IDisposable
{
    private readonly DisposalStack _buffers = new();
    private readonly int _convPerLayer, _ssmPerLayer;

    internal CudaDecodeState(CudaMambaModel model, CudaContext context, MambaShape s, int batch)
    {
        Model = model;
        Batch = batch;
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
            PartValues = Floats(context, (long)batch * CudaMambaModel.ArgmaxParts);
            PartIndices = Add(new CudaDeviceVariable<int>(context, (long)batch * CudaMambaModel.ArgmaxParts));
            Counters = Add(new CudaDeviceVariable<uint>(context, batch));
            NextIds = Add(new CudaDeviceVariable<int>(context, batch));
            PinnedTokens = Add(new CudaPinnedHostMemory<int>(context, batch));
            PinnedNext = Add(new CudaPinnedHostMemory<int>(context, batch));
            LayerTable = Add(new CudaDeviceVariable<ulong>(context, (long)s.Layers * LayerTablePointers));
            Barrier = Add(new CudaDeviceVariable<uint>(context, 1));
            Counters.Memset(0u);
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

    internal CudaMambaModel Model { get; }
    internal readonly CudaDeviceVariable<float> Conv = null!, Ssm = null!;
    internal readonly CudaDeviceVariable<int> Tokens = null!;
    internal readonly CudaDeviceVariable<float> ResidualA = null!, ResidualB = null!, Normed = null!, InverseRms = null!, MixerOut = null!;
    internal readonly CudaDeviceVariable<float> Xz = null!, Xc = null!, XDbl = null!, Dt = null!, Y = null!, Logits = null!;

    /// <summary>The greedy pick: each argmax block's best (value, index) and per sequence the count of blocks done.</summary>
    internal readonly CudaDeviceVariable<float> PartValues = null!;
    internal readonly CudaDeviceVariable<int> PartIndices = null!, NextIds = null!;
    internal readonly CudaDeviceVariable<uint> Counters = null!;

    /// <summary>Pointers per layer in the persistent kernel's table (decode_step.cu's DecodeLayer).</summary>
    internal const int LayerTablePointers = 16;

    /// <summary>The persistent kernel's per-layer pointers, once written, and its grid barrier's arrival count.</summary>
    internal readonly CudaDeviceVariable<ulong> LayerTable = null!;
    internal readonly CudaDeviceVariable<uint> Barrier = null!;

    /// <summary>The weight type the layer table was written for (null: not yet written).</summary>
    internal DecodeWeightType? LayerTableWeights;

    /// <summary>Page-locked copies of the step's input ids and picked ids (asynchronous copies, also inside a graph).</summary>
    internal readonly CudaPinnedHostMemory<int> PinnedTokens = null!, PinnedNext = null!;

    /// <summary>The captured step and what it was captured for (its vocabulary limit and kernel plan).</summary>
    internal CudaGraphExec? Graph;
    internal CudaMambaModel.StepPlan? GraphPlan;

    /// <summary>Whether a one-token step has run on this state (the first is never captured).</summary>
    internal bool HasStepped;

    /// <summary>Set when the legacy stream wrote the state (reset, sequence copy), which the decode stream does not wait for.</summary>
    internal bool WrittenOutsideDecodeStream;

    internal ulong ConvOf(int layer) => Conv.DevicePointer + (ulong)layer * (ulong)_convPerLayer * sizeof(float);

    internal ulong SsmOf(int layer) => Ssm.DevicePointer + (ulong)layer * (ulong)_ssmPerLayer * sizeof(float);

    /// <summary>Forgets every token: back to the zero state.</summary>
    public void Reset()
    {
        Conv.Memset(0u);
        Ssm.Memset(0u);
        IsFresh = true;
        WrittenOutsideDecodeStream = true;
    }

    /// <inheritdoc/>
    public void StepGreedy(ReadOnlySpan<int> tokens, Span<int> next, int vocabularyLimit) => Model.AdvanceGreedy(this, tokens, next, vocabularyLimit);

    /// <summary>
    /// Makes sequence <paramref name="sequence"/> a copy of sequence <paramref name="sourceSequence"/> of
    /// <paramref name="source"/>, a GPU state of the same model: how prompts of different lengths, each prefilled on its
    /// own, share a batch.
    /// </summary>
    public void CopySequenceFrom(Generation.IDecodeState source, int sourceSequence, int sequence)
    {
        var from = source as CudaDecodeState ?? throw new ArgumentException($"source is a {source?.GetType().FullName ?? "null"}, not a GPU decode state.", nameof(source));
        if (from.Model != Model || from._convPerLayer / from.Batch != _convPerLayer / Batch || from._ssmPerLayer / from.Batch != _ssmPerLayer / Batch)
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
        WrittenOutsideDecodeStream = true;
    }

    /// <summary>Frees the captured graph and the state's device and page-locked memory.</summary>
    public void Dispose()
    {
        Graph?.Dispose();
        Graph = null;
        _buffers.Dispose();
    }

    private CudaDeviceVariable<float> Floats(CudaContext context, long count) => Add(new CudaDeviceVariable<float>(context, count));

    private T Add<T>(T buffer) where T : IDisposable => _buffers.Own(buffer);
}
