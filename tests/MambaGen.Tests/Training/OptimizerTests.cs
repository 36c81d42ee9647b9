using MambaGen.Numerics;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

[Collection(AllocationMeasurements.Name)]
public class AdamWTests
{
    private static ParameterLayout SmallLayout() => new(new MambaShape
    {
        // Odd sizes so tensors do not line up with the SIMD width and the scalar tail runs too.
        DModel = 5, Layers = 2, Vocab = 7, DState = 3, Expand = 1, DInner = 5, DtRank = 2, ConvKernel = 3,
        SelectiveC = false, ProjBias = true,
    });

    /// <summary>
    /// Naive double-precision AdamW written straight from the algorithm (PyTorch's AdamW order: decoupled decay,
    /// moments, bias-corrected step), one element at a time, independent of the SIMD implementation.
    /// </summary>
    private static void ReferenceStep(double[] p, double[] g, double[] m, double[] v, bool[] decay, int t, double lr,
        double beta1, double beta2, double eps, double wd)
    {
        for (int i = 0; i < p.Length; i++)
        {
            if (decay[i]) p[i] -= lr * wd * p[i];
            m[i] = beta1 * m[i] + (1 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
            double mHat = m[i] / (1 - Math.Pow(beta1, t));
            double vHat = v[i] / (1 - Math.Pow(beta2, t));
            p[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
        }
    }

    [Fact]
    public void MatchesANaiveDoublePrecisionReferenceOverSeveralSteps()
    {
        var layout = SmallLayout();
        var options = new AdamWOptions { Beta1 = 0.9f, Beta2 = 0.95f, Epsilon = 1e-8f, WeightDecay = 0.1f };
        var optimizer = new AdamW(layout, options);
        var random = new Xoshiro256(11);
        var parameters = new float[layout.TotalLength];
        foreach (ref float x in parameters.AsSpan()) x = (float)random.NextNormal();
        var decay = new bool[layout.TotalLength];
        foreach (var tensor in layout.Tensors) decay.AsSpan((int)tensor.Offset, tensor.Length).Fill(tensor.WeightDecay);
        var p = parameters.Select(x => (double)x).ToArray();
        var m = new double[p.Length];
        var v = new double[p.Length];
        var gradients = new float[p.Length];
        float[] rates = [1e-2f, 3e-2f, 5e-3f, 2e-2f, 1e-2f, 7e-3f];
        for (int step = 0; step < rates.Length; step++)
        {
            // Gradients of mixed scale, including exact zeros, so ε and tiny second moments matter.
            for (int i = 0; i < gradients.Length; i++)
                gradients[i] = i % 13 == 0 ? 0f : (float)(random.NextNormal() * Math.Pow(10, random.NextInt(5) - 3));
            optimizer.Update(parameters, gradients, rates[step]);
            ReferenceStep(p, gradients.Select(x => (double)x).ToArray(), m, v, decay, step + 1, rates[step], 0.9f, 0.95f, 1e-8f, 0.1f);
        }

        Assert.Equal(rates.Length, optimizer.StepCount);
        // fp32 against fp64 over six steps: each update is a few roundings of ~6e-8 relative; 1e-5 relative (with
        // a 1e-7 absolute floor for values near zero) leaves a wide margin yet catches any wrong term or order.
        for (int i = 0; i < p.Length; i++)
        {
            Assert.True(Math.Abs(parameters[i] - p[i]) <= 1e-5 * Math.Abs(p[i]) + 1e-7, $"parameter {i}: {parameters[i]} vs {p[i]}");
            Assert.True(Math.Abs(optimizer.FirstMoment[i] - m[i]) <= 1e-5 * Math.Abs(m[i]) + 1e-12, $"m {i}");
            Assert.True(Math.Abs(optimizer.SecondMoment[i] - v[i]) <= 1e-5 * Math.Abs(v[i]) + 1e-15, $"v {i}");
        }
    }

    [Fact]
    public void DecaysOnlyTensorsTheLayoutMarksForDecay()
    {
        var layout = SmallLayout();
        var optimizer = new AdamW(layout, new AdamWOptions { WeightDecay = 0.5f });
        var parameters = Enumerable.Range(0, layout.SingleSegmentLength).Select(i => 1f + i % 7).ToArray();
        var before = (float[])parameters.Clone();
        // With zero gradients the Adam step is 0/(0+ε) = 0, so only the decoupled decay can move a weight.
        for (int step = 0; step < 3; step++) optimizer.Update(parameters, new float[parameters.Length], 0.1f);

        double factor = Math.Pow(1 - 0.1 * 0.5, 3);
        foreach (var tensor in layout.Tensors)
            for (long i = tensor.Offset; i < tensor.Offset + tensor.Length; i++)
            {
                if (tensor.WeightDecay) Assert.Equal(before[i] * factor, parameters[i], 1e-5);
                else Assert.Equal(before[i], parameters[i]);
            }
        // The layout's flags follow mamba_ssm: none of these may be decayed.
        foreach (string name in new[] { "mixer.A_log", "mixer.D", "norm.weight", "mixer.conv1d.bias", "mixer.dt_proj.bias", "mixer.C", "mixer.in_proj.bias", "mixer.out_proj.bias" })
            Assert.False(layout[ParameterLayout.LayerKey(1, name)].WeightDecay, name);
        Assert.True(layout[ParameterLayout.LayerKey(0, "mixer.in_proj.weight")].WeightDecay);
    }

    [Fact]
    public void UpdateAllocatesNothing()
    {
        var layout = SmallLayout();
        var optimizer = new AdamW(layout);
        var parameters = new float[layout.TotalLength];
        var gradients = Enumerable.Repeat(0.1f, layout.SingleSegmentLength).ToArray();
        optimizer.Update(parameters, gradients, 1e-3f);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) optimizer.Update(parameters, gradients, 1e-3f);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData("Beta1", 1f)]
    [InlineData("Beta2", -0.1f)]
    [InlineData("Epsilon", 0f)]
    [InlineData("WeightDecay", -1f)]
    public void RejectsOutOfRangeOptionsNamingThem(string name, float value)
    {
        var options = name switch
        {
            "Beta1" => new AdamWOptions { Beta1 = value },
            "Beta2" => new AdamWOptions { Beta2 = value },
            "Epsilon" => new AdamWOptions { Epsilon = value },
            _ => new AdamWOptions { WeightDecay = value },
        };
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW(SmallLayout(), options));
        Assert.Equal(name, error.ParamName);
        Assert.Contains(value.ToString(System.Globalization.CultureInfo.CurrentCulture), error.Message);
    }

