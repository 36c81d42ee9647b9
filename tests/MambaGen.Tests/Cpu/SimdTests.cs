using System.Runtime.Intrinsics;
using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

/// <summary>
/// The kernels' element-wise math against double-precision System.Math, on every vector width (512, 256 and 128 bits).
/// Each width is run explicitly: a width the CPU lacks (or that DOTNET_EnableAVX512F=0 and friends switch off) runs as
/// the runtime's portable software vectors, so every machine runs every case.
/// </summary>
public class SimdTests
{
    public static TheoryData<int> Widths() => new([512, 256, 128]);

    /// <summary>Runs the case written for one width on the width of <paramref name="bits"/> bits.</summary>
    private static void OnWidth(int bits, Action wide, Action medium, Action narrow)
    {
        switch (bits)
        {
            case 512: wide(); break;
            case 256: medium(); break;
            case 128: narrow(); break;
            default: throw new ArgumentOutOfRangeException(nameof(bits), bits, "512, 256 or 128.");
        }
    }

    private static IEnumerable<float> Grid(float from, float to, int count) =>
        Enumerable.Range(0, count).Select(i => from + (to - from) * i / (count - 1));

    private static double Softplus(double v) => MambaGen.Tests.Model.ReferenceMamba.Softplus(v);

    /// <summary>Smallest positive subnormal float, 2^−149: the spacing of every subnormal.</summary>
    private const double SubnormalStep = 1.401298464324817e-45;

    /// <summary>f(x) in the last lane of a broadcast vector against exact(x), within relative·|exact| + absolute.</summary>
    private static void Check<TVector, TWidth>(Func<TVector, TVector> f, Func<double, double> exact, IEnumerable<float> inputs,
        double relativeTolerance, double absoluteTolerance)
        where TVector : struct
        where TWidth : struct, IVectorWidth<TVector>
    {
        foreach (var x in inputs)
        {
            double expected = exact(x);
            double allowed = relativeTolerance * Math.Abs(expected) + absoluteTolerance;
            float actual = TWidth.GetElement(f(TWidth.Create(x)), TWidth.Count - 1);
            Assert.True(Math.Abs(actual - expected) <= allowed, $"{TWidth.Count * 32}-bit f({x:R}) = {actual:R}, expected {expected:R}");
        }
    }

