namespace MambaGen.Tests.Model;

/// <summary>
/// An independent, deliberately naive double-precision Mamba language model written straight from the math in docs/architecture.md
/// ("The math" and "Selectivity flags"): plain loops, parameters looked up by their Hugging Face keys, nothing shared
/// with the generated code or the runtime kernels. Tests compare the generated fp32 model against it, and
/// differentiate its loss by central differences in double precision to check the generated backward pass.
/// </summary>
internal static class ReferenceMamba
{
    /// <summary>The parameters as double-precision tensors keyed by their Hugging Face names.</summary>
    internal sealed class Weights(MambaShape shape, Dictionary<string, double[]> tensors)
    {
        public MambaShape Shape { get; } = shape;
        public Dictionary<string, double[]> Tensors { get; } = tensors;
        public double[] this[string key] => Tensors[key];

        public static Weights From(MambaParameters parameters) =>
            new(parameters.Shape, parameters.Layout.Tensors.ToDictionary(t => t.Key, t => parameters.Slice(t).ToArray().Select(v => (double)v).ToArray()));
    }

    /// <summary>Logits (batch × length × Vocab) for <paramref name="tokens"/>, in double precision.</summary>
    public static double[] Forward(MambaParameters parameters, int[] tokens, int batch) => Forward(Weights.From(parameters), tokens, batch);

