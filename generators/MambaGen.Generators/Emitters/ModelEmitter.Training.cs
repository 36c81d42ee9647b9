using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    internal static partial class ModelEmitter
    {
        private static void EmitTrainingApi(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Training ────────────────────────────────────────────────────────────────────────────────────");
            w.Summary(
                "Forward and backward for next-token training: returns the mean cross-entropy over positions whose target is ≥ 0\n" +
                "(−1 = not scored; 0 when nothing is scored) and overwrites <paramref name=\"gradients\"/> (laid out like Parameters) with\n" +
                "its gradient. The scan backward recomputes h inside chunks of ScanChunk steps from the states the forward pass kept.\n" +
                "After the first call with a given batch and length nothing is allocated.");
            using (w.Block($"public float ForwardBackward({Sys}.ReadOnlySpan<int> tokens, {Sys}.ReadOnlySpan<int> targets, int batch, {Sys}.Span<float> gradients)"))
            {
                w.Line($"{Cpu}.ModelInput.RequireTokenBatch(tokens, batch, Vocab, nameof(tokens));");
                w.Line($"{Cpu}.ModelInput.RequireTargets(targets, tokens.Length, Vocab, nameof(targets));");
                w.Line($"{Cpu}.ModelInput.RequireLength(gradients.Length, Parameters.TrainableLength, nameof(gradients));");
                w.Line("return _backend.ForwardBackward(tokens, targets, batch, gradients);");
            }
            w.Line();
        }

        /// <summary>The CPU's forward and backward for training (arguments already checked).</summary>
        private static void EmitCpuForwardBackward(CodeWriter w)
        {
            w.Summary("ForwardBackward on the CPU; the arguments have been checked.");
            using (w.Block($"private float CpuForwardBackward({Sys}.ReadOnlySpan<int> tokens, {Sys}.ReadOnlySpan<int> targets, int batch, {Sys}.Span<float> gradients)"))
            {
                using (w.Block("lock (_sync)"))
                {
                    w.Line("int rows = tokens.Length;");
                    w.Line("int length = rows / batch;");
                    w.Line("var ws = TrainingWorkspaceFor(batch, length);");
                    w.Line("var back = ws.Backward!;");
                    w.Line("RunLayers(ws, tokens, batch, length, state: null);");
                    w.Line("HeadForAllRows(ws, rows, back.Logits, back.FinalInverseRms);");
                    w.Comment("The logits buffer becomes ∂loss/∂logits.");
                    w.Line($"float loss = {Cpu}.CrossEntropy.LossAndGradient(back.Logits.AsSpan(0, rows * Vocab), targets, Vocab);");
                    w.Line("gradients.Clear();");
                    w.Line("Backward(ws, tokens, gradients);");
                    w.Line("return loss;");
                }
            }
            w.Line();
        }

        /// <summary>The reverse pass: head, final norm, then every layer from the last, then the embedding lookup.</summary>
        private static void EmitBackwardPipeline(CodeWriter w, ModelSpec s)
        {
            w.Comment("── The backward pass ───────────────────────────────────────────────────────────────────────────");
            w.Summary(
                "Backward over the activations RunLayers kept, starting from ∂loss/∂logits in back.Logits; accumulates into\n" +
                "<paramref name=\"gradients\"/>, which starts at zero. back.ResidualGradient carries ∂loss/∂r down the residual stream.");
            using (w.Block($"private void Backward(Workspace ws, {Sys}.ReadOnlySpan<int> tokens, {Sys}.Span<float> gradients)"))
            {
                w.Line("int rows = ws.Batch * ws.Length;");
                w.Line("var back = ws.Backward!;");
                w.Line("_active = ws;");
                w.Line("var logitsGradient = back.Logits.AsSpan(0, rows * Vocab);");
                w.Line("var dr = back.ResidualGradient.AsSpan(0, rows * DModel);");
                w.Comment("Head: ∂W = (∂logits)ᵀ·RMSNorm_f(r)" + (s.TieEmbeddings ? " (tied: the embedding's gradient, to which the lookup adds below)" : "") + "; ∂RMSNorm_f(r) = ∂logits·W.");
                w.Line($"{Gemm}(true, false, Vocab, DModel, rows, 1f, logitsGradient, Vocab, ws.Normed, DModel, 0f, global::MambaGen.ParameterLayout.Part(gradients, HeadOffset, Vocab * DModel), DModel);");
                w.Line($"{Gemm}(false, false, rows, DModel, Vocab, 1f, logitsGradient, Vocab, Parameters.Span(HeadOffset, Vocab * DModel), DModel, 0f, back.NormedGradient, DModel);");
                w.Comment("Final norm: ∂r = RMSNorm_f backward, from zero.");
                w.Line("dr.Clear();");
                w.Line($"{Cpu}.RmsNorm.Backward(ws.Residual, Parameters.Span(Layout.NormF, DModel), back.FinalInverseRms, back.NormedGradient, dr, global::MambaGen.ParameterLayout.Part(gradients, Layout.NormF, DModel), rows, DModel);");
                using (w.Block("for (int layer = Layers - 1; layer >= 0; layer--)"))
                {
                    w.Line("var o = Layout.LayerOffsets[layer];");
                    w.Line("ws.Layer = layer;");
                    w.Line("var act = ws.ByLayer[layer];");
                    w.Comment("out_proj: ∂y = ∂r·W_out, ∂W_out = (∂r)ᵀ·y" + (s.ProjBias ? ", ∂b_out = Σ_rows ∂r" : "") + " (∂r also flows on unchanged: the residual path).");
                    w.Line($"{Gemm}(false, false, rows, DInner, DModel, 1f, dr, DModel, Parameters.Span(o.OutProj, DModel * DInner), DInner, 0f, back.YGradient, DInnerStride);");
                    w.Line($"{Gemm}(true, false, DModel, DInner, rows, 1f, dr, DModel, act.Y, DInnerStride, 0f, global::MambaGen.ParameterLayout.Part(gradients, o.OutProj, DModel * DInner), DInner);");
                    if (s.ProjBias)
                        w.Line($"{Cpu}.Rows.AddColumnSums(dr, rows, DModel, global::MambaGen.ParameterLayout.Part(gradients, o.OutProjBias, DModel));");
                    w.Comment("Scan backward, one task per channel block over every sequence: ∂u, ∂z" +
                              (s.SelectiveDelta ? ", ∂dt" : "") + (s.SelectiveB || s.SelectiveC ? ", per-block shares of ∂B_t/∂C_t" : "") +
                              ", and the per-channel gradients of A_log, D, the dt bias" + (s.SelectiveB && s.SelectiveC ? "." : " and the fixed B/C."));
                    w.Line("_constants.Prepare(Parameters, o);");
                    w.Line($"{Cpu}.WorkerPool.For(ChannelBlocks, _scanBackwardTask);");
                    if (s.SelectiveB) w.Line("SumBlockShares(back.PartialB, rows, back.XDblGradient, XProjB);");
                    if (s.SelectiveC) w.Line("SumBlockShares(back.PartialC, rows, back.XDblGradient, XProjC);");
                    if (s.SelectiveDelta)
                    {
                        w.Comment("dt_proj: ∂dt_low = ∂dt·W_dt into x_dbl's first R columns; ∂W_dt = (∂dt)ᵀ·dt_low (the bias gradient came from the scan).");
                        w.Line($"{Gemm}(false, false, rows, DtRank, DInner, 1f, back.DtGradient, DInnerStride, Parameters.Span(o.DtProjWeight, DInner * DtRank), DtRank, 0f, back.XDblGradient, XProjRows);");
                        w.Line($"{Gemm}(true, false, DInner, DtRank, rows, 1f, back.DtGradient, DInnerStride, act.XDbl, XProjRows, 0f, global::MambaGen.ParameterLayout.Part(gradients, o.DtProjWeight, DInner * DtRank), DtRank);");
                    }
                    if (s.XProjRows > 0)
                    {
                        w.Comment("x_proj: ∂u += ∂x_dbl·W_x; ∂W_x = (∂x_dbl)ᵀ·u.");
                        w.Line($"{Gemm}(false, false, rows, DInner, XProjRows, 1f, back.XDblGradient, XProjRows, Parameters.Span(o.XProj, XProjRows * DInner), DInner, 1f, back.UGradient, DInnerStride);");
                        w.Line($"{Gemm}(true, false, XProjRows, DInner, rows, 1f, back.XDblGradient, XProjRows, act.XConv, DInnerStride, 0f, global::MambaGen.ParameterLayout.Part(gradients, o.XProj, XProjRows * DInner), DInner);");
                    }
                    w.Comment("SiLU and causal conv backward, one task per channel block: ∂x (pre-conv) and the conv weight" + (s.ConvBias ? " and bias" : "") + " gradients.");
                    w.Line($"{Cpu}.WorkerPool.For(ChannelBlocks, _convolveBackwardTask);");
                    w.Line("back.Layer.CopyTo(gradients, o);");
                    w.Comment("in_proj: with normed = RMSNorm(r_in) recomputed, ∂normed = ∂x·W_in[0, ED) + ∂z·W_in[ED, 2ED) and ∂W_in = (∂x | ∂z)ᵀ·normed.");
                    w.Line($"{Cpu}.RmsNorm.Forward(act.ResidualIn, Parameters.Span(o.Norm, DModel), NormEpsilon, ws.Normed, default, rows, DModel);");
                    w.Line($"{Gemm}(false, false, rows, DModel, DInner, 1f, back.XInGradient, DInnerStride, Parameters.Span(o.InProj, DInner * DModel), DModel, 0f, back.NormedGradient, DModel);");
                    w.Line($"{Gemm}(false, false, rows, DModel, DInner, 1f, back.GateGradient, DInnerStride, Parameters.Span(o.InProj + DInner * DModel, DInner * DModel), DModel, 1f, back.NormedGradient, DModel);");
                    w.Line($"{Gemm}(true, false, DInner, DModel, rows, 1f, back.XInGradient, DInnerStride, ws.Normed, DModel, 0f, global::MambaGen.ParameterLayout.Part(gradients, o.InProj, DInner * DModel), DModel);");
                    w.Line($"{Gemm}(true, false, DInner, DModel, rows, 1f, back.GateGradient, DInnerStride, ws.Normed, DModel, 0f, global::MambaGen.ParameterLayout.Part(gradients, o.InProj + DInner * DModel, DInner * DModel), DModel);");
                    if (s.ProjBias)
                    {
                        w.Line($"{Cpu}.Rows.AddColumnSums(back.XInGradient, rows, DInnerStride, global::MambaGen.ParameterLayout.Part(gradients, o.InProjBias, DInner));");
                        w.Line($"{Cpu}.Rows.AddColumnSums(back.GateGradient, rows, DInnerStride, global::MambaGen.ParameterLayout.Part(gradients, o.InProjBias + DInner, DInner));");
                    }
                    w.Comment("The block's norm: ∂r += RMSNorm backward (the residual path already carries ∂r).");
                    w.Line($"{Cpu}.RmsNorm.Backward(act.ResidualIn, Parameters.Span(o.Norm, DModel), act.InverseRms, back.NormedGradient, dr, global::MambaGen.ParameterLayout.Part(gradients, o.Norm, DModel), rows, DModel);");
                }
                w.Comment("Embedding lookup: each token's row of the embedding gradient gains ∂r of its position.");
                w.Line($"{Cpu}.Embedding.ScatterAdd(dr, DModel, tokens, global::MambaGen.ParameterLayout.Part(gradients, Layout.Embedding, Vocab * DModel));");
            }
            w.Line();
            if (s.SelectiveB || s.SelectiveC)
            {
                w.Summary(
                    "∂x_dbl[row, column + n] = Σ over channel blocks of each block's share (the scan kernels cannot share one sum without locks):\n" +
                    "the shares are added into block 0's, whole rows × N at a time, then copied into the x_dbl columns.");
                using (w.Block("private static void SumBlockShares(float[] shares, int rows, float[] xDblGradient, int column)"))
                {
                    w.Line("var total = shares.AsSpan(0, rows * DState);");
                    w.Line("for (int block = 1; block < ChannelBlocks; block++)");
                    w.Line("    global::System.Numerics.Tensors.TensorPrimitives.Add(total, shares.AsSpan(block * rows * DState, rows * DState), total);");
                    w.Line("for (int row = 0; row < rows; row++)");
                    w.Line("    total.Slice(row * DState, DState).CopyTo(xDblGradient.AsSpan(row * XProjRows + column, DState));");
                }
                w.Line();
            }
        }

        private static void EmitBackwardBuffers(CodeWriter w, ModelSpec s)
        {
            w.Summary("Per-block scratch of the scan backward: h before and after each step of a chunk, as vectors of ChannelBlock channels.");
            w.Line("private const int ChunkStatesPerBlock = (ScanChunk + 1) * DState * ChannelBlock;");
            if (s.SelectiveDelta || s.SelectiveB || s.SelectiveC)
            {
                w.Summary("Per-block scratch of the scan backward with one vector per step and state of a chunk: exp(Δ_t·A), ∂B_t and ∂C_t products.");
                w.Line("private const int ChunkStepsPerBlock = ScanChunk * DState * ChannelBlock;");
            }
            w.Line();
            w.Summary("Buffers of the backward pass for up to <paramref name=\"rows\"/> tokens; ED-wide ones at row stride DInnerStride.");
            using (w.Block("private sealed class BackwardBuffers"))
            {
                w.Summary("Logits of the forward pass, then ∂loss/∂logits (rows × Vocab).");
                w.Line("public readonly float[] Logits;");
                w.Summary("rsqrt(mean(r²) + eps) of the final norm, per row.");
                w.Line("public readonly float[] FinalInverseRms;");
                w.Summary("∂loss/∂r, carried down the residual stream (rows × D).");
                w.Line("public readonly float[] ResidualGradient;");
                w.Summary("∂loss/∂(a norm's output) (rows × D).");
                w.Line("public readonly float[] NormedGradient;");
                w.Summary("∂loss/∂(gated scan output), i.e. of out_proj's input.");
                w.Line("public readonly float[] YGradient;");
                w.Summary("∂loss/∂u, u = SiLU(conv(x)).");
                w.Line("public readonly float[] UGradient;");
                w.Summary("∂loss/∂z (the gate half of in_proj).");
                w.Line("public readonly float[] GateGradient;");
                w.Summary("∂loss/∂x (the pre-conv half of in_proj).");
                w.Line("public readonly float[] XInGradient;");
                if (s.SelectiveDelta)
                {
                    w.Summary("∂loss/∂dt, dt = dt_proj output before bias and softplus.");
                    w.Line("public readonly float[] DtGradient;");
                }
                if (s.XProjRows > 0)
                {
                    w.Summary("∂loss/∂x_dbl (rows × XProjRows).");
                    w.Line("public readonly float[] XDblGradient;");
                }
                if (s.SelectiveB)
                {
                    w.Summary("Each channel block's share of ∂loss/∂B_t, [block][row][n].");
                    w.Line("public readonly float[] PartialB;");
                }
                if (s.SelectiveC)
                {
                    w.Summary("Each channel block's share of ∂loss/∂C_t, [block][row][n].");
                    w.Line("public readonly float[] PartialC;");
                }
                w.Line("public readonly float[] ChunkStates = new float[ChannelBlocks * ChunkStatesPerBlock];");
                if (s.SelectiveDelta) w.Line("public readonly float[] ChunkDecays = new float[ChannelBlocks * ChunkStepsPerBlock];");
                if (s.SelectiveB) w.Line("public readonly float[] ChunkBProducts = new float[ChannelBlocks * ChunkStepsPerBlock];");
                if (s.SelectiveC) w.Line("public readonly float[] ChunkCProducts = new float[ChannelBlocks * ChunkStepsPerBlock];");
                w.Summary("The per-channel gradients the kernels produce for the current layer.");
                w.Line("public readonly LayerGradients Layer = new LayerGradients();");
                w.Line();
                using (w.Block("public BackwardBuffers(int rows)"))
                {
                    w.Line("Logits = new float[checked(rows * Vocab)];");
                    w.Line("FinalInverseRms = new float[rows];");
                    w.Line("ResidualGradient = new float[rows * DModel];");
                    w.Line("NormedGradient = new float[rows * DModel];");
                    w.Line("YGradient = new float[rows * DInnerStride];");
                    w.Line("UGradient = new float[rows * DInnerStride];");
                    w.Line("GateGradient = new float[rows * DInnerStride];");
                    w.Line("XInGradient = new float[rows * DInnerStride];");
                    if (s.SelectiveDelta) w.Line("DtGradient = new float[rows * DInnerStride];");
                    if (s.XProjRows > 0) w.Line("XDblGradient = new float[rows * XProjRows];");
                    if (s.SelectiveB) w.Line("PartialB = new float[checked(ChannelBlocks * rows * DState)];");
                    if (s.SelectiveC) w.Line("PartialC = new float[checked(ChannelBlocks * rows * DState)];");
                }
            }
            w.Line();

            w.Summary("One layer's per-channel parameter gradients in the parameters' own layout, written by the backward kernels.");
            using (w.Block("private sealed class LayerGradients"))
            {
                w.Line("public readonly float[] ConvWeights = new float[DInner * ConvKernel];");
                if (s.ConvBias) w.Line("public readonly float[] ConvBiases = new float[DInner];");
                w.Line("public readonly float[] ALog = new float[DInner * DState];");
                w.Line("public readonly float[] DSkip = new float[DInner];");
                w.Line("public readonly float[] DtBias = new float[DInner];");
                if (!s.SelectiveB) w.Line("public readonly float[] FixedB = new float[DInner * DState];");
                if (!s.SelectiveC) w.Line("public readonly float[] FixedC = new float[DInner * DState];");
                w.Line();
                using (w.Block($"public void CopyTo({Sys}.Span<float> gradients, {Runtime}.LayerOffsets o)"))
                {
                    w.Line("ConvWeights.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.ConvWeight, DInner * ConvKernel));");
                    if (s.ConvBias) w.Line("ConvBiases.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.ConvBias, DInner));");
                    w.Line("ALog.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.ALog, DInner * DState));");
                    w.Line("DSkip.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.D, DInner));");
                    w.Line("DtBias.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.DtProjBias, DInner));");
                    if (!s.SelectiveB) w.Line("FixedB.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.B, DInner * DState));");
                    if (!s.SelectiveC) w.Line("FixedC.CopyTo(global::MambaGen.ParameterLayout.Part(gradients, o.C, DInner * DState));");
                }
            }
            w.Line();
        }
    }
}
