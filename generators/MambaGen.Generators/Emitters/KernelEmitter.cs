using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// Writes the SIMD kernels of one vector width: the causal convolution and the selective scan. Each kernel handles
    /// one sequence and one block of channels, vectorised across channels; the loops over the taps K and the states N
    /// have constant bounds, and the selectivity flags pick which quantities are per-token and which are hoisted out
    /// of the time loop.
    /// </summary>
    internal static class KernelEmitter
    {
        private const string Sys = ModelEmitter.Sys;
        private const string Cpu = ModelEmitter.Cpu;
        private const string Unsafe = "global::System.Runtime.CompilerServices.Unsafe";
        private const string Marshal = "global::System.Runtime.InteropServices.MemoryMarshal";

        public static void Emit(CodeWriter w, ModelSpec s, VectorFlavor v)
        {
            w.Comment($"── Kernels on {v.Bits}-bit vectors ({v.Width} channels per vector) ─────────────────────────────────────────");
            w.Summary($"The convolution and scan kernels on {v.Bits}-bit vectors. Every kernel checks its buffers once, then reads them\nwithout bounds checks.");
            using (w.Block($"private static class {v.ClassName}"))
            {
                w.Line($"private const int Width = {v.Width};");
                w.Line();
                EmitPrimitives(w, v);
                EmitConvolution(w, s, v);
                EmitScan(w, s, v);
            }
            w.Line();
        }

        // Kernels are compiled fully optimised at once: they are hot from the first call, and tier-0 SIMD code is slow.
        private const string Optimize = "[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]";
        private const string Inline = "[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]";

        /// <summary>
        /// The only width-specific text: one-line primitives the kernels are written in, so the kernel bodies read the
        /// same for every width. The JIT inlines them.
        /// </summary>
        private static void EmitPrimitives(CodeWriter w, VectorFlavor v)
        {
            var V = v.Type;
            w.Comment($"Primitives on {v.Bits}-bit vectors; the kernels below use only these.");
            void Primitive(string signature, string body)
            {
                w.Line(Inline);
                w.Line($"private static {signature} => {body};");
            }
            Primitive($"{V} Load(ref float source, nuint index)", $"{v.Static}.LoadUnsafe(ref source, index)");
            Primitive($"void Store({V} value, ref float target, nuint index)", $"{v.Static}.StoreUnsafe(value, ref target, index)");
            Primitive($"{V} Get(float[] source, int index)", $"{v.Static}.Create(source, index)");
            Primitive($"{V} Get({Sys}.ReadOnlySpan<float> source, int index)", $"{v.Static}.Create(source.Slice(index))");
            Primitive($"void Put({V} value, {Sys}.Span<float> target, int index)", $"{v.Static}.CopyTo(value, target.Slice(index))");
            Primitive($"{V} Broadcast(float value)", $"{v.Static}.Create(value)");
            Primitive($"{V} Fma({V} a, {V} b, {V} addend)", $"{v.Static}.FusedMultiplyAdd(a, b, addend)");
            Primitive($"{V} Exp({V} value)", $"{Cpu}.Simd.Exp(value)");
            Primitive($"{V} Softplus({V} value)", $"{Cpu}.Simd.Softplus(value)");
            Primitive($"{V} Silu({V} value)", $"{Cpu}.Simd.Silu(value)");
            w.Line($"private static {V} Zero => {V}.Zero;");
            w.Line();
        }

        private static void EmitConvolution(CodeWriter w, ModelSpec s, VectorFlavor v)
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
            string historyParameter = k > 1 ? $", {Sys}.Span<float> history" : "";
            w.Line(Optimize);
            using (w.Block($"public static void ConvolveSilu({Sys}.ReadOnlySpan<float> xIn, {Sys}.Span<float> xConv, int firstRow, int length, int firstChannel, LayerConstants constants{historyParameter})"))
            {
                w.Line($"{Cpu}.Bounds.Require(xIn.Length, (firstRow + length) * DInnerStride, nameof(xIn));");
                w.Line($"{Cpu}.Bounds.Require(xConv.Length, (firstRow + length) * DInnerStride, nameof(xConv));");
                w.Line($"ref float input = ref {Marshal}.GetReference(xIn);");
                w.Line($"ref float output = ref {Marshal}.GetReference(xConv);");
                using (w.Block("for (int c = firstChannel; c < firstChannel + ChannelBlock; c += Width)"))
                {
                    for (int tap = 0; tap < k; tap++)
                        w.Line($"var tap{tap} = Get(constants.ConvWeights, {tap} * DInnerStride + c);");
                    if (s.ConvBias) w.Line("var bias = Get(constants.ConvBiases, c);");
                    for (int i = 0; i < k - 1; i++)
                        w.Line($"var past{i} = history.IsEmpty ? Zero : Get(history, {i} * DInnerStride + c);");
                    using (w.Block("for (int t = 0; t < length; t++)"))
                    {
                        w.Line("nuint at = (nuint)((firstRow + t) * DInnerStride + c);");
                        w.Line("var x = Load(ref input, at);");
                        // Oldest tap first, the current input last.
                        string sum = s.ConvBias ? "bias" : null!;
                        for (int tap = 0; tap < k; tap++)
                        {
                            string operand = tap == k - 1 ? "x" : $"past{tap}";
                            string next = sum is null ? $"tap{tap} * {operand}" : $"Fma(tap{tap}, {operand}, {sum})";
                            w.Line(tap == 0 ? $"var sum = {next};" : $"sum = {next};");
                            sum = "sum";
                        }
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

        private static void EmitScan(CodeWriter w, ModelSpec s, VectorFlavor v)
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
            var parameters = $"{Sys}.ReadOnlySpan<float> xConv, " +
                             (s.SelectiveDelta ? $"{Sys}.ReadOnlySpan<float> dtRaw, " : "") +
                             (s.XProjRows > 0 ? $"{Sys}.ReadOnlySpan<float> xDbl, " : "") +
                             $"{Sys}.ReadOnlySpan<float> gate, {Sys}.Span<float> y, int firstRow, int length, int firstChannel, LayerConstants constants, " +
                             $"{Sys}.ReadOnlySpan<float> initialState, {Sys}.Span<float> snapshots, int snapshotEvery";
            w.Line(Optimize);
            using (w.Block($"public static void Scan({parameters})"))
            {
                w.Line("int rowsEnd = firstRow + length;");
                foreach (var name in new[] { "xConv", "gate", "y" })
                    w.Line($"{Cpu}.Bounds.Require({name}.Length, rowsEnd * DInnerStride, nameof({name}));");
                if (s.SelectiveDelta) w.Line($"{Cpu}.Bounds.Require(dtRaw.Length, rowsEnd * DInnerStride, nameof(dtRaw));");
                if (s.XProjRows > 0) w.Line($"{Cpu}.Bounds.Require(xDbl.Length, rowsEnd * XProjRows, nameof(xDbl));");
                w.Line("if (snapshotEvery < 1) throw new global::System.ArgumentOutOfRangeException(nameof(snapshotEvery));");
                w.Line($"ref float u = ref {Marshal}.GetReference(xConv);");
                if (s.SelectiveDelta) w.Line($"ref float dt = ref {Marshal}.GetReference(dtRaw);");
                if (s.XProjRows > 0) w.Line($"ref float projected = ref {Marshal}.GetReference(xDbl);");
                w.Line($"ref float z = ref {Marshal}.GetReference(gate);");
                w.Line($"ref float output = ref {Marshal}.GetReference(y);");
                w.Line($"{Sys}.Span<{v.Type}> h = stackalloc {v.Type}[DState];");
                // Per-n vectors fixed for the whole sequence.
                w.Line($"{Sys}.Span<{v.Type}> {(s.SelectiveDelta ? "a" : "decay")} = stackalloc {v.Type}[DState];");
                if (!s.SelectiveB) w.Line($"{Sys}.Span<{v.Type}> {(s.SelectiveDelta ? "b" : "deltaB")} = stackalloc {v.Type}[DState];");
                if (!s.SelectiveC) w.Line($"{Sys}.Span<{v.Type}> c = stackalloc {v.Type}[DState];");

                using (w.Block("for (int channel = firstChannel; channel < firstChannel + ChannelBlock; channel += Width)"))
                {
                    w.Line("var dSkip = Get(constants.DSkip, channel);");
                    w.Line("var dtBias = Get(constants.DtBias, channel);");
                    if (!s.SelectiveDelta)
                        w.Line("var delta = Softplus(dtBias);");
                    using (w.Block("for (int n = 0; n < DState; n++)"))
                    {
                        w.Line("h[n] = initialState.IsEmpty ? Zero : Get(initialState, n * DInnerStride + channel);");
                        if (s.SelectiveDelta) w.Line("a[n] = Get(constants.NegA, n * DInnerStride + channel);");
                        else w.Line("decay[n] = Exp(delta * Get(constants.NegA, n * DInnerStride + channel));");
                        if (!s.SelectiveB)
                            w.Line(s.SelectiveDelta
                                ? "b[n] = Get(constants.FixedB, n * DInnerStride + channel);"
                                : "deltaB[n] = delta * Get(constants.FixedB, n * DInnerStride + channel);");
                        if (!s.SelectiveC) w.Line("c[n] = Get(constants.FixedC, n * DInnerStride + channel);");
                    }
                    using (w.Block("for (int chunkStart = 0; chunkStart < length; chunkStart += snapshotEvery)"))
                    {
                        w.Line("int chunkEnd = global::System.Math.Min(length, chunkStart + snapshotEvery);");
                        using (w.Block("for (int t = chunkStart; t < chunkEnd; t++)"))
                        {
                            w.Line("int row = firstRow + t;");
                            w.Line("nuint at = (nuint)(row * DInnerStride + channel);");
                            w.Line("var x = Load(ref u, at);");
                            if (s.SelectiveDelta) w.Line("var delta = Softplus(Load(ref dt, at) + dtBias);");
                            if (s.SelectiveB || s.SelectiveDelta) w.Line("var deltaX = delta * x;");
                            if (s.SelectiveB) w.Line($"ref float bRow = ref {Unsafe}.Add(ref projected, row * XProjRows + XProjB);");
                            if (s.SelectiveC) w.Line($"ref float cRow = ref {Unsafe}.Add(ref projected, row * XProjRows + XProjC);");
                            w.Line("var sum = dSkip * x;");
                            using (w.Block("for (int n = 0; n < DState; n++)"))
                            {
                                string decay = s.SelectiveDelta ? "Exp(delta * a[n])" : "decay[n]";
                                string input = s.SelectiveB ? $"deltaX * Broadcast({Unsafe}.Add(ref bRow, n))"
                                    : s.SelectiveDelta ? "deltaX * b[n]" : "deltaB[n] * x";
                                string c = s.SelectiveC ? $"Broadcast({Unsafe}.Add(ref cRow, n))" : "c[n]";
                                w.Line($"h[n] = Fma({decay}, h[n], {input});");
                                w.Line($"sum = Fma({c}, h[n], sum);");
                            }
                            w.Line("Store(sum * Silu(Load(ref z, at)), ref output, at);");
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
    }
}
