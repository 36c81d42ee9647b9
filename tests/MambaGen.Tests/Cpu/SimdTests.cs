using System.Runtime.Intrinsics;
using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

/// <summary>The kernels' element-wise math against double-precision System.Math, on both vector widths.</summary>
public class SimdTests
{
    private static IEnumerable<float> Grid(float from, float to, int count) =>
        Enumerable.Range(0, count).Select(i => from + (to - from) * i / (count - 1));

    private static double Softplus(double v) => MambaGen.Tests.Model.ReferenceMamba.Softplus(v);

    private static void Check(Func<Vector512<float>, Vector512<float>> wide, Func<Vector256<float>, Vector256<float>> narrow,
        Func<double, double> exact, IEnumerable<float> inputs, double relativeTolerance, double absoluteTolerance)
    {
        foreach (var x in inputs)
        {
            double expected = exact(x);
            double allowed = relativeTolerance * Math.Abs(expected) + absoluteTolerance;
            float a = wide(Vector512.Create(x)).GetElement(3), b = narrow(Vector256.Create(x)).GetElement(5);
            Assert.True(Math.Abs(a - expected) <= allowed, $"512-bit f({x}) = {a}, expected {expected}");
            Assert.True(Math.Abs(b - expected) <= allowed, $"256-bit f({x}) = {b}, expected {expected}");
        }
    }

    // Single precision carries 6e-8 relative; the polynomial exp stays within 2e-7 (a few ulps).
    [Fact]
    public void ExpIsAccurateToAFewUlps() =>
        Check(Simd.Exp, Simd.Exp, Math.Exp, Grid(-87f, 88f, 200_001), 2.5e-7, 0);

    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(19)]
    [InlineData(32)]
    public void LaneSumsAddEachVectorsTotal(int count)
    {
        var random = new Random(count);
        var wide = new Vector512<float>[count];
        var narrow = new Vector256<float>[count];
        for (int i = 0; i < count; i++)
        {
            wide[i] = Vector512.Create(Enumerable.Range(0, 16).Select(_ => (float)random.Next(-50, 50)).ToArray());
            narrow[i] = Vector256.Create(Enumerable.Range(0, 8).Select(_ => (float)random.Next(-50, 50)).ToArray());
        }
        var wideSums = Enumerable.Range(0, count).Select(i => (float)i).ToArray();
        var narrowSums = (float[])wideSums.Clone();
        Simd.AddLaneSums(wide, wideSums);
        Simd.AddLaneSums(narrow, narrowSums);
        for (int i = 0; i < count; i++)
        {
            // Small integers: every partial sum is exact, so the butterfly must match exactly.
            float wideExpected = i, narrowExpected = i;
            for (int lane = 0; lane < 16; lane++) wideExpected += wide[i].GetElement(lane);
            for (int lane = 0; lane < 8; lane++) narrowExpected += narrow[i].GetElement(lane);
            Assert.Equal(wideExpected, wideSums[i]);
            Assert.Equal(narrowExpected, narrowSums[i]);
        }
    }

    [Fact]
    public void SpanExpCoversVectorsAndTail()
    {
        var x = Grid(-20f, 5f, 37).Concat([0f, 1f, 2f]).ToArray(); // exact integers included
        var y = new float[x.Length];
        Simd.Exp(x, y);
        for (int i = 0; i < x.Length; i++) Assert.Equal(Math.Exp(x[i]), y[i], 2.5e-7 * Math.Exp(x[i]));
        Assert.Throws<ArgumentException>(() => Simd.Exp(x, new float[3]));
    }

    [Fact]
    public void ExpSaturatesInsteadOfProducingNaN()
    {
        foreach (var x in new[] { -100f, -1e4f, float.NegativeInfinity })
        {
            Assert.InRange(Simd.Exp(Vector512.Create(x)).ToScalar(), 0f, 1e-38f);
            Assert.InRange(Simd.Exp(Vector256.Create(x)).ToScalar(), 0f, 1e-38f);
        }
        foreach (var x in new[] { 89f, 1e4f, float.PositiveInfinity })
        {
            Assert.True(Simd.Exp(Vector512.Create(x)).ToScalar() >= 1e38f);
            Assert.True(Simd.Exp(Vector256.Create(x)).ToScalar() >= 1e38f);
        }
    }

    // softplus keeps 3e-7 relative even where exp(v) ≪ 1 (log1p form), and is exact above the threshold 20.
    [Fact]
    public void SoftplusMatchesTorchDefinition() =>
        Check(Simd.Softplus, Simd.Softplus, Softplus, Grid(-30f, 40f, 70_001), 3e-7, 1e-30);

    [Fact]
    public void Log1pOnTheUnitIntervalKeepsRelativeAccuracy() =>
        Check(Simd.Log1pUnit, Simd.Log1pUnit, MambaGen.Tests.Model.ReferenceMamba.Log1p,
            Grid(0f, 1f, 20_001).Concat([1e-30f, 1e-12f, 3e-8f, 1e-5f]), 3e-7, 0);

    [Fact]
    public void SiluAndSigmoidMatch()
    {
        Check(Simd.Silu, Simd.Silu, v => v / (1 + Math.Exp(-v)), Grid(-60f, 60f, 50_001), 3e-7, 1e-30);
        Check(Simd.Sigmoid, Simd.Sigmoid, v => 1 / (1 + Math.Exp(-v)), Grid(-60f, 60f, 50_001), 3e-7, 1e-30);
    }
}