    [Fact]
    public void RejectsMismatchedLengthsAndBadLearningRates()
    {
        var optimizer = new AdamW(SmallLayout());
        int n = optimizer.Length;
        Assert.Throws<ArgumentException>(() => optimizer.Update(new float[n - 1], new float[n], 1e-3f));
        Assert.Throws<ArgumentException>(() => optimizer.Update(new float[n], new float[n + 1], 1e-3f));
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.Update(new float[n], new float[n], float.NaN));
        Assert.Equal(0, optimizer.StepCount);
    }
}

public class LearningRateScheduleTests
{
    [Fact]
    public void WarmsUpLinearlyThenDecaysByCosineToTheFloor()
    {
        // 10 warm-up steps and 101 decay steps (10..110), so progress = (s − 10)/100.
        var schedule = new LearningRateSchedule(peakLearningRate: 1e-3f, warmupSteps: 10, totalSteps: 111, minRatio: 0.1f);
        // Expected values worked out by hand from the documented formulas; 1e-9 absolute is fp32 rounding of 1e-3.
        Assert.Equal(1e-4, schedule.At(0), 1e-9);            // (0+1)/10 of the peak
        Assert.Equal(5e-4, schedule.At(4), 1e-9);
        Assert.Equal(1e-3, schedule.At(9), 1e-9);            // the last warm-up step reaches the peak
        Assert.Equal(1e-3, schedule.At(10), 1e-9);           // first decay step: cos 0
        Assert.Equal(5.5e-4, schedule.At(60), 1e-9);         // progress ½: floor + (peak − floor)/2
        Assert.Equal(1e-4 + 9e-4 * (1 + Math.Cos(Math.PI * 0.25)) / 2, schedule.At(35), 1e-9);
        Assert.Equal(1e-4, schedule.At(110), 1e-9);          // the last step sits on the floor
        Assert.Equal(1e-4, schedule.At(500), 1e-9);          // beyond the end it stays there
        for (int s = 10; s < 110; s++) Assert.True(schedule.At(s + 1) <= schedule.At(s), $"not decreasing at {s}");
    }

    [Fact]
    public void WithoutWarmupStartsAtThePeak()
    {
        var schedule = new LearningRateSchedule(2f, 0, 3, 0f);
        Assert.Equal(2f, schedule.At(0));
        Assert.Equal(1f, schedule.At(1), 1e-6);
        Assert.Equal(0f, schedule.At(2), 1e-6);
    }

    [Fact]
    public void RejectsBadArgumentsNamingThem()
    {
        Assert.Equal("peakLearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(0, 0, 10, 0.1f)).ParamName);
        Assert.Equal("warmupSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1, 11, 10, 0.1f)).ParamName);
        Assert.Equal("totalSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1, 0, 0, 0.1f)).ParamName);
        Assert.Equal("minRatio", Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1, 0, 10, 1.5f)).ParamName);
        Assert.Equal("step", Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1, 0, 10, 0.1f).At(-1)).ParamName);
    }
}

public class GradientClippingTests
{
    private static double ReferenceNorm(float[] values) => Math.Sqrt(values.Sum(x => (double)x * x));

    [Fact]
    public void ScalesDownToTheMaximumAndReturnsThePreClipNorm()
    {
        var random = new Xoshiro256(3);
        var gradients = Enumerable.Range(0, 1001).Select(_ => (float)random.NextNormal()).ToArray();
        var original = (float[])gradients.Clone();
        double expectedNorm = ReferenceNorm(gradients);

        float norm = GradientClipping.ClipByGlobalNorm(gradients, 2f);

        Assert.Equal(expectedNorm, norm, expectedNorm * 1e-6);
        // After clipping the norm is maxNorm·norm/(norm+1e-6), i.e. 2 to within fp32 rounding.
        Assert.Equal(2.0, ReferenceNorm(gradients), 1e-5);
        double scale = gradients[0] / original[0];
        for (int i = 0; i < gradients.Length; i++) Assert.Equal(original[i] * scale, gradients[i], 1e-6);
    }

    [Fact]
    public void LeavesSmallGradientsUntouchedAndInfinityOnlyMeasures()
    {
        float[] gradients = [3f, 4f];
        Assert.Equal(5f, GradientClipping.ClipByGlobalNorm(gradients, 5.5f));
        Assert.Equal([3f, 4f], gradients);
        Assert.Equal(5f, GradientClipping.ClipByGlobalNorm(gradients, float.PositiveInfinity));
        Assert.Equal([3f, 4f], gradients);
    }

    [Fact]
    public void ReportsANonFiniteNormWithoutScaling()
    {
        float[] gradients = [1f, float.NaN, 2f];
        Assert.True(float.IsNaN(GradientClipping.ClipByGlobalNorm(gradients, 1f)));
        Assert.Equal(1f, gradients[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => GradientClipping.ClipByGlobalNorm(gradients, 0f));
    }
}
