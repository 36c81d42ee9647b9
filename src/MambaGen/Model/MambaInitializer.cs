using MambaGen.Numerics;

namespace MambaGen;

/// <summary>
/// mamba_ssm's initialisation (<c>MambaLMHeadModel</c> with <c>_init_weights</c> and the mixer's own init), applied
/// to a flat parameter vector:
/// <list type="bullet">
/// <item>embedding ~ 𝒩(0, 0.02); untied lm_head ~ U(±1/√D) (PyTorch's Linear default, which mamba_ssm leaves alone);</item>
/// <item>norm weights 1; in_proj and x_proj weights ~ U(±1/√fan_in); linear biases 0;</item>
/// <item>conv1d weight and bias ~ U(±1/√K) (PyTorch's Conv1d default; fan_in = K for a depthwise conv);</item>
/// <item>dt_proj.weight ~ U(±R^−½); dt_proj.bias = softplus⁻¹(dt), dt = exp(U(ln 0.001, ln 0.1)) clamped ≥ 1e-4,
///   so Δ = softplus(bias) starts in [0.001, 0.1] (also for the Δ-only-bias variant);</item>
/// <item>A_log per <see cref="AInit"/>: log(n + 1) (S4D-Real), log ½ (A = −½), or 𝒩(0, 1); D = 1;</item>
/// <item>non-selective B = 1 and C ~ 𝒩(0, 1) (S4D's choice for a fixed input/output projection);</item>
/// <item>out_proj.weight ~ U(±1/√ED) / √Layers (mamba_ssm's prenorm-residual rescale).</item>
/// </list>
/// Each tensor draws from its own stream, seeded by the seed and the tensor's key, so a tensor's values do not
/// depend on which other tensors the variant has (an ablation starts from the same in_proj as the full model).
/// </summary>
public static class MambaInitializer
{
    /// <summary>Standard deviation of the embedding's normal initialisation.</summary>
    public const double EmbeddingStd = 0.02;
    /// <summary>Smallest initial Δ.</summary>
    public const double DtMin = 0.001;
    /// <summary>Largest initial Δ.</summary>
    public const double DtMax = 0.1;
    /// <summary>Floor applied to the initial Δ before the inverse softplus.</summary>
    public const double DtFloor = 1e-4;

    /// <summary>Overwrites every parameter with its initial value, reproducibly from <paramref name="seed"/>.</summary>
    public static void Initialize(MambaParameters parameters, int seed)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var layout = parameters.Layout;
        var shape = layout.Shape;
        int d = shape.DModel, ed = shape.DInner, n = shape.DState, r = shape.DtRank, k = shape.ConvKernel;

        Span<float> Tensor(long offset, int length) => parameters.Span(offset, length);
        Xoshiro256 Stream(string key) => new(StreamSeed(seed, key));

        Normal(Tensor(layout.Embedding, shape.Vocab * d), EmbeddingStd, Stream(ParameterLayout.EmbeddingKey));
        for (int layer = 0; layer < shape.Layers; layer++)
        {
            var o = layout.LayerOffsets[layer];
            string Key(string name) => ParameterLayout.LayerKey(layer, name);

            Tensor(o.Norm, d).Fill(1f);
            Uniform(Tensor(o.InProj, 2 * ed * d), 1 / Math.Sqrt(d), Stream(Key("mixer.in_proj.weight")));
            if (o.InProjBias >= 0) Tensor(o.InProjBias, 2 * ed).Clear();
            Uniform(Tensor(o.ConvWeight, ed * k), 1 / Math.Sqrt(k), Stream(Key("mixer.conv1d.weight")));
            if (o.ConvBias >= 0) Uniform(Tensor(o.ConvBias, ed), 1 / Math.Sqrt(k), Stream(Key("mixer.conv1d.bias")));
            if (o.XProj >= 0) Uniform(Tensor(o.XProj, shape.XProjRows * ed), 1 / Math.Sqrt(ed), Stream(Key("mixer.x_proj.weight")));
            if (o.DtProjWeight >= 0) Uniform(Tensor(o.DtProjWeight, ed * r), 1 / Math.Sqrt(r), Stream(Key("mixer.dt_proj.weight")));
            DtBias(Tensor(o.DtProjBias, ed), Stream(Key("mixer.dt_proj.bias")));
            ALog(Tensor(o.ALog, ed * n), n, shape.AInit, Stream(Key("mixer.A_log")));
            Tensor(o.D, ed).Fill(1f);
            if (o.B >= 0) Tensor(o.B, ed * n).Fill(1f);
            if (o.C >= 0) Normal(Tensor(o.C, ed * n), 1.0, Stream(Key("mixer.C")));
            Uniform(Tensor(o.OutProj, d * ed), 1 / Math.Sqrt(ed) / Math.Sqrt(shape.Layers), Stream(Key("mixer.out_proj.weight")));
            if (o.OutProjBias >= 0) Tensor(o.OutProjBias, d).Clear();
        }
        Tensor(layout.NormF, d).Fill(1f);
        if (layout.LmHead >= 0) Uniform(Tensor(layout.LmHead, shape.Vocab * d), 1 / Math.Sqrt(d), Stream(ParameterLayout.LmHeadKey));
    }

    /// <summary>softplus⁻¹(v) = v + log(−expm1(−v)), as mamba_ssm computes the dt bias (exp − 1 in double loses nothing that float keeps for v ≥ 1e-4).</summary>
    public static double InverseSoftplus(double v) => v + Math.Log(1 - Math.Exp(-v));

    private static void DtBias(Span<float> bias, Xoshiro256 random)
    {
        double logMin = Math.Log(DtMin), logMax = Math.Log(DtMax);
        for (int i = 0; i < bias.Length; i++)
        {
            double dt = Math.Max(Math.Exp(random.NextDouble() * (logMax - logMin) + logMin), DtFloor);
            bias[i] = (float)InverseSoftplus(dt);
        }
    }

    private static void ALog(Span<float> aLog, int n, AInit init, Xoshiro256 random)
    {
        for (int i = 0; i < aLog.Length; i++)
            aLog[i] = init switch
            {
                AInit.S4DReal => (float)Math.Log(i % n + 1),
                AInit.NegativeHalf => (float)Math.Log(0.5),
                AInit.Random => (float)random.NextNormal(),
                _ => throw new ArgumentOutOfRangeException(nameof(init), init, "Unknown AInit."),
            };
    }

    private static void Uniform(Span<float> values, double bound, Xoshiro256 random)
    {
        for (int i = 0; i < values.Length; i++) values[i] = (float)random.NextUniform(-bound, bound);
    }

    private static void Normal(Span<float> values, double std, Xoshiro256 random)
    {
        for (int i = 0; i < values.Length; i++) values[i] = (float)(std * random.NextNormal());
    }

    /// <summary>Mixes the seed with a stable (FNV-1a) hash of the key: the same key and seed give the same stream in every process.</summary>
    private static ulong StreamSeed(int seed, string key)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in key) hash = (hash ^ c) * 1099511628211UL;
        return hash ^ ((ulong)(uint)seed * 0x9E3779B97F4A7C15UL);
    }
}
