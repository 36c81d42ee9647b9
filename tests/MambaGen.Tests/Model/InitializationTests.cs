namespace MambaGen.Tests.Model;

/// <summary>Create(seed) against the initialisation in docs/architecture.md (mamba_ssm's): exact values where it fixes them, ranges and moments where it draws.</summary>
public class InitializationTests
{
    private static float[] Tensor(IMambaModel model, string key) => model.Parameters[key].ToArray();

    private static string Mixer(int layer, string name) => ParameterLayout.LayerKey(layer, "mixer." + name);

    /// <summary>Checks every value lies in [−bound, bound], the extremes come near the bound, and the variance is bound²/3.</summary>
    private static void LooksUniform(float[] values, double bound, string what)
    {
        double max = values.Max(v => Math.Abs((double)v));
        Assert.True(max <= bound * (1 + 1e-6), $"{what}: |value| {max} exceeds the bound {bound}");
        Assert.True(max >= bound * 0.9, $"{what}: largest |value| {max} is far inside the bound {bound}");
        double variance = values.Average(v => (double)v * v);
        double expected = bound * bound / 3;
        // Relative standard error of a mean of squares of U(−b, b) is √(4/5 / n); 5σ.
        double tolerance = 5 * Math.Sqrt(0.8 / values.Length);
        Assert.True(Math.Abs(variance / expected - 1) < tolerance, $"{what}: variance {variance} vs {expected}");
    }

    private static void LooksNormal(float[] values, double std, string what)
    {
        double mean = values.Average(v => (double)v);
        double variance = values.Average(v => ((double)v - mean) * ((double)v - mean));
        // 5σ bounds for the sample mean and the sample variance (variance of s² ≈ 2σ⁴/n).
        Assert.True(Math.Abs(mean) < 5 * std / Math.Sqrt(values.Length), $"{what}: mean {mean}");
        Assert.True(Math.Abs(variance / (std * std) - 1) < 5 * Math.Sqrt(2.0 / values.Length), $"{what}: std {Math.Sqrt(variance)} vs {std}");
    }