    /// <summary>Mean of −log softmax(logits)[target] over positions whose target is not −1 (0 when none is).</summary>
    public static double Loss(Weights weights, int[] tokens, int[] targets, int batch)
    {
        int vocab = weights.Shape.Vocab;
        var logits = Forward(weights, tokens, batch);
        double total = 0;
        int scored = 0;
        for (int row = 0; row < tokens.Length; row++)
        {
            if (targets[row] == -1) continue;
            var values = logits.AsSpan(row * vocab, vocab);
            double max = double.NegativeInfinity;
            foreach (var v in values) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in values) sum += Math.Exp(v - max);
            total += max + Math.Log(sum) - values[targets[row]];
            scored++;
        }
        return scored == 0 ? 0 : total / scored;
    }

    public static double[] Forward(Weights parameters, int[] tokens, int batch)
    {
        var shape = parameters.Shape;
        int length = tokens.Length / batch, d = shape.DModel, vocab = shape.Vocab;
        var logits = new double[tokens.Length * vocab];
        for (int b = 0; b < batch; b++)
        {
            var sequence = tokens.AsSpan(b * length, length).ToArray();
            var final = FinalHidden(parameters, sequence);
            var head = parameters[shape.TieEmbeddings ? ParameterLayout.EmbeddingKey : ParameterLayout.LmHeadKey];
            for (int t = 0; t < length; t++)
                for (int v = 0; v < vocab; v++)
                {
                    double sum = 0;
                    for (int i = 0; i < d; i++) sum += final[t][i] * head[v * d + i];
                    logits[((b * length) + t) * vocab + v] = sum;
                }
        }
        return logits;
    }

    /// <summary>RMSNorm_f(r) after every layer, per position, for one sequence.</summary>
    private static double[][] FinalHidden(Weights p, int[] tokens)
    {
        var s = p.Shape;
        int length = tokens.Length, d = s.DModel;
        var embedding = p[ParameterLayout.EmbeddingKey];
        var residual = new double[length][];
        for (int t = 0; t < length; t++)
        {
            residual[t] = new double[d];
            for (int i = 0; i < d; i++) residual[t][i] = embedding[tokens[t] * d + i];
        }
        for (int layer = 0; layer < s.Layers; layer++)
        {
            var normWeight = p[ParameterLayout.LayerKey(layer, "norm.weight")];
            var normed = residual.Select(row => RmsNorm(row, normWeight, s.NormEpsilon)).ToArray();
            var output = Mixer(p, layer, normed);
            for (int t = 0; t < length; t++)
                for (int i = 0; i < d; i++) residual[t][i] += output[t][i];
        }
        var normF = p[ParameterLayout.NormFKey];
        return residual.Select(row => RmsNorm(row, normF, s.NormEpsilon)).ToArray();
    }

    public static double[] RmsNorm(double[] x, double[] weight, double epsilon)
    {
        double meanSquare = x.Sum(v => v * v) / x.Length;
        double scale = 1 / Math.Sqrt(meanSquare + epsilon);
        return x.Select((v, i) => v * scale * weight[i]).ToArray();
    }

    public static double Softplus(double v) => v > 20 ? v : Log1p(Math.Exp(v));

    /// <summary>log(1 + u) for u ≥ 0 without the cancellation of 1 + u in double when u is tiny (third-order series there).</summary>
    public static double Log1p(double u) => u < 1e-4 ? u - u * u / 2 + u * u * u / 3 : Math.Log(1 + u);

    public static double Silu(double v) => v / (1 + Math.Exp(-v));

    /// <summary>One Mamba mixer over a sequence h (length × D).</summary>
    private static double[][] Mixer(Weights p, int layer, double[][] h)
    {
        var s = p.Shape;
        int length = h.Length, d = s.DModel, ed = s.DInner, n = s.DState, r = s.DtRank, k = s.ConvKernel;
        double[] W(string name) => p[ParameterLayout.LayerKey(layer, "mixer." + name)];

        // 1. xz = h·W_inᵀ (+ b_in); x = first ED columns, z = the rest.
        var inProj = W("in_proj.weight");
        var inBias = s.ProjBias ? W("in_proj.bias") : null;
        var x = new double[length, ed];
        var z = new double[length, ed];
        for (int t = 0; t < length; t++)
            for (int j = 0; j < 2 * ed; j++)
            {
                double sum = inBias?[j] ?? 0;
                for (int i = 0; i < d; i++) sum += h[t][i] * inProj[j * d + i];
                if (j < ed) x[t, j] = sum; else z[t, j - ed] = sum;
            }

        // 2. Causal depthwise conv, zero before t = 0, then SiLU.
        var convWeight = W("conv1d.weight");
        var convBias = s.ConvBias ? W("conv1d.bias") : null;
        var u = new double[length, ed];
        for (int t = 0; t < length; t++)
            for (int c = 0; c < ed; c++)
            {
                double sum = convBias?[c] ?? 0;
                for (int tap = 0; tap < k; tap++)
                {
                    int source = t - k + 1 + tap;
                    if (source >= 0) sum += convWeight[c * k + tap] * x[source, c];
                }
                u[t, c] = Silu(sum);
            }

        // 3. x_dbl = u·W_xᵀ split into (dt_low, B, C) — only the selective parts exist.
        int rows = s.XProjRows;
        var xDbl = new double[length, rows];
        if (rows > 0)
        {
            var xProj = W("x_proj.weight");
            for (int t = 0; t < length; t++)
                for (int j = 0; j < rows; j++)
                {
                    double sum = 0;
                    for (int c = 0; c < ed; c++) sum += u[t, c] * xProj[j * ed + c];
                    xDbl[t, j] = sum;
                }
        }
        int column = 0;
        int dtColumn = s.SelectiveDelta ? column : -1; if (s.SelectiveDelta) column += r;
        int bColumn = s.SelectiveB ? column : -1; if (s.SelectiveB) column += n;
        int cColumn = s.SelectiveC ? column : -1;

        // 4. Δ = softplus(dt_low·W_dtᵀ + b_dt), or softplus(b_dt) when Δ is not selective. A = −exp(A_log).
        var dtBias = W("dt_proj.bias");
        var dtWeight = s.SelectiveDelta ? W("dt_proj.weight") : null;
        var delta = new double[length, ed];
        for (int t = 0; t < length; t++)
            for (int c = 0; c < ed; c++)
            {
                double dt = dtBias[c];
                if (dtWeight is not null)
                    for (int i = 0; i < r; i++) dt += xDbl[t, dtColumn + i] * dtWeight[c * r + i];
                delta[t, c] = Softplus(dt);
            }
        var aLog = W("A_log");
        var dSkip = W("D");
        var fixedB = s.SelectiveB ? null : W("B");
        var fixedC = s.SelectiveC ? null : W("C");

        // 5. Scan from h = 0; y = C·h + D·x; y ⊙= SiLU(z); out = y·W_outᵀ (+ b_out).
        var y = new double[length, ed];
        for (int c = 0; c < ed; c++)
        {
            var state = new double[n];
            for (int t = 0; t < length; t++)
            {
                double sum = dSkip[c] * u[t, c];
                for (int i = 0; i < n; i++)
                {
                    double a = -Math.Exp(aLog[c * n + i]);
                    double bValue = fixedB is null ? xDbl[t, bColumn + i] : fixedB[c * n + i];
                    double cValue = fixedC is null ? xDbl[t, cColumn + i] : fixedC[c * n + i];
                    state[i] = Math.Exp(delta[t, c] * a) * state[i] + delta[t, c] * bValue * u[t, c];
                    sum += cValue * state[i];
                }
                y[t, c] = sum * Silu(z[t, c]);
            }
        }
        var outProj = W("out_proj.weight");
        var outBias = s.ProjBias ? W("out_proj.bias") : null;
        var result = new double[length][];
        for (int t = 0; t < length; t++)
        {
            result[t] = new double[d];
            for (int i = 0; i < d; i++)
            {
                double sum = outBias?[i] ?? 0;
                for (int c = 0; c < ed; c++) sum += y[t, c] * outProj[i * ed + c];
                result[t][i] = sum;
            }
        }
        return result;
    }
}
