using MambaGen.Cpu;
using MambaGen.Training;

namespace MambaGen.Cuda.Backend;

/// <summary>
/// Training on the GPU: the forward pass keeping every layer's activations, the backward pass through cuBLAS
/// products and the variant's backward kernels into a device-resident gradient vector (laid out like the
/// parameters), and AdamW on the device (<see cref="CudaAdamW"/>).
/// </summary>
/// <remarks>
/// Deterministic by construction: no kernel uses float atomics (per-block and per-batch partials are finished by
/// <c>mg_sum_slices</c> in a fixed order), and the products are cuBLAS calls, which give the same bits run to run on
/// one GPU. Sums over the batch of a weight's gradient are computed per sequence by one strided-batched product and
/// then summed in batch order, because the channel-major activations are not one contiguous matrix over all tokens.
/// </remarks>
public sealed partial class CudaMambaModel
{
    private TrainingKernels? _trainingKernels;
    private CudaDeviceVariable<float>? _gradients;
    private BackwardBuffers? _backward;

    /// <summary>
    /// Forward and backward for next-token training, exactly as the CPU path's <see cref="IMambaModel.ForwardBackward"/>:
    /// <paramref name="targets"/> has one id per token, −1 where the position is not scored; <paramref name="gradients"/>
    /// (laid out like the parameters) is overwritten with the gradient of the mean cross-entropy over scored positions,
    /// and that mean loss is returned. The gradients also stay on the device for <see cref="CudaAdamW.Update"/>.
    /// </summary>
    public float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients)
    {
        ModelInput.RequireLength(gradients.Length, _parameters.TrainableLength, nameof(gradients));
        lock (_sync)
        {
            float loss = ForwardBackwardOnDevice(tokens, targets, batch);
            _gradients!.CopyToHost(gradients);
            return loss;
        }
    }

    /// <summary>
    /// The generated model's training entry. Its callers (the Trainer with the CPU optimizer) update the host
    /// <see cref="MambaParameters"/> between steps and mark them changed, so the host values are copied to the device
    /// first when they have changed; training with <see cref="CudaAdamW"/> instead keeps parameters on the device.
    /// </summary>
    float IMambaBackend.ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, Span<float> gradients)
    {
        lock (_sync) RefreshParametersIfChanged();
        return ForwardBackward(tokens, targets, batch, gradients);
    }

    /// <summary>
    /// As <see cref="ForwardBackward(ReadOnlySpan{int}, ReadOnlySpan{int}, int, Span{float})"/>, but the gradients
    /// stay on the device only (for <see cref="CudaAdamW.Update"/>): nothing but the loss is copied back.
    /// </summary>
    public float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch)
    {
        lock (_sync) return ForwardBackwardOnDevice(tokens, targets, batch);
    }

    /// <summary>
    /// Copies the device's parameters (changed there by <see cref="CudaAdamW.Update"/>) into the host
    /// <see cref="MambaParameters"/> the model was made from, so that saving or the CPU path sees them.
    /// </summary>
    public void DownloadParameters()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _stream.Synchronize();
            _weights.CopyToHost(_parameters.Values);
            // The host now holds what the device has: mark it changed for other users, current for this copy.
            _parameters.MarkChanged();
            _uploadedVersion = _parameters.Version;
        }
    }

    /// <summary>Where each parameter lives in the flat vector (shared by parameters, gradients and moments).</summary>
    public ParameterLayout Layout => _parameters.Layout;

    private TrainingKernels Training => _trainingKernels ??= new TrainingKernels(_module, _context);

    private ulong Gradient(long offset) => _gradients!.DevicePointer + (ulong)offset * sizeof(float);

    private float ForwardBackwardOnDevice(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var s = _shape;
        int length = ModelInput.RequireTokenBatch(tokens, batch, s.Vocab);
        ModelInput.RequireTargets(targets, tokens.Length, s.Vocab);
        int scored = 0;
        foreach (int target in targets)
            if (target != CrossEntropy.Unscored) scored++;

        var a = ActivationsFor(batch, length, training: true);
        var bw = BackwardFor(a);
        _gradients ??= new CudaDeviceVariable<float>(_context, _parameters.Layout.TotalLength);
        var k = Training;
        // Every upload before the first launch: the copies are synchronous, the launches queue behind them.
        a.Tokens.CopyToDevice(tokens);
        bw.Targets.CopyToDevice(targets);
        GroupPositionsByToken(tokens, bw);

        RunForward(a, batch, length);
        RunBackward(a, bw, k, batch, length, scored);
        _stages.End();

        _stream.Synchronize();
        Span<float> lossSum = stackalloc float[1];
        bw.LossSum.CopyToHost(lossSum);
        return scored == 0 ? 0f : lossSum[0] / scored;
    }

    /// <summary>
    /// The embedding's deterministic scatter-add reads positions grouped by token, in increasing position within a
    /// token (a counting sort of the ids); the host has the ids, so it builds the grouping.
    /// </summary>
    private void GroupPositionsByToken(ReadOnlySpan<int> tokens, BackwardBuffers bw)
    {
        int vocab = _shape.Vocab;
        var offsets = new int[vocab + 1];
        foreach (int token in tokens) offsets[token + 1]++;
        for (int v = 0; v < vocab; v++) offsets[v + 1] += offsets[v];
        var next = offsets.AsSpan(0, vocab).ToArray();
        var order = new int[tokens.Length];
        for (int position = 0; position < tokens.Length; position++) order[next[tokens[position]]++] = position;
        bw.Order.CopyToDevice(order);
        bw.Offsets.CopyToDevice(offsets);
    }

    private void RunBackward(Activations a, BackwardBuffers bw, TrainingKernels k, int batch, int length, int scored)
    {
        var s = _shape;
        var layout = _parameters.Layout;
        int tokens = batch * length;
        var act = ActivationType;

        // Cross-entropy over the padded vocabulary: per-row losses, and dlogits (scaled by 1/scored) in place of the logits.
        _stages.Mark(GpuStage.CrossEntropy);
        var crossEntropy = k.CrossEntropy;
        crossEntropy.GridDimensions = new Dim3((uint)tokens);
        crossEntropy.BlockDimensions = new Dim3((uint)k.CrossEntropyThreads);
        crossEntropy.Launch(_stream, a.Logits, bw.Targets, bw.RowLoss, a.Logits, s.Vocab, scored == 0 ? 0f : 1f / scored);
        var sumAll = _compute.SumAll;
        sumAll.GridDimensions = new Dim3(1);
        sumAll.BlockDimensions = new Dim3(1024);
        sumAll.Launch(_stream, bw.RowLoss, bw.LossSum, (long)tokens);

        // Head, logits = normed·Hᵀ: dH (V×D) = dlogitsᵀ·normed, d normed = dlogits·H. A tied head's gradient is
        // written here and the embedding's scatter-add accumulates onto it at the end.
        var final = a.NormAt(s.Layers);
        _stages.Mark(GpuStage.MatrixProducts);
        _blas.GemmEx(CublasOperation.None, CublasOperation.Transpose, s.DModel, s.Vocab, tokens,
            1f, final.Normed.DevicePointer, act, s.DModel, a.Logits.DevicePointer, act, s.Vocab,
            0f, Gradient(HeadOffset), CudaDataType.Float32, s.DModel);
        _blas.GemmEx(CublasOperation.None, CublasOperation.None, s.DModel, tokens, s.Vocab,
            1f, ComputeWeight(HeadOffset), act, s.DModel, a.Logits.DevicePointer, act, s.Vocab,
            0f, bw.DNormed.DevicePointer, act, s.DModel);
        NormBackward(final, layout.NormF, bw.DNormed, 0, bw.DResidual[0], bw, tokens);

        // Layers, last first. DResidual[current] is the gradient of the layer's residual output, which is also the
        // gradient of its mixer's output (the next norm adds the two).
        int current = 0;
        for (int layer = s.Layers - 1; layer >= 0; layer--)
        {
            var norm = a.NormAt(layer);
            MixerBackward(layer, norm, a.MixerAt(layer), bw.DResidual[current], bw, batch, length);
            NormBackward(norm, layout.LayerOffsets[layer].Norm, bw.DNormed, bw.DResidual[current].DevicePointer, bw.DResidual[1 - current], bw, tokens);
            current = 1 - current;
        }

        // The first layer's residual input is the embedding: scatter-add its gradient per token, in position order.
        _stages.Mark(GpuStage.Embedding);
        var embed = k.EmbedBackward;
        embed.GridDimensions = new Dim3((uint)Math.Min(s.Vocab, 65_535));
        embed.BlockDimensions = new Dim3((uint)Math.Min(ElementwiseThreads, (s.DModel + 31) / 32 * 32));
        embed.Launch(_stream, bw.DResidual[current], bw.Order, bw.Offsets, Gradient(layout.Embedding), s.Vocab, layout.LmHead < 0 ? 1 : 0);
    }

    /// <summary>
    /// Gradients of one mixer's parameters from <paramref name="dOut"/> (tokens × D, the gradient of its output);
    /// leaves the gradient of its normed input in <c>bw.DNormed</c>.
    /// </summary>
    private void MixerBackward(int layer, NormBuffers norm, MixerBuffers m, CudaDeviceVariable<float> dOut, BackwardBuffers bw, int batch, int length)
    {
        var s = _shape;
        var o = _parameters.Layout.LayerOffsets[layer];
        var k = Training;
        var act = ActivationType;
        int ed = s.DInner, n = s.DState, d = s.DModel;
        long tokens = (long)batch * length;

        // The residual gradient is fp32; the products pair it with activations, so in bf16 mode they read a bf16 copy.
        ulong dOutOperand = dOut.DevicePointer;
        if (bw.DOutCopy is { } copy)
        {
            _stages.Mark(GpuStage.Reductions);
            LaunchElementwise(_compute.ToActivation, tokens * d, dOut, copy, tokens * d);
            dOutOperand = copy.DevicePointer;
        }

        // out_proj, out_b (L×D) = y_bᵀ·Wᵀ: dW (D×ED) = Σ_b dout_bᵀ·y_bᵀ, d bias = Σ_t dout, dy_b (ED×L) = Wᵀ·dout_bᵀ.
        _stages.Mark(GpuStage.MatrixProducts);
        _blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.Transpose, ed, d, length,
            1f, m.Y.DevicePointer, act, length, (long)ed * length,
            dOutOperand, act, d, (long)length * d,
            0f, bw.WeightPartials.DevicePointer, CudaDataType.Float32, ed, (long)ed * d, batch);
        if (o.OutProjBias >= 0)
            _blas.GemmEx(CublasOperation.None, CublasOperation.None, d, 1, (int)tokens,
                1f, dOut.DevicePointer, CudaDataType.Float32, d, bw.Ones.DevicePointer, CudaDataType.Float32, (int)tokens,
                0f, Gradient(o.OutProjBias), CudaDataType.Float32, d);
        _blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.Transpose, length, ed, d,
            1f, dOutOperand, act, d, (long)length * d,
            ComputeWeight(o.OutProj), act, ed, 0,
            0f, bw.DY.DevicePointer, act, length, (long)ed * length, batch);
        SumSlices(bw.WeightPartials.DevicePointer, Gradient(o.OutProj), batch, (long)d * ed);

        // The scan: du, d(dt before the softplus), dz, and partials of dA, dB, dC, dD, d dt_bias.
        _stages.Mark(GpuStage.Scan);
        var scan = k.ScanBackward;
        scan.GridDimensions = new Dim3((uint)(batch * k.BackwardBlocksPerSequence));
        scan.BlockDimensions = new Dim3((uint)k.BackwardThreads);
        scan.DynamicSharedMemory = k.BackwardSharedBytes;
        scan.Launch(_stream,
            m.U, s.SelectiveDelta ? m.Dt.DevicePointer : 0UL, Weight(o.DtProjBias), ScaledA(layer),
            s.SelectiveB ? m.B.DevicePointer : Weight(o.B), s.SelectiveC ? m.C.DevicePointer : Weight(o.C),
            Weight(o.D), m.Z, bw.DY, m.ChunkStates,
            bw.DU, s.SelectiveDelta ? bw.DDt.DevicePointer : 0UL, bw.DZ,
            bw.PartDA, bw.PartDB, bw.PartDC, bw.PartDD, bw.PartDBias, batch, length);
        _stages.Mark(GpuStage.Reductions);
        LaunchElementwise(k.ALogGradient, (long)ed * n, bw.PartDA, Weight(o.ALog), Gradient(o.ALog), batch, (long)ed * n);
        SumSlices(bw.PartDD.DevicePointer, Gradient(o.D), batch, ed);
        SumSlices(bw.PartDBias.DevicePointer, Gradient(o.DtProjBias), batch, ed);
        // Variable B/C: partials per channel block of (batch, N, L) → the activations' gradients (in the activation
        // type, for the x_proj products); constant: per sequence of (ED, N) → the parameters' gradients.
        if (s.SelectiveB) LaunchElementwise(_compute.SumSlicesToActivation, tokens * n, bw.PartDB, bw.DB, k.BackwardBlocksPerSequence, tokens * n);
        else SumSlices(bw.PartDB.DevicePointer, Gradient(o.B), batch, (long)ed * n);
        if (s.SelectiveC) LaunchElementwise(_compute.SumSlicesToActivation, tokens * n, bw.PartDC, bw.DC, k.BackwardBlocksPerSequence, tokens * n);
        else SumSlices(bw.PartDC.DevicePointer, Gradient(o.C), batch, (long)ed * n);

        // dt_proj, then x_proj's rows (dt_low, B, C): each adds its input gradient onto du, in that fixed order.
        int row = 0;
        if (s.SelectiveDelta)
        {
            TokenMixBackward(bw.DDt, ed, o.DtProjWeight, m.DtLow, s.DtRank, bw.DDtLow, accumulate: false, bw, batch, length);
            TokenMixBackward(bw.DDtLow, s.DtRank, o.XProj, m.U, ed, bw.DU, accumulate: true, bw, batch, length);
            row += s.DtRank;
        }
        if (s.SelectiveB)
        {
            TokenMixBackward(bw.DB, n, o.XProj + row * ed, m.U, ed, bw.DU, accumulate: true, bw, batch, length);
            row += n;
        }
        if (s.SelectiveC)
            TokenMixBackward(bw.DC, n, o.XProj + row * ed, m.U, ed, bw.DU, accumulate: true, bw, batch, length);

        // Causal conv + SiLU in one pass: dx, and per (sequence, segment) partials of dw/dbias, then their fixed-order sum.
        _stages.Mark(GpuStage.Convolution);
        long sb = (long)ed * length, sc = length, st = 1;
        ulong convBias = o.ConvBias < 0 ? 0UL : Weight(o.ConvBias);
        LaunchConvolution(k.ConvBackward, batch, length, m.X, sb, sc, st, Weight(o.ConvWeight), convBias, 0UL, bw.DU, bw.DX, bw.ConvPartials, batch, length);
        LaunchElementwise(k.ConvBackwardWeights, (long)ed * (s.ConvKernel + 1), bw.ConvPartials, Gradient(o.ConvWeight),
            o.ConvBias < 0 ? 0UL : Gradient(o.ConvBias), batch * ConvolutionSegments(length));

        // in_proj, x_b / z_b (ED×L) = W_x / W_z · normed_bᵀ (+ bias): dW = Σ_b dx_b·normed_b, d normed_b = dx_bᵀ·W_x + dz_bᵀ·W_z.
        _stages.Mark(GpuStage.MatrixProducts);
        foreach (var (grad, partial) in new[] { (bw.DX, 0L), (bw.DZ, (long)ed * d) })
            _blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.None, d, ed, length,
                1f, norm.Normed.DevicePointer, act, d, (long)length * d,
                grad.DevicePointer, act, length, (long)ed * length,
                0f, bw.WeightPartials.DevicePointer + (ulong)partial * sizeof(float), CudaDataType.Float32, d, 2L * ed * d, batch);
        _blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.Transpose, d, length, ed,
            1f, ComputeWeight(o.InProj), act, d, 0, bw.DX.DevicePointer, act, length, (long)ed * length,
            0f, bw.DNormed.DevicePointer, act, d, (long)length * d, batch);
        _blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.Transpose, d, length, ed,
            1f, ComputeWeight(o.InProj, ed * d), act, d, 0, bw.DZ.DevicePointer, act, length, (long)ed * length,
            1f, bw.DNormed.DevicePointer, act, d, (long)length * d, batch);
        SumSlices(bw.WeightPartials.DevicePointer, Gradient(o.InProj), batch, 2L * ed * d);
        if (o.InProjBias >= 0)
        {
            // Per (sequence, channel) sums over time as one product with a ones vector, then summed over sequences.
            _stages.Mark(GpuStage.MatrixProducts);
            int half = 0;
            foreach (var grad in new[] { bw.DX, bw.DZ })
            {
                _blas.GemmEx(CublasOperation.Transpose, CublasOperation.None, 1, batch * ed, length,
                    1f, bw.ActivationOnes.DevicePointer, act, length, grad.DevicePointer, act, length,
                    0f, bw.WeightPartials.DevicePointer, CudaDataType.Float32, 1);
                SumSlices(bw.WeightPartials.DevicePointer, Gradient(o.InProjBias + half), batch, ed);
                half += ed;
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="TokenMixProduct"/>, out_b (rows×L) = W (rows×width) · in_b (width×L), all channel-major:
    /// dW = Σ_b dout_b·in_bᵀ into the gradient at <paramref name="weightOffset"/>, and d in_b = Wᵀ·dout_b written to
    /// (or, with <paramref name="accumulate"/>, added onto) <paramref name="dInput"/>.
    /// </summary>
    private void TokenMixBackward(ActivationBuffer dOut, int rows, long weightOffset, ActivationBuffer input, int width,
        ActivationBuffer dInput, bool accumulate, BackwardBuffers bw, int batch, int length)
    {
        var act = ActivationType;
        _stages.Mark(GpuStage.MatrixProducts);
        // Column-major view: dWᵀ (width×rows) = in_b (width×L) · dout_bᵀ (L×rows), per sequence, then summed.
        _blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.None, width, rows, length,
            1f, input.DevicePointer, act, length, (long)width * length,
            dOut.DevicePointer, act, length, (long)rows * length,
            0f, bw.WeightPartials.DevicePointer, CudaDataType.Float32, width, (long)rows * width, batch);
        // d in_bᵀ (L×width) = dout_bᵀ (L×rows) · W (rows×width).
        _blas.GemmStridedBatchedEx(CublasOperation.None, CublasOperation.Transpose, length, width, rows,
            1f, dOut.DevicePointer, act, length, (long)rows * length,
            ComputeWeight(weightOffset), act, width, 0,
            accumulate ? 1f : 0f, dInput.DevicePointer, act, length, (long)width * length, batch);
        SumSlices(bw.WeightPartials.DevicePointer, Gradient(weightOffset), batch, (long)rows * width);
    }

    /// <summary>
    /// RMSNorm with the residual add, backward: <paramref name="dr"/> gets the gradient of the norm's residual input
    /// (and of the mixer output it added), the weight's gradient goes to <paramref name="weightOffset"/>.
    /// <paramref name="dResidualOut"/> is the gradient reaching the residual output from above (0: none).
    /// </summary>
    private void NormBackward(NormBuffers norm, long weightOffset, ActivationBuffer dNormed, ulong dResidualOut,
        CudaDeviceVariable<float> dr, BackwardBuffers bw, int rows)
    {
        var k = Training;
        _stages.Mark(GpuStage.Norms);
        int blocks = (rows + k.NormBackwardRows - 1) / k.NormBackwardRows;
        var kernel = k.NormBackward;
        kernel.GridDimensions = new Dim3((uint)blocks);
        kernel.BlockDimensions = new Dim3((uint)_launch.NormThreads);
        kernel.Launch(_stream, norm.Residual, norm.InverseRms, Weight(weightOffset), dNormed, dResidualOut, dr, bw.NormPartials, rows);
        LaunchElementwise(k.SumSlices, _shape.DModel, bw.NormPartials, Gradient(weightOffset), blocks, (long)_shape.DModel);
    }

    /// <summary>out[i] = Σ_j in[j·count + i] over <paramref name="parts"/> slices, in slice order.</summary>
    private void SumSlices(ulong input, ulong output, int parts, long count)
    {
        _stages.Mark(GpuStage.Reductions);
        LaunchElementwise(Training.SumSlices, count, input, output, parts, count);
    }

    private BackwardBuffers BackwardFor(Activations a)
    {
        if (_backward is { } current && ReferenceEquals(current.Owner, a)) return current;
        var k = Training;
        _backward = new BackwardBuffers(a, _context, _shape, k.BackwardBlocksPerSequence, k.NormBackwardRows, ConvolutionSegments(a.Length));
        long tokens = (long)a.Batch * a.Length;
        LaunchElementwise(_compute.ToActivation, tokens, _backward.Ones, _backward.ActivationOnes, tokens);
        return _backward;
    }

    /// <summary>
    /// Applies one AdamW step to the device parameters with the device gradients multiplied by
    /// <paramref name="gradientScale"/> (the clipping factor); called by <see cref="CudaAdamW"/>.
    /// </summary>
    internal void ApplyAdamW(CudaAdamW optimizer, float decayFactor, float stepSize, float inverseSqrtBiasCorrection2, float gradientScale)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_gradients is null)
                throw new InvalidOperationException("AdamW needs gradients on the device: call ForwardBackward before Update.");
            var k = Training;
            var options = optimizer.Options;
            var adam = k.AdamW;
            long perSegmentBlocks = Math.Clamp((_parameters.Layout.TotalLength / optimizer.Segments + ElementwiseThreads - 1) / ElementwiseThreads, 1, 4096);
            adam.GridDimensions = new Dim3((uint)perSegmentBlocks, (uint)optimizer.Segments);
            adam.BlockDimensions = new Dim3(ElementwiseThreads);
            _stages.Mark(GpuStage.Optimizer);
            // In bf16 mode the kernel also writes the products' bf16 copy of each updated weight.
            adam.Launch(_stream, _weights, _gradients, optimizer.FirstMoment, optimizer.SecondMoment, _computeWeights?.DevicePointer ?? 0UL,
                optimizer.SegmentStarts, optimizer.SegmentDecays, decayFactor,
                options.Beta1, 1 - options.Beta1, options.Beta2, 1 - options.Beta2, stepSize, inverseSqrtBiasCorrection2,
                options.Epsilon, gradientScale);
            RecomputeScaledA();
            // No wait here: the next call's copies and launches queue behind the update on the same (blocking) stream.
            _stages.End();
        }
    }

    private void DisposeTraining()
    {
        DisposeOptimizer();
        _gradients?.Dispose();
        _gradients = null;
        _backward = null;
    }

    /// <summary>The training kernels of the compiled variant and their launch facts.</summary>
    private sealed class TrainingKernels
    {
        public TrainingKernels(CudaModule module, CudaContext context)
        {
            ScanBackward = module.GetKernel("mamba_scan_bwd");
            NormBackward = module.GetKernel("mamba_rmsnorm_bwd");
            ConvBackward = module.GetKernel("mamba_conv_bwd");
            ConvBackwardWeights = module.GetKernel("mamba_conv_bwd_weights");
            CrossEntropy = module.GetKernel("mamba_cross_entropy");
            EmbedBackward = module.GetKernel("mamba_embed_bwd");
            SumSlices = module.GetKernel("mg_sum_slices");
            ALogGradient = module.GetKernel("mamba_alog_grad");
            ScaledA = module.GetKernel("mamba_scaled_a");
            AdamW = module.GetKernel("mamba_adamw");
            var scan = module.ReadConstant<int>("mamba_scan_config", 8);
            var norm = module.ReadConstant<int>("mamba_norm_config", 3);
            (BackwardThreads, BackwardBlocksPerSequence, BackwardSharedBytes) = (scan[4], scan[5], scan[6]);
            NormBackwardRows = norm[1];
            CrossEntropyThreads = module.ReadConstant<int>("mamba_ce_config", 1)[0];
            if (BackwardSharedBytes > ScanBackward.MaxDynamicSharedMemory)
            {
                if (BackwardSharedBytes > context.MaxSharedMemoryPerBlockOptin)
                    throw new InvalidOperationException(
                        $"The scan's backward kernel needs {BackwardSharedBytes} bytes of shared memory per block; {context.DeviceName} allows {context.MaxSharedMemoryPerBlockOptin}.");
                ScanBackward.MaxDynamicSharedMemory = BackwardSharedBytes;
            }
        }

        public CudaKernel ScanBackward { get; }
        public CudaKernel NormBackward { get; }
        public CudaKernel ConvBackward { get; }
        public CudaKernel ConvBackwardWeights { get; }
        public CudaKernel CrossEntropy { get; }
        public CudaKernel EmbedBackward { get; }
        public CudaKernel SumSlices { get; }
        public CudaKernel ALogGradient { get; }
        public CudaKernel ScaledA { get; }
        public CudaKernel AdamW { get; }
        public int BackwardThreads { get; }
        public int BackwardBlocksPerSequence { get; }
        public int BackwardSharedBytes { get; }
        public int NormBackwardRows { get; }
        /// <summary>The cross-entropy's block size: the kernel spreads a row over exactly this many threads' registers.</summary>
        public int CrossEntropyThreads { get; }
    }

    /// <summary>The backward's gradients of activations and its partial sums, for one (batch, length); freed with the activations.</summary>
    private sealed class BackwardBuffers
    {
        public BackwardBuffers(Activations owner, CudaContext context, MambaShape s, int scanBlocksPerSequence, int normRowsPerBlock, int convSegments)
        {
            Owner = owner;
            int batch = owner.Batch, length = owner.Length;
            long tokens = (long)batch * length;
            long channels = tokens * s.DInner;
            long stateParameters = (long)batch * s.DInner * s.DState;
            Targets = owner.Add(new CudaDeviceVariable<int>(context, tokens));
            Order = owner.Add(new CudaDeviceVariable<int>(context, tokens));
            Offsets = owner.Add(new CudaDeviceVariable<int>(context, s.Vocab + 1));
            RowLoss = Floats(tokens);
            LossSum = Floats(1);
            Ones = Floats(tokens);
            Ones.CopyToDevice(Enumerable.Repeat(1f, checked((int)tokens)).ToArray());
            ActivationOnes = Values(tokens);
            DResidual = [Floats(tokens * s.DModel), Floats(tokens * s.DModel)];
            DOutCopy = owner.ActivationBytes == sizeof(float) ? null : Values(tokens * s.DModel);
            DNormed = Values(tokens * s.DModel);
            NormPartials = Floats((tokens + normRowsPerBlock - 1) / normRowsPerBlock * s.DModel);
            DY = Values(channels);
            DU = Values(channels);
            DZ = Values(channels);
            DX = Values(channels);
            ConvPartials = Floats((long)batch * convSegments * s.DInner * (s.ConvKernel + 1));
            DDt = Values(s.SelectiveDelta ? channels : 1);
            DDtLow = Values(s.SelectiveDelta ? tokens * s.DtRank : 1);
            DB = Values(s.SelectiveB ? tokens * s.DState : 1);
            DC = Values(s.SelectiveC ? tokens * s.DState : 1);
            PartDA = Floats(stateParameters);
            PartDB = Floats(s.SelectiveB ? scanBlocksPerSequence * tokens * s.DState : stateParameters);
            PartDC = Floats(s.SelectiveC ? scanBlocksPerSequence * tokens * s.DState : stateParameters);
            PartDD = Floats((long)batch * s.DInner);
            PartDBias = Floats((long)batch * s.DInner);
            // Per-sequence slices of the largest weight gradient (in_proj's x and z halves), or of the in_proj bias.
            long largestWeight = Math.Max(Math.Max(2L * s.DInner * s.DModel, (long)s.XProjRows * s.DInner), Math.Max((long)s.DInner * s.DtRank, s.DInner));
            WeightPartials = Floats(batch * largestWeight);

            ActivationBuffer Values(long count) => owner.Add(new ActivationBuffer(context, count, owner.ActivationBytes));
            CudaDeviceVariable<float> Floats(long count) => owner.Add(new CudaDeviceVariable<float>(context, count));
        }

        /// <summary>The activations these buffers belong to (and are freed with).</summary>
        public Activations Owner { get; }
        public readonly CudaDeviceVariable<int> Targets, Order, Offsets;
        public readonly CudaDeviceVariable<float> RowLoss, LossSum, Ones, NormPartials;
        /// <summary>The convolution backward's dw/dbias partials, (sequence, segment, channel, K + 1).</summary>
        public readonly CudaDeviceVariable<float> ConvPartials;
        public readonly CudaDeviceVariable<float>[] DResidual;
        /// <summary>bf16 mode: the residual gradient rounded to bf16 for the out_proj products; null in fp32 mode.</summary>
        public readonly ActivationBuffer? DOutCopy;
        /// <summary>Ones in the activation type (the in_proj bias gradient's sums over time).</summary>
        public readonly ActivationBuffer ActivationOnes;
        public readonly ActivationBuffer DNormed, DY, DU, DZ, DX, DDt, DDtLow, DB, DC;
        public readonly CudaDeviceVariable<float> PartDA, PartDB, PartDC, PartDD, PartDBias, WeightPartials;
    }
}

