using System.Linq;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// Writes the SIMD kernels, once, generic over the vector width: the causal convolution and the selective scan, forward and backward.
    /// Each kernel handles one block of channels, vectorised across channels; the taps K are unrolled, the loops over
    /// the states N have the constant bound DState, and the selectivity flags pick which quantities are per-token and
    /// which are hoisted out of the time loop.
    /// </summary>
    internal static class KernelEmitter
    {
        private const string Sys = ModelEmitter.Sys;
        private const string Cpu = ModelEmitter.Cpu;
        private const string Unsafe = "global::System.Runtime.CompilerServices.Unsafe";
        private const string Marshal = "global::System.Runtime.InteropServices.MemoryMarshal";
        private const string Intrinsics = "global::System.Runtime.Intrinsics";

        public static void Emit(CodeWriter w, ModelSpec s)
        {
            w.Comment("── CPU kernels, written once for every vector width ──────────────────────────────────────────────────");
            w.Summary(
                "The convolution and scan kernels, forward and backward. <see cref=\"Native\"/>, chosen once per process, runs them on the\n" +
                "widest vectors the CPU has: 512 bits (AVX-512), else 256 (AVX2), else 128 (SSE, NEON, or the runtime's portable\n" +
                "fallback on a CPU without vector hardware, where narrower vectors waste the least).");
            using (w.Block("private abstract class Kernels"))
            {
                w.Line($"public static readonly Kernels Native =");
                w.Line($"    {Intrinsics}.Vector512.IsHardwareAccelerated ? new Kernels<{Intrinsics}.Vector512<float>, {Cpu}.Width512>() :");
                w.Line($"    {Intrinsics}.Vector256.IsHardwareAccelerated ? new Kernels<{Intrinsics}.Vector256<float>, {Cpu}.Width256>() :");
                w.Line($"    new Kernels<{Intrinsics}.Vector128<float>, {Cpu}.Width128>();");
                w.Line();
                w.Line($"public abstract void ConvolveSilu({ConvolveParameters(s)});");
                w.Line($"public abstract void Scan({ScanParameters(s)});");
                w.Line($"public abstract void ConvolveBackward({ConvolveBackwardParameters});");
                w.Line($"public abstract void ScanBackward({ScanBackwardParameters(s)});");
            }
            w.Line();
            w.Summary(
                "The kernels on vectors of type TVector, whose operations TWidth supplies; the JIT compiles a copy per width with every\n" +
                "operation inlined. Each kernel handles one block of channels, one vector of channels at a time, checks its buffers\n" +
                "once, then reads them without bounds checks.");
            using (w.Block($"private sealed class Kernels<TVector, TWidth> : Kernels where TVector : unmanaged where TWidth : struct, {Cpu}.IVectorWidth<TVector>"))
            {
                EmitPrimitives(w, s);
                EmitConvolution(w, s);
                EmitScan(w, s);
                EmitConvolutionBackward(w, s);
                EmitScanBackward(w, s);
            }
            w.Line();
        }

        // Kernels are compiled fully optimised at once: they are hot from the first call, and tier-0 SIMD code is slow.
        private const string Optimize = "[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]";
        private const string Inline = "[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]";

        /// <summary>
        /// One-line primitives the kernels are written in, each a call into TWidth or MambaGen.Cpu.Simd, so the kernel bodies
        /// read as formulas. The JIT inlines them.
        /// </summary>
        private static void EmitPrimitives(CodeWriter w, ModelSpec s)
        {
            const string V = "TVector";
            const string Simd = Cpu + ".Simd<TVector, TWidth>";
            w.Comment("Primitives; the kernels below use only these. Width is a JIT-time constant.");
            w.Line("private static int Width => TWidth.Count;");
            w.Line($"private static {V} Zero => TWidth.Zero;");
            w.Line($"private static {V} One => TWidth.One;");
            void Primitive(string signature, string body)
            {
                w.Line(Inline);
                w.Line($"private static {signature} => {body};");
            }
            Primitive($"{V} Load(ref float source, nuint index)", "TWidth.Load(ref source, index)");
            Primitive($"void Store({V} value, ref float target, nuint index)", "TWidth.Store(value, ref target, index)");
            w.Comment("Bounds-checked access to one vector of channels, for the per-channel constants and the state buffers.");
            Primitive($"{V} Get({Sys}.ReadOnlySpan<float> source, int index)", $"TWidth.Load(ref {Marshal}.GetReference(source.Slice(index, Width)), 0)");
            Primitive($"void Put({V} value, {Sys}.Span<float> target, int index)", $"TWidth.Store(value, ref {Marshal}.GetReference(target.Slice(index, Width)), 0)");
            bool perTokenBOrC = s.SelectiveB || s.SelectiveC;
            if (perTokenBOrC) Primitive($"{V} Broadcast(float value)", "TWidth.Create(value)");
            Primitive($"{V} Add({V} a, {V} b)", "TWidth.Add(a, b)");
            Primitive($"{V} Sub({V} a, {V} b)", "TWidth.Subtract(a, b)");
            Primitive($"{V} Mul({V} a, {V} b)", "TWidth.Multiply(a, b)");
            w.Comment("a·b + addend, fused where the CPU has FMA.");
            Primitive($"{V} MulAdd({V} a, {V} b, {V} addend)", "TWidth.MultiplyAdd(a, b, addend)");
            Primitive($"{V} Exp({V} value)", $"{Simd}.Exp(value)");
            Primitive($"{V} Softplus({V} value)", $"{Simd}.Softplus(value)");
            Primitive($"{V} Sigmoid({V} value)", $"{Simd}.Sigmoid(value)");
            Primitive($"{V} Silu({V} value)", $"{Simd}.Silu(value)");
            w.Comment("d/dv [v·sigmoid(v)] = sigmoid(v)·(1 + v·(1 − sigmoid(v))), given sigmoid(v).");
            Primitive($"{V} SiluSlope({V} value, {V} sigmoid)", "Mul(sigmoid, Add(One, Mul(value, Sub(One, sigmoid))))");
            if (perTokenBOrC)
                Primitive($"void AddLaneSums({Sys}.Span<float> vectors, int count, {Sys}.Span<float> sums)",
                    $"{Simd}.AddLaneSums({Marshal}.Cast<float, {V}>(vectors.Slice(0, count * Width)), sums)");
            Primitive($"float Lane({V} value, int lane)", "TWidth.GetElement(value, lane)");
            w.Line();
        }

        private static string ConvolveParameters(ModelSpec s) =>
            $"{Sys}.ReadOnlySpan<float> xIn, {Sys}.Span<float> xConv, int firstRow, int length, int firstChannel, LayerConstants constants" +
            (s.ConvKernel > 1 ? $", {Sys}.Span<float> history" : "");

        private const string ConvolveBackwardParameters =
            Sys + ".ReadOnlySpan<float> xIn, " + Sys + ".ReadOnlySpan<float> uGradient, " + Sys + ".Span<float> xInGradient, int batch, int length, int firstChannel, LayerConstants constants, LayerGradients gradients";

        private static string ScanParameters(ModelSpec s) =>
            $"{ScanInputParameters(s)}{Sys}.Span<float> y, int firstRow, int length, int firstChannel, LayerConstants constants, {Sys}.ReadOnlySpan<float> initialState, {Sys}.Span<float> snapshots, int snapshotEvery";

        private static string ScanBackwardParameters(ModelSpec s) =>
            ScanInputParameters(s) +
            $"{Sys}.ReadOnlySpan<float> snapshots, {Sys}.ReadOnlySpan<float> outputGradient, {Sys}.Span<float> uGradient, {Sys}.Span<float> gateGradient, " +
            (s.SelectiveDelta ? $"{Sys}.Span<float> dtGradient, " : "") +
            (s.SelectiveB ? $"{Sys}.Span<float> partialB, " : "") +
            (s.SelectiveC ? $"{Sys}.Span<float> partialC, " : "") +
            $"{Sys}.Span<float> chunkStates, " + (s.SelectiveDelta ? $"{Sys}.Span<float> chunkDecays, " : "") +
            (s.SelectiveB ? $"{Sys}.Span<float> chunkBProducts, " : "") + (s.SelectiveC ? $"{Sys}.Span<float> chunkCProducts, " : "") +
            "int batch, int length, int firstChannel, LayerConstants constants, LayerGradients gradients";

        /// <summary>Σ_k w_k·operand_k (+ b), oldest tap first, in the one order forward and backward share.</summary>
        private static void ConvSum(CodeWriter w, ModelSpec s, string target, System.Func<int, string> operand)
        {
            string? sum = s.ConvBias ? "bias" : null;
            for (int tap = 0; tap < s.ConvKernel; tap++)
            {
                string next = sum is null ? $"Mul(tap{tap}, {operand(tap)})" : $"MulAdd(tap{tap}, {operand(tap)}, {sum})";
                w.Line(tap == 0 ? $"var {target} = {next};" : $"{target} = {next};");
                sum = target;
            }
        }

        private static void LoadTaps(CodeWriter w, ModelSpec s)
        {
            for (int tap = 0; tap < s.ConvKernel; tap++)
                w.Line($"var tap{tap} = Get(constants.ConvWeights, {tap} * DInnerStride + c);");
            if (s.ConvBias) w.Line("var bias = Get(constants.ConvBiases, c);");
        }

        private static void EmitConvolution(CodeWriter w, ModelSpec s)
        {
            int k = s.ConvKernel;
            string taps = k == 1 ? "w[c, 0]·x[t, c]" : $"Σ_k w[c, k]·x[t − {k - 1} + k, c]";
            w.Summary(
                $"x_conv[t, c] = SiLU({(s.ConvBias ? "b[c] + " : "")}{taps}) for one sequence (rows firstRow.., length of them) and channels\n" +
                $"[firstChannel, firstChannel + ChannelBlock): the causal depthwise convolution, K = {k} taps unrolled" +
                (k > 1
                    ? $".\nThe {k - 1} previous inputs slide through registers, zero before the sequence starts; a non-empty\n" +
                      $"<paramref name=\"history\"/> ({k - 1} rows of DInnerStride, oldest first) seeds them and receives their final values."
                    : " (a single tap: no history)."));
            w.Line(Optimize);
            using (w.Block($"public override void ConvolveSilu({ConvolveParameters(s)})"))
            {
                w.Line($"{Cpu}.Bounds.Require(xIn.Length, (firstRow + length) * DInnerStride, nameof(xIn));");
                w.Line($"{Cpu}.Bounds.Require(xConv.Length, (firstRow + length) * DInnerStride, nameof(xConv));");
                w.Line($"ref float input = ref {Marshal}.GetReference(xIn);");
                w.Line($"ref float output = ref {Marshal}.GetReference(xConv);");
                using (w.Block("for (int c = firstChannel; c < firstChannel + ChannelBlock; c += Width)"))
                {
                    LoadTaps(w, s);
                    for (int i = 0; i < k - 1; i++)
                        w.Line($"var past{i} = history.IsEmpty ? Zero : Get(history, {i} * DInnerStride + c);");
                    using (w.Block("for (int t = 0; t < length; t++)"))
                    {
                        w.Line("nuint at = (nuint)((firstRow + t) * DInnerStride + c);");
                        w.Line("var x = Load(ref input, at);");
                        ConvSum(w, s, "sum", tap => tap == k - 1 ? "x" : $"past{tap}");
                        w.Line("Store(Silu(sum), ref output, at);");
                        if (k > 1)
                        {
                            var shifts = new System.Collections.Generic.List<string>();
                            for (int i = 0; i < k - 1; i++) shifts.Add($"past{i} = {(i == k - 2 ? "x" : $"past{i + 1}")};");
                            w.Line(string.Join(" ", shifts));
                        }
                    }
                    if (k > 1)
                    {
                        using (w.Block("if (!history.IsEmpty)"))
                            for (int i = 0; i < k - 1; i++)
                                w.Line($"Put(past{i}, history, {i} * DInnerStride + c);");
                    }
                }
            }
            w.Line();
        }

        private static void EmitConvolutionBackward(CodeWriter w, ModelSpec s)
        {
            int k = s.ConvKernel;
            w.Summary(
                "Backward of ConvolveSilu for one block of channels over every sequence, walking time backwards. With\n" +
                "pre[t] recomputed from the inputs and ∂pre[t] = ∂u[t]·SiLU′(pre[t]):\n" +
                $"  ∂x[t] = Σ_k w[k]·∂pre[t + {k - 1} − k] (zero past the end), ∂w[k] = Σ_t ∂pre[t]·x[t − {k - 1} + k]" + (s.ConvBias ? ", ∂b = Σ_t ∂pre[t]." : ".") + "\n" +
                "The K inputs and the K − 1 later ∂pre values slide through registers; the weight gradients of the block's channels go\n" +
                "to <paramref name=\"gradients\"/> (padding lanes dropped).");
            w.Line(Optimize);
            using (w.Block($"public override void ConvolveBackward({ConvolveBackwardParameters})"))
            {
                w.Line("int rows = batch * length;");
                foreach (var name in new[] { "xIn", "uGradient", "xInGradient" })
                    w.Line($"{Cpu}.Bounds.Require({name}.Length, rows * DInnerStride, nameof({name}));");
                w.Line($"ref float input = ref {Marshal}.GetReference(xIn);");
                w.Line($"ref float du = ref {Marshal}.GetReference(uGradient);");
                w.Line($"ref float dx = ref {Marshal}.GetReference(xInGradient);");
                using (w.Block("for (int c = firstChannel; c < firstChannel + ChannelBlock; c += Width)"))
                {
                    LoadTaps(w, s);
                    w.Line(string.Join(" ", System.Linq.Enumerable.Range(0, k).Select(tap => $"var tapGradient{tap} = Zero;")));
                    if (s.ConvBias) w.Line("var biasGradient = Zero;");
                    using (w.Block("for (int sequence = 0; sequence < batch; sequence++)"))
                    {
                        w.Line("int firstRow = sequence * length;");
                        w.Comment($"x[t − {k - 1}] .. x[t] for t = length − 1, oldest first, zero before the sequence starts.");
                        for (int i = 0; i < k; i++)
                            w.Line($"var x{i} = length - {k - i} >= 0 ? Load(ref input, (nuint)((firstRow + length - {k - i}) * DInnerStride + c)) : Zero;");
                        if (k > 1)
                        {
                            w.Comment($"∂pre[t + 1] .. ∂pre[t + {k - 1}], zero past the end.");
                            w.Line(string.Join(" ", System.Linq.Enumerable.Range(1, k - 1).Select(i => $"var later{i} = Zero;")));
                        }
                        using (w.Block("for (int t = length - 1; t >= 0; t--)"))
                        {
                            w.Line("nuint at = (nuint)((firstRow + t) * DInnerStride + c);");
                            ConvSum(w, s, "pre", tap => $"x{tap}");
                            w.Line("var sigmoid = Sigmoid(pre);");
                            w.Line("var preGradient = Mul(Load(ref du, at), SiluSlope(pre, sigmoid));");
                            w.Line($"var inputGradient = Mul(tap{k - 1}, preGradient);");
                            for (int i = 1; i < k; i++)
                                w.Line($"inputGradient = MulAdd(tap{k - 1 - i}, later{i}, inputGradient);");
                            w.Line("Store(inputGradient, ref dx, at);");
                            for (int tap = 0; tap < k; tap++)
                                w.Line($"tapGradient{tap} = MulAdd(preGradient, x{tap}, tapGradient{tap});");
                            if (s.ConvBias) w.Line("biasGradient = Add(biasGradient, preGradient);");
                            if (k > 1)
                            {
                                var shifts = new System.Collections.Generic.List<string>();
                                for (int i = k - 1; i >= 1; i--) shifts.Add($"later{i} = {(i == 1 ? "preGradient" : $"later{i - 1}")};");
                                w.Line(string.Join(" ", shifts));
                                var xs = new System.Collections.Generic.List<string>();
                                for (int i = k - 1; i >= 1; i--) xs.Add($"x{i} = x{i - 1};");
                                w.Line(string.Join(" ", xs));
                            }
                            w.Line($"x0 = t - {k} >= 0 ? Load(ref input, (nuint)((firstRow + t - {k}) * DInnerStride + c)) : Zero;");
                        }
                    }
                    using (w.Block("for (int lane = 0; lane < Width && c + lane < DInner; lane++)"))
                    {
                        for (int tap = 0; tap < k; tap++)
                            w.Line($"gradients.ConvWeights[(c + lane) * ConvKernel + {tap}] = Lane(tapGradient{tap}, lane);");
                        if (s.ConvBias) w.Line("gradients.ConvBiases[c + lane] = Lane(biasGradient, lane);");
                    }
                }
            }
            w.Line();
        }

        // ---- Scan: text shared by the forward kernel and the backward kernel's recomputation ----

        private static string DecayOf(ModelSpec s) => s.SelectiveDelta ? "Exp(Mul(delta, a[n]))" : "decay[n]";

        /// <summary>The state's input term Δ·B·x at step t, grouped exactly as in the forward kernel.</summary>
        private static string InputOf(ModelSpec s) =>
            s.SelectiveB ? $"Mul(deltaX, Broadcast({Unsafe}.Add(ref bRow, n)))" : s.SelectiveDelta ? "Mul(deltaX, b[n])" : "Mul(deltaB[n], x)";

        private static string BOf(ModelSpec s) => s.SelectiveB ? $"Broadcast({Unsafe}.Add(ref bRow, n))" : "b[n]";

        private static string COf(ModelSpec s) => s.SelectiveC ? $"Broadcast({Unsafe}.Add(ref cRow, n))" : "c[n]";

        /// <summary>Stack buffers of per-n vectors fixed for a whole sequence.</summary>
        private static void DeclareFixedVectors(CodeWriter w, ModelSpec s, bool backward)
        {
            void Vectors(string name) => w.Line($"{Sys}.Span<TVector> {name} = stackalloc TVector[DState];");
            if (s.SelectiveDelta || backward) Vectors("a");
            if (!s.SelectiveDelta) Vectors("decay");
            if (!s.SelectiveB && (s.SelectiveDelta || backward)) Vectors("b");
            if (!s.SelectiveB && !s.SelectiveDelta) Vectors("deltaB");
            if (!s.SelectiveC) Vectors("c");
        }

        /// <summary>Loads the per-channel constants of one vector of channels, and the per-n vectors, inside an n loop.</summary>
        private static void LoadFixedVectors(CodeWriter w, ModelSpec s, bool backward)
        {
            if (s.SelectiveDelta || backward) w.Line("a[n] = Get(constants.NegA, n * DInnerStride + channel);");
            if (!s.SelectiveDelta) w.Line(backward ? "decay[n] = Exp(Mul(delta, a[n]));" : "decay[n] = Exp(Mul(delta, Get(constants.NegA, n * DInnerStride + channel)));");
            if (!s.SelectiveB)
            {
                if (s.SelectiveDelta || backward) w.Line("b[n] = Get(constants.FixedB, n * DInnerStride + channel);");
                if (!s.SelectiveDelta) w.Line(backward ? "deltaB[n] = Mul(delta, b[n]);" : "deltaB[n] = Mul(delta, Get(constants.FixedB, n * DInnerStride + channel));");
            }
            if (!s.SelectiveC) w.Line("c[n] = Get(constants.FixedC, n * DInnerStride + channel);");
        }

        /// <summary>Per-step values: x, Δ, Δ·x and where B_t, C_t sit in x_dbl.</summary>
        private static void StepValues(CodeWriter w, ModelSpec s, bool keepDtInput)
        {
            w.Line("int row = firstRow + t;");
            w.Line("nuint at = (nuint)(row * DInnerStride + channel);");
            w.Line("var x = Load(ref u, at);");
            if (s.SelectiveDelta)
            {
                if (keepDtInput)
                {
                    w.Line("var dtInput = Add(Load(ref dt, at), dtBias);");
                    w.Line("var delta = Softplus(dtInput);");
                }
                else w.Line("var delta = Softplus(Add(Load(ref dt, at), dtBias));");
            }
            if (s.SelectiveB || s.SelectiveDelta || keepDtInput) w.Line("var deltaX = Mul(delta, x);");
            if (s.SelectiveB) w.Line($"ref float bRow = ref {Unsafe}.Add(ref projected, row * XProjRows + XProjB);");
            if (s.SelectiveC) w.Line($"ref float cRow = ref {Unsafe}.Add(ref projected, row * XProjRows + XProjC);");
        }

        private static string ScanInputParameters(ModelSpec s) =>
            $"{Sys}.ReadOnlySpan<float> xConv, " +
            (s.SelectiveDelta ? $"{Sys}.ReadOnlySpan<float> dtRaw, " : "") +
            (s.XProjRows > 0 ? $"{Sys}.ReadOnlySpan<float> xDbl, " : "") +
            $"{Sys}.ReadOnlySpan<float> gate, ";

        private static void ScanInputReferences(CodeWriter w, ModelSpec s, string rowsEnd)
        {
            foreach (var name in new[] { "xConv", "gate" })
                w.Line($"{Cpu}.Bounds.Require({name}.Length, {rowsEnd} * DInnerStride, nameof({name}));");
            if (s.SelectiveDelta) w.Line($"{Cpu}.Bounds.Require(dtRaw.Length, {rowsEnd} * DInnerStride, nameof(dtRaw));");
            if (s.XProjRows > 0) w.Line($"{Cpu}.Bounds.Require(xDbl.Length, {rowsEnd} * XProjRows, nameof(xDbl));");
            w.Line($"ref float u = ref {Marshal}.GetReference(xConv);");
            if (s.SelectiveDelta) w.Line($"ref float dt = ref {Marshal}.GetReference(dtRaw);");
            if (s.XProjRows > 0) w.Line($"ref float projected = ref {Marshal}.GetReference(xDbl);");
            w.Line($"ref float z = ref {Marshal}.GetReference(gate);");
        }

        private static void EmitScan(CodeWriter w, ModelSpec s)
        {
            string deltaDoc = s.SelectiveDelta ? "Δ = softplus(dt[t] + b_dt)" : "Δ = softplus(b_dt) (constant: exp(Δ·A) is computed once, outside the time loop)";
            string bDoc = s.SelectiveB ? "B_t[n] (x_dbl column XProjB + n, broadcast across channels)" : "B[c, n] (a learned parameter)";
            string cDoc = s.SelectiveC ? "C_t[n] (x_dbl column XProjC + n)" : "C[c, n] (a learned parameter)";
            w.Summary(
                "The selective scan for one sequence and one block of channels, vectorised across channels:\n" +
                $"  {deltaDoc};\n" +
                $"  h[n] = exp(Δ·A[n])·h[n] + Δ·x·B, with B = {bDoc};\n" +
                $"  y = Σ_n C·h[n] + D·x, with C = {cDoc}; out = y ⊙ SiLU(z).\n" +
                "The N = DState states of each channel live in a stack buffer, fp32; the n loop has the constant bound DState.\n" +
                "<paramref name=\"initialState\"/> (empty: h = 0) holds h as [n][DInnerStride]. After every <paramref name=\"snapshotEvery\"/>\n" +
                "steps and at the end, h is written to <paramref name=\"snapshots\"/> (unless empty) at [chunk][n][DInnerStride].");
            w.Line(Optimize);
            using (w.Block($"public override void Scan({ScanParameters(s)})"))
            {
                w.Line("int rowsEnd = firstRow + length;");
                ScanInputReferences(w, s, "rowsEnd");
                w.Line($"{Cpu}.Bounds.Require(y.Length, rowsEnd * DInnerStride, nameof(y));");
                w.Line("if (snapshotEvery < 1) throw new global::System.ArgumentOutOfRangeException(nameof(snapshotEvery));");
                w.Line($"ref float output = ref {Marshal}.GetReference(y);");
                w.Line($"{Sys}.Span<TVector> h = stackalloc TVector[DState];");
                DeclareFixedVectors(w, s, backward: false);
                using (w.Block("for (int channel = firstChannel; channel < firstChannel + ChannelBlock; channel += Width)"))
                {
                    w.Line("var dSkip = Get(constants.DSkip, channel);");
                    w.Line("var dtBias = Get(constants.DtBias, channel);");
                    if (!s.SelectiveDelta) w.Line("var delta = Softplus(dtBias);");
                    using (w.Block("for (int n = 0; n < DState; n++)"))
                    {
                        w.Line("h[n] = initialState.IsEmpty ? Zero : Get(initialState, n * DInnerStride + channel);");
                        LoadFixedVectors(w, s, backward: false);
                    }
                    using (w.Block("for (int chunkStart = 0; chunkStart < length; chunkStart += snapshotEvery)"))
                    {
                        w.Line("int chunkEnd = global::System.Math.Min(length, chunkStart + snapshotEvery);");
                        using (w.Block("for (int t = chunkStart; t < chunkEnd; t++)"))
                        {
                            StepValues(w, s, keepDtInput: false);
                            w.Line("var sum = Mul(dSkip, x);");
                            using (w.Block("for (int n = 0; n < DState; n++)"))
                            {
                                w.Line($"h[n] = MulAdd({DecayOf(s)}, h[n], {InputOf(s)});");
                                w.Line($"sum = MulAdd({COf(s)}, h[n], sum);");
                            }
                            w.Line("Store(Mul(sum, Silu(Load(ref z, at))), ref output, at);");
                        }
                        using (w.Block("if (!snapshots.IsEmpty)"))
                        {
                            w.Line("int chunk = chunkStart / snapshotEvery;");
                            w.Line("for (int n = 0; n < DState; n++)");
                            w.Line("    Put(h[n], snapshots, (chunk * DState + n) * DInnerStride + channel);");
                        }
                    }
                }
            }
            w.Line();
        }

        private static void EmitScanBackward(CodeWriter w, ModelSpec s)
        {
            w.Summary(
                "Backward of Scan for one block of channels over every sequence. Per sequence it walks the chunks from last to first:\n" +
                "h is recomputed through the chunk from the snapshot before it (chunkStates: h before and after every step" +
                (s.SelectiveDelta ? ", chunkDecays: exp(Δ·A)" : "") + "),\n" +
                "then the chunk is walked backwards with g[n] = ∂loss/∂h[t + 1]·exp(Δ[t + 1]·A[n]) carried between steps:\n" +
                "  ∂y = ∂out·SiLU(z), ∂z = ∂out·y·SiLU′(z), ∂h[n] = g[n] + ∂y·C[n], q[n] = ∂h[n]·exp(Δ·A[n])·h[t − 1][n],\n" +
                "  ∂Δ = Σ_n (A[n]·q[n] + ∂h[n]·B[n]·x), ∂A[n] += q[n]·Δ, ∂B[n] += ∂h[n]·Δ·x, ∂C[n] += ∂y·h[t][n],\n" +
                "  ∂x = ∂y·D + Σ_n ∂h[n]·Δ·B[n], ∂D += ∂y·x, g[n] = ∂h[n]·exp(Δ·A[n])" +
                (s.SelectiveDelta ? ", ∂dt = ∂Δ·sigmoid(dt + b_dt)." : "; Δ = softplus(b_dt) gathers ∂b_dt = sigmoid(b_dt)·Σ ∂Δ.") + "\n" +
                (s.SelectiveB || s.SelectiveC ? "Input-dependent B_t/C_t keep the chunk's per-channel products (chunkBProducts/chunkCProducts) and sum them across\nthe block's channels into partial rows (rows × N) once per chunk, outside the step loop.\n" : "") +
                "Per-channel gradients (A_log = ∂A·A, since A = −exp(A_log); D; the dt bias" + (s.SelectiveB && s.SelectiveC ? "" : "; the fixed B/C") +
                ") go to <paramref name=\"gradients\"/>.");
            w.Line(Optimize);
            using (w.Block($"public override void ScanBackward({ScanBackwardParameters(s)})"))
            {
                w.Line("int rows = batch * length, chunks = ChunksOf(length);");
                ScanInputReferences(w, s, "rows");
                w.Line($"{Cpu}.Bounds.Require(snapshots.Length, batch * chunks * DState * DInnerStride, nameof(snapshots));");
                foreach (var name in new[] { "outputGradient", "uGradient", "gateGradient" })
                    w.Line($"{Cpu}.Bounds.Require({name}.Length, rows * DInnerStride, nameof({name}));");
                if (s.SelectiveDelta) w.Line($"{Cpu}.Bounds.Require(dtGradient.Length, rows * DInnerStride, nameof(dtGradient));");
                if (s.SelectiveB) w.Line($"{Cpu}.Bounds.Require(partialB.Length, rows * DState, nameof(partialB));");
                if (s.SelectiveC) w.Line($"{Cpu}.Bounds.Require(partialC.Length, rows * DState, nameof(partialC));");
                w.Line($"{Cpu}.Bounds.Require(chunkStates.Length, (ScanChunk + 1) * DState * Width, nameof(chunkStates));");
                if (s.SelectiveDelta) w.Line($"{Cpu}.Bounds.Require(chunkDecays.Length, ScanChunk * DState * Width, nameof(chunkDecays));");
                if (s.SelectiveB) w.Line($"{Cpu}.Bounds.Require(chunkBProducts.Length, ScanChunk * DState * Width, nameof(chunkBProducts));");
                if (s.SelectiveC) w.Line($"{Cpu}.Bounds.Require(chunkCProducts.Length, ScanChunk * DState * Width, nameof(chunkCProducts));");
                w.Line($"ref float dOut = ref {Marshal}.GetReference(outputGradient);");
                w.Line($"ref float du = ref {Marshal}.GetReference(uGradient);");
                w.Line($"ref float dz = ref {Marshal}.GetReference(gateGradient);");
                if (s.SelectiveDelta) w.Line($"ref float dDt = ref {Marshal}.GetReference(dtGradient);");
                w.Line($"ref float states = ref {Marshal}.GetReference(chunkStates);");
                if (s.SelectiveDelta) w.Line($"ref float decays = ref {Marshal}.GetReference(chunkDecays);");
                if (s.SelectiveB) w.Line($"ref float bProducts = ref {Marshal}.GetReference(chunkBProducts);");
                if (s.SelectiveC) w.Line($"ref float cProducts = ref {Marshal}.GetReference(chunkCProducts);");
                w.Line($"{Sys}.Span<TVector> h = stackalloc TVector[DState];");
                w.Line($"{Sys}.Span<TVector> carry = stackalloc TVector[DState];");
                w.Line($"{Sys}.Span<TVector> aGradient = stackalloc TVector[DState];");
                if (!s.SelectiveB) w.Line($"{Sys}.Span<TVector> bGradient = stackalloc TVector[DState];");
                if (!s.SelectiveC) w.Line($"{Sys}.Span<TVector> cGradient = stackalloc TVector[DState];");
                DeclareFixedVectors(w, s, backward: true);
                w.Line("int stepStride = DState * Width;");
                using (w.Block("for (int channel = firstChannel; channel < firstChannel + ChannelBlock; channel += Width)"))
                {
                    w.Line("var dSkip = Get(constants.DSkip, channel);");
                    w.Line("var dtBias = Get(constants.DtBias, channel);");
                    if (!s.SelectiveDelta) w.Line("var delta = Softplus(dtBias);");
                    using (w.Block("for (int n = 0; n < DState; n++)"))
                    {
                        LoadFixedVectors(w, s, backward: true);
                        w.Line("aGradient[n] = Zero;");
                        if (!s.SelectiveB) w.Line("bGradient[n] = Zero;");
                        if (!s.SelectiveC) w.Line("cGradient[n] = Zero;");
                    }
                    w.Line("var dSkipGradient = Zero;");
                    w.Line(s.SelectiveDelta ? "var dtBiasGradient = Zero;" : "var deltaGradient = Zero;");
                    using (w.Block("for (int sequence = 0; sequence < batch; sequence++)"))
                    {
                        w.Line("int firstRow = sequence * length;");
                        w.Line("for (int n = 0; n < DState; n++) carry[n] = Zero;");
                        using (w.Block("for (int chunk = chunks - 1; chunk >= 0; chunk--)"))
                        {
                            w.Line("int chunkStart = chunk * ScanChunk, chunkEnd = global::System.Math.Min(length, chunkStart + ScanChunk);");
                            w.Comment("Recompute h through the chunk, from the state the forward pass kept before it (zero for the first).");
                            using (w.Block("for (int n = 0; n < DState; n++)"))
                            {
                                w.Line("h[n] = chunk == 0 ? Zero : Get(snapshots, ((sequence * chunks + chunk - 1) * DState + n) * DInnerStride + channel);");
                                w.Line("Store(h[n], ref states, (nuint)(n * Width));");
                            }
                            using (w.Block("for (int t = chunkStart; t < chunkEnd; t++)"))
                            {
                                StepValues(w, s, keepDtInput: false);
                                w.Line("nuint slot = (nuint)((t - chunkStart) * stepStride);");
                                using (w.Block("for (int n = 0; n < DState; n++)"))
                                {
                                    if (s.SelectiveDelta)
                                    {
                                        w.Line("var decayN = Exp(Mul(delta, a[n]));");
                                        w.Line("Store(decayN, ref decays, slot + (nuint)(n * Width));");
                                        w.Line($"h[n] = MulAdd(decayN, h[n], {InputOf(s)});");
                                    }
                                    else w.Line($"h[n] = MulAdd(decay[n], h[n], {InputOf(s)});");
                                    w.Line("Store(h[n], ref states, slot + (nuint)(stepStride + n * Width));");
                                }
                            }
                            w.Comment("Walk the chunk backwards.");
                            using (w.Block("for (int t = chunkEnd - 1; t >= chunkStart; t--)"))
                            {
                                StepValues(w, s, keepDtInput: true);
                                w.Line("nuint slot = (nuint)((t - chunkStart) * stepStride);");
                                w.Line("var gateValue = Load(ref z, at);");
                                w.Line("var gateSigmoid = Sigmoid(gateValue);");
                                w.Line("var outGradient = Load(ref dOut, at);");
                                w.Line("var yGradient = Mul(outGradient, Mul(gateValue, gateSigmoid));");
                                w.Line("var y = Mul(dSkip, x);");
                                w.Line("var xGradient = Mul(yGradient, dSkip);");
                                w.Line("dSkipGradient = MulAdd(yGradient, x, dSkipGradient);");
                                w.Line("var deltaGradientT = Zero;");
                                using (w.Block("for (int n = 0; n < DState; n++)"))
                                {
                                    w.Line("var hBefore = Load(ref states, slot + (nuint)(n * Width));");
                                    w.Line("var hNow = Load(ref states, slot + (nuint)(stepStride + n * Width));");
                                    w.Line(s.SelectiveDelta ? "var decayN = Load(ref decays, slot + (nuint)(n * Width));" : "var decayN = decay[n];");
                                    w.Line($"var bN = {BOf(s)};");
                                    w.Line($"var cN = {COf(s)};");
                                    w.Line("y = MulAdd(cN, hNow, y);");
                                    w.Line(s.SelectiveC ? "Store(Mul(yGradient, hNow), ref cProducts, slot + (nuint)(n * Width));" : "cGradient[n] = MulAdd(yGradient, hNow, cGradient[n]);");
                                    w.Line("var hGradient = MulAdd(yGradient, cN, carry[n]);");
                                    w.Line("var q = Mul(Mul(hGradient, decayN), hBefore);");
                                    w.Line("deltaGradientT = MulAdd(a[n], q, deltaGradientT);");
                                    w.Line("deltaGradientT = MulAdd(Mul(hGradient, bN), x, deltaGradientT);");
                                    w.Line("aGradient[n] = MulAdd(q, delta, aGradient[n]);");
                                    w.Line(s.SelectiveB ? "Store(Mul(hGradient, deltaX), ref bProducts, slot + (nuint)(n * Width));" : "bGradient[n] = MulAdd(hGradient, deltaX, bGradient[n]);");
                                    w.Line("xGradient = MulAdd(Mul(hGradient, delta), bN, xGradient);");
                                    w.Line("carry[n] = Mul(hGradient, decayN);");
                                }
                                w.Line("Store(xGradient, ref du, at);");
                                w.Line("Store(Mul(Mul(outGradient, y), SiluSlope(gateValue, gateSigmoid)), ref dz, at);");
                                if (s.SelectiveDelta)
                                {
                                    w.Comment("softplus′ = sigmoid (and 1 above the threshold, where sigmoid is 1 in fp32 too).");
                                    w.Line("var dtGradientT = Mul(deltaGradientT, Sigmoid(dtInput));");
                                    w.Line("Store(dtGradientT, ref dDt, at);");
                                    w.Line("dtBiasGradient = Add(dtBiasGradient, dtGradientT);");
                                }
                                else w.Line("deltaGradient = Add(deltaGradient, deltaGradientT);");
                            }
                            if (s.SelectiveB || s.SelectiveC)
                            {
                                w.Comment("∂B_t, ∂C_t of the chunk's rows: each product summed across this vector's channels into the block's share.");
                                w.Line("int chunkRows = chunkEnd - chunkStart;");
                                if (s.SelectiveB) w.Line("AddLaneSums(chunkBProducts, chunkRows * DState, partialB.Slice((firstRow + chunkStart) * DState, chunkRows * DState));");
                                if (s.SelectiveC) w.Line("AddLaneSums(chunkCProducts, chunkRows * DState, partialC.Slice((firstRow + chunkStart) * DState, chunkRows * DState));");
                            }
                        }
                    }
                    if (!s.SelectiveDelta) w.Line("var dtBiasGradient = Mul(deltaGradient, Sigmoid(dtBias));");
                    w.Comment("This vector's per-channel gradients; padding lanes are dropped.");
                    using (w.Block("for (int lane = 0; lane < Width && channel + lane < DInner; lane++)"))
                    {
                        w.Line("int target = channel + lane;");
                        w.Line("gradients.DSkip[target] = Lane(dSkipGradient, lane);");
                        w.Line("gradients.DtBias[target] = Lane(dtBiasGradient, lane);");
                        using (w.Block("for (int n = 0; n < DState; n++)"))
                        {
                            w.Line("gradients.ALog[target * DState + n] = Lane(Mul(aGradient[n], a[n]), lane);");
                            if (!s.SelectiveB) w.Line("gradients.FixedB[target * DState + n] = Lane(bGradient[n], lane);");
                            if (!s.SelectiveC) w.Line("gradients.FixedC[target * DState + n] = Lane(cGradient[n], lane);");
                        }
                    }
                }
            }
            w.Line();
        }
    }
}
