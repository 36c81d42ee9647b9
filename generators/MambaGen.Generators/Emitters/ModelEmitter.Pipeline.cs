using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    internal static partial class ModelEmitter
    {
        internal const string Gemm = Cpu + ".Gemm.Multiply";

        /// <summary>The layer loop: norm, projections (GEMM), convolution and scan (parallel kernels), residual update; and the head.</summary>
        private static void EmitPipeline(CodeWriter w, ModelSpec s)
        {
            w.Comment("── The pass over all layers ────────────────────────────────────────────────────────────────────");
            w.Summary(
                "r = Embed(tokens), then for every layer r += Mixer(RMSNorm(r)), over rows = batch · length tokens; afterwards\n" +
                "ws.Residual holds the final residual stream. Activations are row-major (rows, features); ED-wide ones use the\n" +
                "row stride DInnerStride. With a decode state the convolution and the scan start from it and leave their final state in it;\n" +
                "a training workspace also keeps each layer's input, its inverse RMS and the scan state every ScanChunk steps.");
            using (w.Block($"private void RunLayers(Workspace ws, {Sys}.ReadOnlySpan<int> tokens, int batch, int length, DecodeState? state)"))
            {
                w.Line("int rows = batch * length;");
                w.Line("_active = ws;");
                w.Line("ws.Batch = batch;");
                w.Line("ws.Length = length;");
                w.Line("ws.State = state;");
                w.Comment("A one-token step reads every weight once per token: it takes the 16-bit copy, if one is in use (UseHalfPrecisionWeights),\nand per-layer constants kept from the previous step instead of rebuilding them. 16-bit-only parameters are read 16-bit throughout.");
                w.Line("bool oneTokenStep = state is not null && length == 1;");
                w.Line($"{Cpu}.HalfWeights? half = ProductWeights(oneTokenStep);");
                w.Comment("r = Embed(tokens): one row of the (Vocab, D) embedding per token.");
                w.Line($"{Cpu}.Embedding.Gather(Parameters.Span(Layout.Embedding, Vocab * DModel), DModel, tokens, ws.Residual);");
                using (w.Block("for (int layer = 0; layer < Layers; layer++)"))
                {
                    w.Line("var o = Layout.LayerOffsets[layer];");
                    w.Line("ws.Layer = layer;");
                    w.Line("var act = ws.ByLayer[layer];");
                    w.Comment("Block input: RMSNorm(r) with the layer's norm weight (eps = NormEpsilon inside the rsqrt); training keeps r and rsqrt.");
                    w.Line("if (act.ResidualIn is not null) ws.Residual.AsSpan(0, rows * DModel).CopyTo(act.ResidualIn);");
                    w.Line($"{Cpu}.RmsNorm.Forward(ws.Residual, Parameters.Span(o.Norm, DModel), NormEpsilon, ws.Normed, act.InverseRms, rows, DModel);");
                    w.Comment("in_proj (2ED × D) as two products: x = normed·W_in[0, ED)ᵀ and the gate z = normed·W_in[ED, 2ED)ᵀ.");
                    w.Line("Project(half, rows, DInner, DModel, ws.Normed, DModel, o.InProj, false, act.XIn, DInnerStride);");
                    w.Line("Project(half, rows, DInner, DModel, ws.Normed, DModel, o.InProj + DInner * DModel, false, act.Gate, DInnerStride);");
                    if (s.ProjBias)
                    {
                        w.Comment("+ in_proj.bias (ProjBias).");
                        w.Line($"{Cpu}.Rows.AddBias(act.XIn, rows, DInnerStride, Parameters.Span(o.InProjBias, DInner));");
                        w.Line($"{Cpu}.Rows.AddBias(act.Gate, rows, DInnerStride, Parameters.Span(o.InProjBias + DInner, DInner));");
                    }
                    w.Comment("The layer's per-channel constants in the kernels' layout: conv taps, A = −exp(A_log), D, dt bias" + (s.SelectiveB && s.SelectiveC ? "." : ", fixed B/C."));
                    w.Line("if (oneTokenStep) ws.Constants = StepConstants(layer);");
                    w.Line("else (ws.Constants = _constants).Prepare(Parameters, o);");
                    w.Comment($"x = SiLU(causal depthwise conv(x){(s.ConvBias ? " + b" : "")}), K = {s.ConvKernel} taps: one task per (sequence, ConvolveBlocksPerTask blocks of {ChannelBlock} channels).");
                    w.Line($"{Cpu}.WorkerPool.For(batch * ConvolveTasks, _convolveTask);");
                    if (s.XProjRows > 0)
                    {
                        w.Comment("x_dbl = x·W_xᵀ: the input-dependent " + SelectiveParts(s) + ", one row per token.");
                        w.Line("Project(half, rows, XProjRows, DInner, act.XConv, DInnerStride, o.XProj, false, act.XDbl, XProjRows);");
                    }
                    if (s.SelectiveDelta)
                    {
                        w.Comment("dt = dt_low·W_dtᵀ (inner dimension R = DtRank); + dt bias and softplus are fused into the scan.");
                        w.Line("Project(half, rows, DInner, DtRank, act.XDbl, XProjRows, o.DtProjWeight, false, act.DtRaw, DInnerStride);");
                    }
                    w.Comment("y = SSM(x) ⊙ SiLU(z): the scan, one task per (sequence, channel block).");
                    w.Line($"{Cpu}.WorkerPool.For(batch * ChannelBlocks, _scanTask);");
                    w.Comment("r += y·W_outᵀ" + (s.ProjBias ? " + b_out" : "") + ": out_proj accumulates straight into the fp32 residual stream.");
                    w.Line("Project(half, rows, DModel, DInner, act.Y, DInnerStride, o.OutProj, true, ws.Residual, DModel);");
                    if (s.ProjBias)
                        w.Line($"{Cpu}.Rows.AddBias(ws.Residual, rows, DModel, Parameters.Span(o.OutProjBias, DModel));");
                }
                w.Line("ws.State = null;");
            }
            w.Line();

            var head = s.TieEmbeddings ? "Layout.Embedding" : "Layout.LmHead";
            var headDoc = s.TieEmbeddings ? "the embedding matrix E (tied head)" : "lm_head (untied)";
            w.Summary($"The output head weight (Vocab × D): {headDoc}.");
            w.Line($"private static long HeadOffset => {head};");
            w.Line();
            w.Summary($"logits = RMSNorm_f(r)·Wᵀ for every row, W = {headDoc}; ws.Normed keeps RMSNorm_f(r).");
            using (w.Block($"private void HeadForAllRows(Workspace ws, int rows, {Sys}.Span<float> logits, {Sys}.Span<float> inverseRms)"))
            {
                w.Line($"{Cpu}.RmsNorm.Forward(ws.Residual, Parameters.Span(Layout.NormF, DModel), NormEpsilon, ws.Normed, inverseRms, rows, DModel);");
                w.Line("Project(ProductWeights(oneTokenStep: false), rows, Vocab, DModel, ws.Normed, DModel, HeadOffset, false, logits, Vocab);");
            }
            w.Line();
            w.Summary("The head for the last token of each sequence only (what decoding needs), from the 16-bit weights when <paramref name=\"half\"/> is given.");
            using (w.Block($"private void HeadForLastRows(Workspace ws, int batch, int length, {Sys}.Span<float> logits, {Cpu}.HalfWeights? half)"))
            {
                w.Line("for (int sequence = 0; sequence < batch; sequence++)");
                w.Line($"    {Cpu}.RmsNorm.Forward(ws.Residual.AsSpan(((sequence + 1) * length - 1) * DModel, DModel), Parameters.Span(Layout.NormF, DModel), NormEpsilon,");
                w.Line("        ws.Normed.AsSpan(sequence * DModel, DModel), default, 1, DModel);");
                w.Line("Project(half, batch, Vocab, DModel, ws.Normed, DModel, HeadOffset, false, logits, Vocab);");
            }
            w.Line();
            EmitStepConstants(w);
            w.Summary(
                "y = x·Wᵀ (+ y when <paramref name=\"accumulate\"/>) for the n × k weight at <paramref name=\"weightOffset\"/> of the\n" +
                "parameter vector: from the 16-bit copy when <paramref name=\"half\"/> is given, else the fp32 product.");
            using (w.Block($"private void Project({Cpu}.HalfWeights? half, int rows, int n, int k, {Sys}.ReadOnlySpan<float> x, int ldx, long weightOffset, bool accumulate, {Sys}.Span<float> y, int ldy)"))
            {
                w.Line($"if (half is not null) {Cpu}.HalfGemv.Multiply(half.Format, rows, n, k, x, ldx, half.Span(weightOffset, n * k), accumulate, y, ldy);");
                w.Line($"else {Gemm}(false, true, rows, n, k, 1f, x, ldx, Parameters.Span(weightOffset, n * k), k, accumulate ? 1f : 0f, y, ldy);");
            }
            w.Line();
        }

        /// <summary>Every layer's constants, built once for one-token steps and again only after the parameters change.</summary>
        private static void EmitStepConstants(CodeWriter w)
        {
            w.Comment("Per-layer constants of one-token steps and the parameter version they were built from. A step would otherwise rebuild\nthem (exp of A_log, transposes) for every layer and token, a few per cent of a step's time.");
            w.Line("private LayerConstants[]? _stepConstants;");
            w.Line("private long _stepConstantsVersion;");
            w.Line();
            using (w.Block("private LayerConstants StepConstants(int layer)"))
            {
                using (w.Block("if (_stepConstants is null || _stepConstantsVersion != Parameters.Version)"))
                {
                    w.Line("_stepConstants ??= new LayerConstants[Layers];");
                    w.Line("for (int i = 0; i < Layers; i++)");
                    w.Line("    (_stepConstants[i] ??= new LayerConstants()).Prepare(Parameters, Layout.LayerOffsets[i]);");
                    w.Line("_stepConstantsVersion = Parameters.Version;");
                }
                w.Line("return _stepConstants[layer];");
            }
            w.Line();
        }

        internal static string SelectiveParts(ModelSpec s)
        {
            var parts = new System.Collections.Generic.List<string>();
            if (s.SelectiveDelta) parts.Add("dt_low [0, R)");
            if (s.SelectiveB) parts.Add("B_t [XProjB, +N)");
            if (s.SelectiveC) parts.Add("C_t [XProjC, +N)");
            return "columns " + string.Join(", ", parts);
        }

        /// <summary>Adapters from <c>WorkerPool</c> indices to kernel calls.</summary>
        private static void EmitTasks(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Kernel tasks: index → (sequence, channel block), run on the widest native vectors ─────────────");
            string convArgs = "act.XIn, act.XConv, sequence * ws.Length, ws.Length, firstChannel, ws.Constants" + (s.ConvKernel > 1 ? ", history" : "");
            w.Summary(
                "Channel blocks one convolution task runs, one after the other. A block's 64 bytes of a row need not be cache-line\n" +
                "aligned, so tasks of neighbouring blocks running at once on two threads write the same lines: with one block per task\n" +
                "the convolution ran slower on 2 threads than on 1. Within a task the shared line at its edges is written at different\n" +
                "times (first and last block), and the convolution is a few per cent of the forward, so coarse tasks cost no balance.");
            w.Line("private const int ConvolveBlocksPerTask = 4;");
            w.Summary("Convolution tasks per sequence.");
            w.Line("private const int ConvolveTasks = (ChannelBlocks + ConvolveBlocksPerTask - 1) / ConvolveBlocksPerTask;");
            w.Line();
            using (w.Block("private void ConvolveTask(int index)"))
            {
                w.Line("var ws = _active!;");
                w.Line("var act = ws.ByLayer[ws.Layer];");
                w.Line("int sequence = index / ConvolveTasks, firstBlock = index % ConvolveTasks * ConvolveBlocksPerTask;");
                if (s.ConvKernel > 1)
                    w.Line($"{Sys}.Span<float> history = ws.State is null ? default : ws.State.ConvHistoryOf(ws.Layer, sequence);");
                using (w.Block($"for (int block = firstBlock; block < {Sys}.Math.Min(firstBlock + ConvolveBlocksPerTask, ChannelBlocks); block++)"))
                {
                    w.Line("int firstChannel = block * ChannelBlock;");
                    Dispatch(w, "ConvolveSilu", convArgs);
                }
            }
            w.Line();
            var scanArgs = "act.XConv, " + (s.SelectiveDelta ? "act.DtRaw, " : "") + (s.XProjRows > 0 ? "act.XDbl, " : "") +
                           "act.Gate, act.Y, sequence * ws.Length, ws.Length, firstChannel, ws.Constants, initialState, snapshots, snapshotEvery";
            using (w.Block("private void ScanTask(int index)"))
            {
                w.Line("var ws = _active!;");
                w.Line("var act = ws.ByLayer[ws.Layer];");
                w.Line("int sequence = index / ChannelBlocks, firstChannel = index % ChannelBlocks * ChannelBlock;");
                w.Comment("Decoding starts from the saved state and saves the final one; training keeps h every ScanChunk steps.");
                w.Line($"{Sys}.Span<float> initialState = default, snapshots = default;");
                w.Line("int snapshotEvery = ws.Length;");
                using (w.Block("if (ws.State is not null)"))
                {
                    w.Line("snapshots = ws.State.SsmStateOf(ws.Layer, sequence);");
                    w.Line("initialState = snapshots;");
                }
                using (w.Block("else if (act.Snapshots is not null)"))
                {
                    w.Line("int perSequence = ChunksOf(ws.Length) * DState * DInnerStride;");
                    w.Line("snapshots = act.Snapshots.AsSpan(sequence * perSequence, perSequence);");
                    w.Line("snapshotEvery = ScanChunk;");
                }
                Dispatch(w, "Scan", scanArgs);
            }
            w.Line();

            w.Comment("Backward tasks own a channel block across every sequence, so per-channel gradients need no locks.");
            using (w.Block("private void ConvolveBackwardTask(int block)"))
            {
                w.Line("var ws = _active!;");
                w.Line("var back = ws.Backward!;");
                Dispatch(w, "ConvolveBackward", "ws.ByLayer[ws.Layer].XIn, back.UGradient, back.XInGradient, ws.Batch, ws.Length, block * ChannelBlock, _constants, back.Layer");
            }
            w.Line();
            using (w.Block("private void ScanBackwardTask(int block)"))
            {
                w.Line("var ws = _active!;");
                w.Line("var act = ws.ByLayer[ws.Layer];");
                w.Line("var back = ws.Backward!;");
                w.Line("int rows = ws.Batch * ws.Length;");
                var partials = new System.Collections.Generic.List<string>();
                foreach (var (selective, name) in new[] { (s.SelectiveB, "B"), (s.SelectiveC, "C") })
                {
                    if (!selective) continue;
                    w.Comment($"This block's share of ∂loss/∂{name}_t (rows × N), summed over blocks afterwards.");
                    w.Line($"var partial{name} = back.Partial{name}.AsSpan(block * rows * DState, rows * DState);");
                    w.Line($"partial{name}.Clear();");
                    partials.Add($"partial{name}, ");
                }
                w.Line("var chunkStates = back.ChunkStates.AsSpan(block * ChunkStatesPerBlock, ChunkStatesPerBlock);");
                if (s.SelectiveDelta)
                    w.Line("var chunkDecays = back.ChunkDecays.AsSpan(block * ChunkStepsPerBlock, ChunkStepsPerBlock);");
                if (s.SelectiveB)
                    w.Line("var chunkBProducts = back.ChunkBProducts.AsSpan(block * ChunkStepsPerBlock, ChunkStepsPerBlock);");
                if (s.SelectiveC)
                    w.Line("var chunkCProducts = back.ChunkCProducts.AsSpan(block * ChunkStepsPerBlock, ChunkStepsPerBlock);");
                var args = "act.XConv, " + (s.SelectiveDelta ? "act.DtRaw, " : "") + (s.XProjRows > 0 ? "act.XDbl, " : "") +
                           "act.Gate, act.Snapshots, back.YGradient, back.UGradient, back.GateGradient, " +
                           (s.SelectiveDelta ? "back.DtGradient, " : "") + string.Concat(partials) +
                           "chunkStates, " + (s.SelectiveDelta ? "chunkDecays, " : "") +
                           (s.SelectiveB ? "chunkBProducts, " : "") + (s.SelectiveC ? "chunkCProducts, " : "") +
                           "ws.Batch, ws.Length, block * ChannelBlock, _constants, back.Layer";
                Dispatch(w, "ScanBackward", args);
            }
            w.Line();
        }

        /// <summary>A kernel call on the widest native vectors (<c>Kernels.Native</c>, chosen once per process).</summary>
        private static void Dispatch(CodeWriter w, string kernel, string arguments) =>
            w.Line($"Kernels.Native.{kernel}({arguments});");

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
                using (w.Block($"public void Prepare({Runtime}.MambaParameters p, {Runtime}.LayerOffsets o)"))
                {
                    w.Line("var convWeight = p.Span(o.ConvWeight, DInner * ConvKernel);");
                    w.Line("for (int c = 0; c < DInner; c++)");
                    w.Line("    for (int tap = 0; tap < ConvKernel; tap++)");
                    w.Line("        ConvWeights[tap * DInnerStride + c] = convWeight[c * ConvKernel + tap];");
                    if (s.ConvBias) w.Line("p.Span(o.ConvBias, DInner).CopyTo(ConvBiases);");
                    w.Line($"{Cpu}.Simd.Exp(p.Span(o.ALog, DInner * DState), _expALog);");
                    w.Line("for (int c = 0; c < DInner; c++)");
                    w.Line("    for (int n = 0; n < DState; n++)");
                    w.Line("        NegA[n * DInnerStride + c] = -_expALog[c * DState + n];");
                    w.Line("p.Span(o.DtProjBias, DInner).CopyTo(DtBias);");
                    w.Line("p.Span(o.D, DInner).CopyTo(DSkip);");
                    foreach (var (flag, field, offset) in new[] { (s.SelectiveB, "FixedB", "o.B"), (s.SelectiveC, "FixedC", "o.C") })
                    {
                        if (flag) continue;
                        w.Line($"var {field.ToLowerInvariant()} = p.Span({offset}, DInner * DState);");
                        w.Line("for (int c = 0; c < DInner; c++)");
                        w.Line("    for (int n = 0; n < DState; n++)");
                        w.Line($"        {field}[n * DInnerStride + c] = {field.ToLowerInvariant()}[c * DState + n];");
                    }
                }
            }
            w.Line();
        }

        private static void EmitBuffers(CodeWriter w, ModelSpec s)
        {
            w.Comment("── Activation buffers ──────────────────────────────────────────────────────────────────────────");
            w.Summary(
                "One layer's activations for up to a workspace's Rows tokens. Inference shares one instance across layers; training keeps\n" +
                "one per layer, with what the backward pass needs besides: the block input, its inverse RMS, and scan state snapshots.");
            using (w.Block("private sealed class Activations"))
            {
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
                w.Summary("Training: the residual stream entering the layer (rows × D).");
                w.Line("public readonly float[]? ResidualIn;");
                w.Summary("Training: rsqrt(mean(r²) + eps) of each row of ResidualIn.");
                w.Line("public readonly float[]? InverseRms;");
                w.Summary("Training: h after every ScanChunk steps, [sequence][chunk][n][DInnerStride].");
                w.Line("public readonly float[]? Snapshots;");
                w.Line();
                using (w.Block("public Activations(int rows, int snapshotRows)"))
                {
                    w.Line("XIn = new float[checked(rows * DInnerStride)];");
                    w.Line("Gate = new float[rows * DInnerStride];");
                    w.Line("XConv = new float[rows * DInnerStride];");
                    if (s.XProjRows > 0) w.Line("XDbl = new float[checked(rows * XProjRows)];");
                    if (s.SelectiveDelta) w.Line("DtRaw = new float[rows * DInnerStride];");
                    w.Line("Y = new float[rows * DInnerStride];");
                    w.Line("if (snapshotRows == 0) return;");
                    w.Line("ResidualIn = new float[checked(rows * DModel)];");
                    w.Line("InverseRms = new float[rows];");
                    w.Line("Snapshots = new float[checked(snapshotRows * DState * DInnerStride)];");
                }
            }
            w.Line();

            w.Summary("Everything a pass over up to <see cref=\"Rows\"/> tokens writes, reused across calls (grown when a call needs more).");
            using (w.Block("private sealed class Workspace"))
            {
                w.Line("public readonly int Rows;");
                w.Summary("Training: capacity for scan snapshots, in (sequence, chunk) pairs; 0 for inference.");
                w.Line("public readonly int SnapshotRows;");
                w.Summary("Residual stream r (rows × D).");
                w.Line("public readonly float[] Residual;");
                w.Summary("RMSNorm(r): the input of in_proj, and RMSNorm_f(r) at the end (rows × D).");
                w.Line("public readonly float[] Normed;");
                w.Summary("Each layer's activations (all the same instance for inference).");
                w.Line("public readonly Activations[] ByLayer = new Activations[Layers];");
                w.Summary("Training: buffers of the backward pass.");
                w.Line("public readonly BackwardBuffers? Backward;");
                w.Line();
                w.Comment("The pass in progress, read by the kernel tasks.");
                w.Line("public int Batch;");
                w.Line("public int Length;");
                w.Line("public int Layer;");
                w.Line("public DecodeState? State;");
                w.Comment("The running layer's constants, which the forward kernel tasks read.");
                w.Line("public LayerConstants Constants = null!;");
                w.Line();
                using (w.Block("public Workspace(int rows, int snapshotRows)"))
                {
                    w.Line("Rows = rows;");
                    w.Line("SnapshotRows = snapshotRows;");
                    w.Line("Residual = new float[checked(rows * DModel)];");
                    w.Line("Normed = new float[rows * DModel];");
                    w.Line("var shared = snapshotRows == 0 ? new Activations(rows, 0) : null;");
                    w.Line("for (int layer = 0; layer < Layers; layer++)");
                    w.Line("    ByLayer[layer] = shared ?? new Activations(rows, snapshotRows);");
                    w.Line("if (snapshotRows > 0) Backward = new BackwardBuffers(rows);");
                }
            }
            w.Line();
            using (w.Block("private Workspace InferenceWorkspaceFor(int rows)"))
            {
                w.Line("if (_inference is null || _inference.Rows < rows) _inference = new Workspace(rows, 0);");
                w.Line("return _inference;");
            }
            w.Line();
            using (w.Block("private Workspace TrainingWorkspaceFor(int batch, int length)"))
            {
                w.Line("int rows = batch * length, snapshotRows = batch * ChunksOf(length);");
                w.Line("if (_training is null || _training.Rows < rows || _training.SnapshotRows < snapshotRows) _training = new Workspace(rows, snapshotRows);");
                w.Line("return _training;");
            }
            w.Line();
            EmitBackwardBuffers(w, s);
        }
    }
}