/// <summary>
/// AdamW on the GPU for a <see cref="CudaMambaModel"/>'s device parameters, with the CPU <see cref="Training.AdamW"/>'s
/// exact operation order, bias corrections and no-decay rules (the layout's WeightDecay flags): the kernel rounds each
/// operation explicitly, so a step equals the CPU's bit for bit given the same gradients. Moments live on the device.
/// </summary>
public sealed class CudaAdamW : IDeviceOptimizer
{
    private readonly CudaMambaModel _model;

    /// <summary>Zero moments on <paramref name="model"/>'s device, for its parameter layout.</summary>
    public CudaAdamW(CudaMambaModel model, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var layout = model.Layout;
        Options = options ?? new AdamWOptions();
        Options.Validate();
        _model = model;
        // Runs of consecutive tensors sharing the decay flag: one grid row (blockIdx.y) each.
        var starts = new List<long>();
        var decays = new List<int>();
        foreach (var tensor in layout.Tensors.OrderBy(t => t.Offset))
        {
            if (decays.Count == 0 || decays[^1] != (tensor.WeightDecay ? 1 : 0))
            {
                starts.Add(tensor.Offset);
                decays.Add(tensor.WeightDecay ? 1 : 0);
            }
        }
        starts.Add(layout.TotalLength);
        Segments = decays.Count;
        var owned = new DisposalStack();
        try
        {
            FirstMoment = owned.Own(new CudaDeviceVariable<float>(model.Context, layout.TotalLength));
            SecondMoment = owned.Own(new CudaDeviceVariable<float>(model.Context, layout.TotalLength));
            SegmentStarts = owned.Own(new CudaDeviceVariable<long>(model.Context, starts.ToArray()));
            SegmentDecays = owned.Own(new CudaDeviceVariable<int>(model.Context, decays.ToArray()));
            FirstMoment.Memset((byte)0);
            SecondMoment.Memset((byte)0);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    /// <summary>Learning-rate-independent settings: betas, epsilon, weight decay.</summary>
    public AdamWOptions Options { get; }

    /// <summary>Updates applied so far (t in the bias corrections).</summary>
    public long StepCount { get; private set; }

    internal CudaDeviceVariable<float> FirstMoment { get; }
    internal CudaDeviceVariable<float> SecondMoment { get; }
    internal CudaDeviceVariable<long> SegmentStarts { get; }
    internal CudaDeviceVariable<int> SegmentDecays { get; }
    internal int Segments { get; }

    /// <summary>
    /// Applies one update to the model's device parameters with the gradients of its last ForwardBackward,
    /// multiplied by <paramref name="gradientScale"/> first (the global-norm clipping factor; 1 leaves them as they are).
    /// The host parameters are not touched: <see cref="CudaMambaModel.DownloadParameters"/> fetches them.
    /// </summary>
    public void Update(float learningRate, float gradientScale = 1f)
    {
        if (!(gradientScale >= 0 && float.IsFinite(gradientScale)))
            throw new ArgumentOutOfRangeException(nameof(gradientScale), gradientScale, $"gradientScale must be finite and >= 0, was {gradientScale}.");
        if (!(learningRate >= 0 && float.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, $"learningRate must be finite and >= 0, was {learningRate}.");
        long t = StepCount + 1;
        // The same scalars, computed the same way, as the CPU optimizer.
        double biasCorrection1 = 1 - Math.Pow(Options.Beta1, t);
        double biasCorrection2 = 1 - Math.Pow(Options.Beta2, t);
        _model.ApplyAdamW(this, 1 - learningRate * Options.WeightDecay, (float)(learningRate / biasCorrection1),
            (float)(1 / Math.Sqrt(biasCorrection2)), gradientScale);
        StepCount = t;
    }

    /// <summary>Copies the moments to the host (for checkpoints).</summary>
    public void CopyMomentsToHost(Span<float> firstMoment, Span<float> secondMoment)
    {
        FirstMoment.CopyToHost(firstMoment);
        SecondMoment.CopyToHost(secondMoment);
    }

    /// <summary>Replaces the moments and the step count with those of a saved run (laid out like the parameters).</summary>
    public void Restore(long stepCount, ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment)
    {
        if (stepCount < 0) throw new ArgumentOutOfRangeException(nameof(stepCount), stepCount, $"stepCount must be >= 0, was {stepCount}.");
        if (firstMoment.Length != FirstMoment.Count || secondMoment.Length != SecondMoment.Count)
            throw new ArgumentException($"Expected moments of {FirstMoment.Count} values, got {firstMoment.Length} and {secondMoment.Length}.");
        FirstMoment.CopyToDevice(firstMoment);
        SecondMoment.CopyToDevice(secondMoment);
        StepCount = stepCount;
    }

    /// <summary>Frees the moments and the segment tables on the device.</summary>
    public void Dispose()
    {
        SegmentDecays.Dispose();
        SegmentStarts.Dispose();
        SecondMoment.Dispose();
        FirstMoment.Dispose();
    }
}
