using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    internal static partial class ModelEmitter
    {
        private const string Gemm = Cpu + ".Gemm.Multiply";

        /// <summary>The layer loop: norm, projections (GEMM), convolution and scan (parallel kernels), residual update; and the head.</summary>
        private static void EmitPipeline(CodeWriter w, ModelSpec s)
        {
            w.Comment("── The pass over all layers ────────────────────────────────────────────────────────────────────");
            w.Summary(
                "r = Embed(tokens), then for every layer r += Mixer(RMSNorm(r)), over rows = batch · length tokens; afterwards\n" +
                "workspace.Residual holds the final residual stream. Activations are row-major (rows, features); ED-wide ones use the\n" +
                "row stride DInnerStride. With a decode state the convolution and the scan start from it and leave their final state in it.");
            using (w.Block($"private void RunLayers(Workspace workspace, {Sys}.ReadOnlySpan<int> tokens, int batch, int length, DecodeState? state)"))
            {
                w.Line("int rows = batch * length;");
                w.Line("var p = Parameters.Values;");
                w.Line("var ws = workspace;");
                w.Line("ws.Length = length;");
                w.Line("ws.State = state;");
                w.Comment("r = Embed(tokens): one row of the (Vocab, D) embedding per token.");
                w.Line($"{Cpu}.Embedding.Gather(p.AsSpan(Layout.Embedding, Vocab * DModel), DModel, tokens, ws.Residual);");
                using (w.Block("for (int layer = 0; layer < Layers; layer++)"))
                {
                    w.Line("var o = Layout.LayerOffsets[layer];");
                    w.Line("ws.Layer = layer;");
                    w.Comment("Block input: RMSNorm(r) with the layer's norm weight (eps = NormEpsilon inside the rsqrt).");
                    w.Line($"{Cpu}.RmsNorm.Forward(ws.Residual, p.AsSpan(o.Norm, DModel), NormEpsilon, ws.Normed, default, rows, DModel);");
                    w.Comment("in_proj (2ED × D) as two products: x = normed·W_in[0, ED)ᵀ and the gate z = normed·W_in[ED, 2ED)ᵀ.");
                    w.Line($"{Gemm}(false, true, rows, DInner, DModel, 1f, ws.Normed, DModel, p.AsSpan(o.InProj, DInner * DModel), DModel, 0f, ws.XIn, DInnerStride);");
                    w.Line($"{Gemm}(false, true, rows, DInner, DModel, 1f, ws.Normed, DModel, p.AsSpan(o.InProj + DInner * DModel, DInner * DModel), DModel, 0f, ws.Gate, DInnerStride);");
                    if (s.ProjBias)
                    {
                        w.Comment("+ in_proj.bias (ProjBias).");
                        w.Line($"{Cpu}.Rows.AddBias(ws.XIn, rows, DInnerStride, p.AsSpan(o.InProjBias, DInner));");
                        w.Line($"{Cpu}.Rows.AddBias(ws.Gate, rows, DInnerStride, p.AsSpan(o.InProjBias + DInner, DInner));");
                    }
                    w.Comment("The layer's per-channel constants in the kernels' layout: conv taps, A = −exp(A_log), D, dt bias" + (s.SelectiveB && s.SelectiveC ? "." : ", fixed B/C."));
                    w.Line("_constants.Prepare(p, o);");
                    w.Comment($"x = SiLU(causal depthwise conv(x){(s.ConvBias ? " + b" : "")}), K = {s.ConvKernel} taps: one task per (sequence, block of {ChannelBlock} channels).");
                    w.Line($"{Cpu}.WorkerPool.For(batch * ChannelBlocks, _convolveTask);");
                    if (s.XProjRows > 0)
                    {
                        w.Comment("x_dbl = x·W_xᵀ: the input-dependent " + SelectiveParts(s) + ", one row per token.");
                        w.Line($"{Gemm}(false, true, rows, XProjRows, DInner, 1f, ws.XConv, DInnerStride, p.AsSpan(o.XProj, XProjRows * DInner), DInner, 0f, ws.XDbl, XProjRows);");
                    }
                    if (s.SelectiveDelta)
                    {
                        w.Comment("dt = dt_low·W_dtᵀ (inner dimension R = DtRank); + dt bias and softplus are fused into the scan.");
                        w.Line($"{Gemm}(false, true, rows, DInner, DtRank, 1f, ws.XDbl, XProjRows, p.AsSpan(o.DtProjWeight, DInner * DtRank), DtRank, 0f, ws.DtRaw, DInnerStride);");
                    }
                    w.Comment("y = SSM(x) ⊙ SiLU(z): the scan, one task per (sequence, channel block).");
                    w.Line($"{Cpu}.WorkerPool.For(batch * ChannelBlocks, _scanTask);");
                    w.Comment("r += y·W_outᵀ" + (s.ProjBias ? " + b_out" : "") + ": out_proj accumulates straight into the fp32 residual stream.");
                    w.Line($"{Gemm}(false, true, rows, DModel, DInner, 1f, ws.Y, DInnerStride, p.AsSpan(o.OutProj, DModel * DInner), DInner, 1f, ws.Residual, DModel);");
                    if (s.ProjBias)
                        w.Line($"{Cpu}.Rows.AddBias(ws.Residual, rows, DModel, p.AsSpan(o.OutProjBias, DModel));");
                }
                w.Line("ws.State = null;");
            }
            w.Line();

            var head = s.TieEmbeddings ? "Layout.Embedding" : "Layout.LmHead";
            var headDoc = s.TieEmbeddings ? "the embedding matrix E (tied head)" : "lm_head (untied)";
            w.Summary($"The output head weight (Vocab × D): {headDoc}.");
            w.Line($"private {Sys}.ReadOnlySpan<float> HeadWeight => Parameters.Values.AsSpan({head}, Vocab * DModel);");
            w.Line();
            w.Summary($"logits = RMSNorm_f(r)·Wᵀ for every row, W = {headDoc}.");
            using (w.Block($"private void HeadForAllRows(Workspace ws, int rows, {Sys}.Span<float> logits)"))
            {
                w.Line($"{Cpu}.RmsNorm.Forward(ws.Residual, Parameters.Values.AsSpan(Layout.NormF, DModel), NormEpsilon, ws.Normed, default, rows, DModel);");
                w.Line($"{Gemm}(false, true, rows, Vocab, DModel, 1f, ws.Normed, DModel, HeadWeight, DModel, 0f, logits, Vocab);");
            }
            w.Line();
            w.Summary("The head for the last token of each sequence only (what decoding needs).");
            using (w.Block($"private void HeadForLastRows(Workspace ws, int batch, int length, {Sys}.Span<float> logits)"))
            {
                w.Line("var normF = Parameters.Values.AsSpan(Layout.NormF, DModel);");
                w.Line("for (int sequence = 0; sequence < batch; sequence++)");
                w.Line($"    {Cpu}.RmsNorm.Forward(ws.Residual.AsSpan(((sequence + 1) * length - 1) * DModel, DModel), normF, NormEpsilon,");
                w.Line("        ws.Normed.AsSpan(sequence * DModel, DModel), default, 1, DModel);");
                w.Line($"{Gemm}(false, true, batch, Vocab, DModel, 1f, ws.Normed, DModel, HeadWeight, DModel, 0f, logits, Vocab);");
            }
            w.Line();
        }

        private static string SelectiveParts(ModelSpec s)
        {
            var parts = new System.Collections.Generic.List<string>();
            if (s.SelectiveDelta) parts.Add("dt_low [0, R)");
            if (s.SelectiveB) parts.Add("B_t [XProjB, +N)");
            if (s.SelectiveC) parts.Add("C_t [XProjC, +N)");
            return "columns " + string.Join(", ", parts);
        }

        /// <summary>Adapters from <c>WorkerPool</c> indices to kernel calls, choosing the vector width the CPU runs natively.</summary>
        private static void EmitTasks(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Kernel tasks: index → (sequence, channel block), dispatched to the widest native vectors ──────");
            string convArgs = "ws.XIn, ws.XConv, sequence * ws.Length, ws.Length, firstChannel, _constants" + (s.ConvKernel > 1 ? ", history" : "");
            using (w.Block("private void ConvolveTask(int index)"))
            {
                w.Line("var ws = _workspace!;");
                w.Line("int sequence = index / ChannelBlocks, firstChannel = index % ChannelBlocks * ChannelBlock;");
                if (s.ConvKernel > 1)
                    w.Line($"{Sys}.Span<float> history = ws.State is null ? default : ws.State.ConvHistoryOf(ws.Layer, sequence);");
                Dispatch(w, "ConvolveSilu", convArgs);
            }
            w.Line();
            var scanArgs = "ws.XConv, " + (s.SelectiveDelta ? "ws.DtRaw, " : "") + (s.XProjRows > 0 ? "ws.XDbl, " : "") +
                           "ws.Gate, ws.Y, sequence * ws.Length, ws.Length, firstChannel, _constants, state, state, ws.Length";
            using (w.Block("private void ScanTask(int index)"))
            {
                w.Line("var ws = _workspace!;");
                w.Line("int sequence = index / ChannelBlocks, firstChannel = index % ChannelBlocks * ChannelBlock;");
                w.Comment("Decoding starts from the saved state and saves the final one (a single chunk as long as the call).");
                w.Line($"{Sys}.Span<float> state = ws.State is null ? default : ws.State.SsmStateOf(ws.Layer, sequence);");
                Dispatch(w, "Scan", scanArgs);
            }
            w.Line();
        }

        private static void Dispatch(CodeWriter w, string kernel, string arguments)
        {
            w.Line("if (global::System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated)");
            w.Line($"    {VectorFlavor.All[0].ClassName}.{kernel}({arguments});");
            w.Line("else");
            w.Line($"    {VectorFlavor.All[1].ClassName}.{kernel}({arguments});");
        }

        private static void EmitLayerConstants(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Per-layer constants in kernel layout ────────────────────────────────────────────────────────");
            w.Summary(
                "One layer's per-channel constants, channel-major so a vector load takes consecutive channels: [tap or n][DInnerStride].\n" +
                "Rebuilt from the parameters at every pass (cheap next to the products), so in-place training updates are always seen.\n" +
                "Padding lanes stay zero.");
            using (w.Block("private sealed class LayerConstants"))
            {
                w.Summary("Conv taps w[c, 0, k] at [k · DInnerStride + c].");
                w.Line("public readonly float[] ConvWeights = new float[ConvKernel * DInnerStride];");
                if (s.ConvBias)
                {
                    w.Summary("Conv bias per channel.");
                    w.Line("public readonly float[] ConvBiases = new float[DInnerStride];");
                }
                w.Summary("A = −exp(A_log) at [n · DInnerStride + c].");
                w.Line("public readonly float[] NegA = new float[DState * DInnerStride];");
                w.Summary(s.SelectiveDelta ? "dt_proj.bias per channel, added before the softplus." : "dt_proj.bias per channel: Δ = softplus(bias) is this variant's whole Δ.");
                w.Line("public readonly float[] DtBias = new float[DInnerStride];");
                w.Summary("The skip weight D per channel.");
                w.Line("public readonly float[] DSkip = new float[DInnerStride];");
                if (!s.SelectiveB)
                {
                    w.Summary("The learned, input-independent B[c, n] at [n · DInnerStride + c].");
                    w.Line("public readonly float[] FixedB = new float[DState * DInnerStride];");
                }
                if (!s.SelectiveC)
                {
                    w.Summary("The learned, input-independent C[c, n] at [n · DInnerStride + c].");
                    w.Line("public readonly float[] FixedC = new float[DState * DInnerStride];");
                }
                w.Line("private readonly float[] _expALog = new float[DInner * DState];");
                w.Line();
                using (w.Block($"public void Prepare(float[] p, {Runtime}.LayerOffsets o)"))
                {
                    w.Line("for (int c = 0; c < DInner; c++)");
                    w.Line("    for (int tap = 0; tap < ConvKernel; tap++)");
                    w.Line("        ConvWeights[tap * DInnerStride + c] = p[o.ConvWeight + c * ConvKernel + tap];");
                    if (s.ConvBias) w.Line("p.AsSpan(o.ConvBias, DInner).CopyTo(ConvBiases);");
                    w.Line("global::System.Numerics.Tensors.TensorPrimitives.Exp(p.AsSpan(o.ALog, DInner * DState), _expALog);");
                    w.Line("for (int c = 0; c < DInner; c++)");
                    w.Line("    for (int n = 0; n < DState; n++)");
                    w.Line("        NegA[n * DInnerStride + c] = -_expALog[c * DState + n];");
                    w.Line("p.AsSpan(o.DtProjBias, DInner).CopyTo(DtBias);");
                    w.Line("p.AsSpan(o.D, DInner).CopyTo(DSkip);");
                    foreach (var (flag, field, offset) in new[] { (s.SelectiveB, "FixedB", "o.B"), (s.SelectiveC, "FixedC", "o.C") })
                    {
                        if (flag) continue;
                        w.Line("for (int c = 0; c < DInner; c++)");
                        w.Line("    for (int n = 0; n < DState; n++)");
                        w.Line($"        {field}[n * DInnerStride + c] = p[{offset} + c * DState + n];");
                    }
                }
            }
            w.Line();
        }

        private static void EmitWorkspace(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Activation buffers ──────────────────────────────────────────────────────────────────────────");
            w.Summary("Activation buffers for up to <see cref=\"Rows\"/> tokens, reused across calls (grown when a call needs more).");
            using (w.Block("private sealed class Workspace"))
            {
                w.Line("public readonly int Rows;");
                w.Summary("Residual stream r (rows × D).");
                w.Line("public readonly float[] Residual;");
                w.Summary("RMSNorm(r): the input of in_proj, and of the head at the end (rows × D).");
                w.Line("public readonly float[] Normed;");
                w.Summary("x half of in_proj, before the convolution (rows × DInnerStride).");
                w.Line("public readonly float[] XIn;");
                w.Summary("z half of in_proj: the gate (rows × DInnerStride).");
                w.Line("public readonly float[] Gate;");
                w.Summary("SiLU(conv(x)): the scan's input u (rows × DInnerStride).");
                w.Line("public readonly float[] XConv;");
                if (s.XProjRows > 0)
                {
                    w.Summary("x_proj output: " + SelectiveParts(s) + " (rows × XProjRows).");
                    w.Line("public readonly float[] XDbl;");
                }
                if (s.SelectiveDelta)
                {
                    w.Summary("dt_proj output before bias and softplus (rows × DInnerStride).");
                    w.Line("public readonly float[] DtRaw;");
                }
                w.Summary("Gated scan output y ⊙ SiLU(z): the input of out_proj (rows × DInnerStride).");
                w.Line("public readonly float[] Y;");
                w.Line();
                w.Comment("The pass in progress, read by the kernel tasks.");
                w.Line("public int Length;");
                w.Line("public int Layer;");
                w.Line("public DecodeState? State;");
                w.Line();
                using (w.Block("public Workspace(int rows)"))
                {
                    w.Line("Rows = rows;");
                    w.Line("Residual = new float[checked(rows * DModel)];");
                    w.Line("Normed = new float[rows * DModel];");
                    w.Line("XIn = new float[checked(rows * DInnerStride)];");
                    w.Line("Gate = new float[rows * DInnerStride];");
                    w.Line("XConv = new float[rows * DInnerStride];");
                    if (s.XProjRows > 0) w.Line("XDbl = new float[checked(rows * XProjRows)];");
                    if (s.SelectiveDelta) w.Line("DtRaw = new float[rows * DInnerStride];");
                    w.Line("Y = new float[rows * DInnerStride];");
                }
            }
            w.Line();
            using (w.Block("private Workspace WorkspaceFor(int rows)"))
            {
                w.Line("if (_workspace is null || _workspace.Rows < rows) _workspace = new Workspace(rows);");
                w.Line("return _workspace;");
            }
            w.Line();
        }
    }
}