    // Single precision carries 6e-8 relative; the polynomial exp stays within 2.5e-7 (a few ulps) where e^x is normal.
    private static void ExpIsAccurate<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector> =>
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Exp, Math.Exp, Grid(-87f, 88f, 200_001), 2.5e-7, 0);

    [Theory]
    [MemberData(nameof(Widths))]
    public void ExpIsAccurateToAFewUlps(int bits) =>
        OnWidth(bits, ExpIsAccurate<Vector512<float>, Width512>, ExpIsAccurate<Vector256<float>, Width256>, ExpIsAccurate<Vector128<float>, Width128>);

    // Below x ≈ −87.34 e^x is subnormal: the result is e^x rounded once to the subnormal grid, so it is off by at most
    // half a step (2^−150) plus the polynomial's relative error; below x ≈ −103.97 (e^x < 2^−150) that rounds to 0.
    // An exponent-bits scale that only holds normal numbers gives ≈ 1e-38 here instead, thousands of steps away.
    private static void ExpUnderflows<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector>
    {
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Exp, Math.Exp, Grid(-106f, -86f, 100_001).Concat([-100f, -103.9f, -103.98f]),
            2.5e-7, SubnormalStep / 2);
        foreach (var x in new[] { -104f, -150f, -1e4f, -float.MaxValue, float.NegativeInfinity })
            Assert.Equal(0f, TWidth.GetElement(Simd<TVector, TWidth>.Exp(TWidth.Create(x)), 0));
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void ExpUnderflowsToTheRoundedSubnormalAndThenZero(int bits) =>
        OnWidth(bits, ExpUnderflows<Vector512<float>, Width512>, ExpUnderflows<Vector256<float>, Width256>, ExpUnderflows<Vector128<float>, Width128>);

    // ln(float.MaxValue) ≈ 88.7228: above it e^x overflows to +∞, below it stays finite and accurate; never NaN.
    private static void ExpSaturates<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector>
    {
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Exp, Math.Exp, Grid(88f, 88.72f, 10_001), 2.5e-7, 0);
        foreach (var x in new[] { 88.73f, 89f, 100f, 1e4f, float.MaxValue, float.PositiveInfinity })
            Assert.Equal(float.PositiveInfinity, TWidth.GetElement(Simd<TVector, TWidth>.Exp(TWidth.Create(x)), 0));
        foreach (var x in Grid(-1e6f, 1e6f, 20_001))
            Assert.False(float.IsNaN(TWidth.GetElement(Simd<TVector, TWidth>.Exp(TWidth.Create(x)), 0)), $"exp({x}) is NaN");
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void ExpSaturatesInsteadOfProducingNaN(int bits) =>
        OnWidth(bits, ExpSaturates<Vector512<float>, Width512>, ExpSaturates<Vector256<float>, Width256>, ExpSaturates<Vector128<float>, Width128>);

    // A vector whose lanes all lie within ±86 may be scaled by one normal power of two (the widths without a scale
    // instruction do); one lane outside, NaN or ±∞ sends the whole vector down the general path. Both must give every lane
    // the same bits, so a lane's exp never depends on its neighbours.
    private static void ExpLanesAreIndependent<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector>
    {
        var lanes = new float[TWidth.Count];
        float[] outsiders = [-95f, 88.5f, float.NaN, float.NegativeInfinity];
        int i = 0;
        foreach (var x in Grid(-86f, 86f, 20_001))
        {
            float alone = TWidth.GetElement(Simd<TVector, TWidth>.Exp(TWidth.Create(x)), 0);
            Array.Fill(lanes, x);
            float outsider = outsiders[i++ % outsiders.Length];
            lanes[^1] = outsider;
            var mixed = Simd<TVector, TWidth>.Exp(TWidth.Load(ref lanes[0], 0));
            Assert.True(BitConverter.SingleToInt32Bits(alone) == BitConverter.SingleToInt32Bits(TWidth.GetElement(mixed, 0)),
                $"{TWidth.Count * 32}-bit exp({x:R}) is {alone:R} alone, {TWidth.GetElement(mixed, 0):R} beside {outsider}");
            float outsiderAlone = TWidth.GetElement(Simd<TVector, TWidth>.Exp(TWidth.Create(outsider)), 0);
            Assert.Equal(outsiderAlone, TWidth.GetElement(mixed, TWidth.Count - 1));
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void ExpOfALaneDoesNotDependOnItsNeighbours(int bits) =>
        OnWidth(bits, ExpLanesAreIndependent<Vector512<float>, Width512>, ExpLanesAreIndependent<Vector256<float>, Width256>,
            ExpLanesAreIndependent<Vector128<float>, Width128>);

    private static void LaneSums<TVector, TWidth>(int count) where TVector : struct where TWidth : struct, IVectorWidth<TVector>
    {
        var random = new Random(count);
        var vectors = new TVector[count];
        var expected = new float[count];
        for (int i = 0; i < count; i++)
        {
            var lanes = Enumerable.Range(0, TWidth.Count).Select(_ => (float)random.Next(-50, 50)).ToArray();
            vectors[i] = TWidth.Load(ref lanes[0], 0);
            // Small integers: every partial sum is exact, so the butterfly must match exactly.
            expected[i] = i + lanes.Sum();
        }
        var sums = Enumerable.Range(0, count).Select(i => (float)i).ToArray();
        Simd<TVector, TWidth>.AddLaneSums(vectors, sums);
        Assert.Equal(expected, sums);
        Assert.Throws<ArgumentException>(() => Simd<TVector, TWidth>.AddLaneSums(vectors, new float[count - 1]));
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void LaneSumsAddEachVectorsTotal(int bits)
    {
        // Fewer than one butterfly, exactly one or two of each width, and ragged tails.
        foreach (int count in new[] { 3, 4, 8, 16, 19, 32, 37 })
            OnWidth(bits, () => LaneSums<Vector512<float>, Width512>(count), () => LaneSums<Vector256<float>, Width256>(count),
                () => LaneSums<Vector128<float>, Width128>(count));
    }

    [Fact]
    public void SpanExpCoversVectorsAndTail()
    {
        // Exact integers included, and values that underflow and overflow, on the native width and the scalar tail.
        var x = Grid(-20f, 5f, 37).Concat([0f, 1f, 2f, -100f, -120f, 100f]).ToArray();
        var y = new float[x.Length];
        Simd.Exp(x, y);
        // Within the vector tolerance of e^x, or exactly the float nearest it (∞ where e^x is beyond the float range).
        for (int i = 0; i < x.Length; i++)
            Assert.True(Math.Abs(y[i] - Math.Exp(x[i])) <= 2.5e-7 * Math.Exp(x[i]) + SubnormalStep / 2 || (float)Math.Exp(x[i]) == y[i],
                $"exp({x[i]}) = {y[i]}, expected {Math.Exp(x[i])}");
        Assert.Throws<ArgumentException>(() => Simd.Exp(x, new float[3]));
    }

    // softplus keeps 3e-7 relative even where exp(v) ≪ 1 (log1p form), and is exact above the threshold 20.
    private static void SoftplusMatches<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector> =>
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Softplus, Softplus, Grid(-30f, 40f, 70_001), 3e-7, 1e-30);

    [Theory]
    [MemberData(nameof(Widths))]
    public void SoftplusMatchesTorchDefinition(int bits) =>
        OnWidth(bits, SoftplusMatches<Vector512<float>, Width512>, SoftplusMatches<Vector256<float>, Width256>, SoftplusMatches<Vector128<float>, Width128>);

    private static void Log1pMatches<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector> =>
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Log1pUnit, MambaGen.Tests.Model.ReferenceMamba.Log1p,
            Grid(0f, 1f, 20_001).Concat([1e-30f, 1e-12f, 3e-8f, 1e-5f]), 3e-7, 0);

    [Theory]
    [MemberData(nameof(Widths))]
    public void Log1pOnTheUnitIntervalKeepsRelativeAccuracy(int bits) =>
        OnWidth(bits, Log1pMatches<Vector512<float>, Width512>, Log1pMatches<Vector256<float>, Width256>, Log1pMatches<Vector128<float>, Width128>);

    private static void SiluAndSigmoid<TVector, TWidth>() where TVector : struct where TWidth : struct, IVectorWidth<TVector>
    {
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Silu, v => v / (1 + Math.Exp(-v)), Grid(-60f, 60f, 50_001), 3e-7, 1e-30);
        Check<TVector, TWidth>(Simd<TVector, TWidth>.Sigmoid, v => 1 / (1 + Math.Exp(-v)), Grid(-60f, 60f, 50_001), 3e-7, 1e-30);
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void SiluAndSigmoidMatch(int bits) =>
        OnWidth(bits, SiluAndSigmoid<Vector512<float>, Width512>, SiluAndSigmoid<Vector256<float>, Width256>, SiluAndSigmoid<Vector128<float>, Width128>);
}