    [Fact]
    public void FixedValuesAreExact()
    {
        var model = BiasedUntiedModel.Create(1);
        for (int layer = 0; layer < BiasedUntiedModel.Layers; layer++)
        {
            var aLog = Tensor(model, Mixer(layer, "A_log"));
            for (int i = 0; i < aLog.Length; i++)
                Assert.Equal((float)Math.Log(i % BiasedUntiedModel.DState + 1), aLog[i]); // S4D-Real: A_n = −(n + 1)
            Assert.All(Tensor(model, Mixer(layer, "D")), v => Assert.Equal(1f, v));
            Assert.All(Tensor(model, ParameterLayout.LayerKey(layer, "norm.weight")), v => Assert.Equal(1f, v));
            Assert.All(Tensor(model, Mixer(layer, "in_proj.bias")), v => Assert.Equal(0f, v));
            Assert.All(Tensor(model, Mixer(layer, "out_proj.bias")), v => Assert.Equal(0f, v));
        }
        Assert.All(Tensor(model, ParameterLayout.NormFKey), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void AInitVariantsSetALog()
    {
        Assert.All(Tensor(DeltaOnlyModel.Create(2), Mixer(0, "A_log")), v => Assert.Equal((float)Math.Log(0.5), v)); // A = −1/2
        var random = Tensor(BcOnlyModel.Create(2), Mixer(0, "A_log")).Concat(Tensor(BcOnlyModel.Create(2), Mixer(1, "A_log"))).ToArray();
        LooksNormal(random, 1.0, "A_log ~ N(0, 1)");
    }

    [Fact]
    public void DrawnTensorsHaveTheirDistributions()
    {
        var model = BiasedUntiedModel.Create(3);
        int d = BiasedUntiedModel.DModel, ed = BiasedUntiedModel.DInner, r = BiasedUntiedModel.DtRank, k = BiasedUntiedModel.ConvKernel;
        LooksNormal(Tensor(model, ParameterLayout.EmbeddingKey), 0.02, "embedding");
        LooksUniform(Tensor(model, ParameterLayout.LmHeadKey), 1 / Math.Sqrt(d), "lm_head");
        for (int layer = 0; layer < BiasedUntiedModel.Layers; layer++)
        {
            LooksUniform(Tensor(model, Mixer(layer, "in_proj.weight")), 1 / Math.Sqrt(d), "in_proj");
            LooksUniform(Tensor(model, Mixer(layer, "x_proj.weight")), 1 / Math.Sqrt(ed), "x_proj");
            LooksUniform(Tensor(model, Mixer(layer, "dt_proj.weight")), 1 / Math.Sqrt(r), "dt_proj");
            LooksUniform(Tensor(model, Mixer(layer, "conv1d.weight")), 1 / Math.Sqrt(k), "conv1d.weight");
            LooksUniform(Tensor(model, Mixer(layer, "out_proj.weight")), 1 / Math.Sqrt(ed) / Math.Sqrt(BiasedUntiedModel.Layers), "out_proj");
        }
        // Conv bias: U(±1/√K), not zeroed (PyTorch's Conv1d default survives mamba_ssm's init).
        var convBias = Tensor(OddWidthModel.Create(3), Mixer(0, "conv1d.bias"));
        Assert.All(convBias, v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(OddWidthModel.ConvKernel)));
        Assert.Contains(convBias, v => v != 0);
    }

    [Fact]
    public void DtBiasPutsDeltaBetweenOneThousandthAndOneTenth()
    {
        foreach (var model in new IMambaModel[] { BiasedUntiedModel.Create(4), BcOnlyModel.Create(4) }) // also the Δ-only-bias variant
        {
            var deltas = new List<double>();
            for (int layer = 0; layer < model.Shape.Layers; layer++)
                deltas.AddRange(Tensor(model, Mixer(layer, "dt_proj.bias")).Select(b => ReferenceMamba.Softplus(b)));
            // float rounding of the bias moves Δ by a relative 1e-6 at most.
            Assert.All(deltas, delta => Assert.InRange(delta, 1e-3 * (1 - 1e-5), 0.1 * (1 + 1e-5)));
            // log Δ is uniform on [ln 0.001, ln 0.1]: mean ln 0.01, standard deviation (ln 100)/√12.
            double meanLog = deltas.Average(Math.Log);
            double std = Math.Log(100) / Math.Sqrt(12);
            Assert.True(Math.Abs(meanLog - Math.Log(0.01)) < 5 * std / Math.Sqrt(deltas.Count), $"mean log Δ {meanLog}");
        }
    }

    [Fact]
    public void NonSelectiveBIsOneAndCIsStandardNormal()
    {
        var model = LtiModel.Create(5);
        var c = new List<float>();
        for (int layer = 0; layer < LtiModel.Layers; layer++)
        {
            Assert.All(Tensor(model, Mixer(layer, "B")), v => Assert.Equal(1f, v));
            c.AddRange(Tensor(model, Mixer(layer, "C")));
        }
        LooksNormal(c.ToArray(), 1.0, "C");
    }

    [Fact]
    public void SeedDeterminesEverything()
    {
        Assert.Equal(OddWidthModel.Create(7).Parameters.Values, OddWidthModel.Create(7).Parameters.Values);
        Assert.NotEqual(OddWidthModel.Create(7).Parameters.Values, OddWidthModel.Create(8).Parameters.Values);
        Assert.Equal(OddWidthModel.Create().Parameters.Values, OddWidthModel.Create(0).Parameters.Values);
    }

    [Fact]
    public void TensorValuesDoNotDependOnWhichOtherTensorsExist()
    {
        // Same D, layers, vocabulary and N; different selectivity, hence different tensor sets.
        var a = DeltaAndBModel.Create(9);
        var b = COnlyModel.Create(9);
        foreach (var key in new[] { ParameterLayout.EmbeddingKey, Mixer(0, "in_proj.weight"), Mixer(0, "conv1d.weight"), Mixer(0, "out_proj.weight") })
            Assert.Equal(Tensor(a, key), Tensor(b, key));
    }
}
