using System.Runtime.Intrinsics;
using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

/// <summary>
/// The 16-bit matrix–vector product against a double-precision reference over the same 16-bit weights (widened by the
/// runtime's own <see cref="Half"/> conversion and bfloat16's definition), on every path this machine can run; and the
/// vector widenings against the scalar ones on all 65,536 bit patterns.
/// </summary>
public class HalfGemvTests
{
    /// <summary>The scalar path always; each vector path where the machine has the hardware for it.</summary>
    public static TheoryData<string> Paths()
    {
        var paths = new TheoryData<string> { nameof(HalfGemvPath.Scalar) };
        if (Vector128.IsHardwareAccelerated) paths.Add(nameof(HalfGemvPath.Vector128));
        if (Vector256.IsHardwareAccelerated) paths.Add(nameof(HalfGemvPath.Vector256));
        if (Vector512.IsHardwareAccelerated) paths.Add(nameof(HalfGemvPath.Vector512));
        return paths;
    }

    private static float Widen(ushort bits, HalfPrecision format) => format == HalfPrecision.BFloat16
        ? BitConverter.UInt32BitsToSingle((uint)bits << 16)
        : (float)BitConverter.UInt16BitsToHalf(bits);

    [Theory]
    [MemberData(nameof(Paths))]
    public void ProductMatchesDoubleReference(string pathName)
    {
        var path = Enum.Parse<HalfGemvPath>(pathName);
        using var team = new WorkerTeam(2);
        var random = new Random(7);
        foreach (var format in new[] { HalfPrecision.BFloat16, HalfPrecision.Float16 })
        foreach (int rows in new[] { 1, 3 })
        foreach (int k in new[] { 1, 5, 16, 48, 67, 773 })
        foreach (bool accumulate in new[] { false, true })
        {
            // n large enough to take the parallel path for the wider k.
            int n = 211, ldx = k + 3, ldy = n + 2;
            var x = new float[(rows - 1) * ldx + k];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
            var fp32 = new float[n * k];
            for (int i = 0; i < fp32.Length; i++) fp32[i] = (float)((random.NextDouble() * 2 - 1) * 0.1);
            var bits = new ushort[n * k];
            HalfWeights.Round(fp32, bits, format);
            var y = new float[(rows - 1) * ldy + n];
            for (int i = 0; i < y.Length; i++) y[i] = (float)random.NextDouble();
            var before = y.ToArray();

            HalfGemv.Multiply(path, team, format, rows, n, k, x, ldx, bits, accumulate, y, ldy);

            for (int i = 0; i < rows; i++)
            for (int j = 0; j < n; j++)
            {
                double dot = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double term = (double)x[i * ldx + p] * Widen(bits[j * k + p], format);
                    dot += term;
                    magnitude += Math.Abs(term);
                }
                if (accumulate) { dot += before[i * ldy + j]; magnitude += Math.Abs(before[i * ldy + j]); }
                // fp32 summation of k + 1 terms in any order: at most (k + 1)·2⁻²⁴ of the sum of magnitudes.
                double bound = (k + 1) * Math.ScaleB(1, -24) * magnitude + 1e-30;
                Assert.True(Math.Abs(y[i * ldy + j] - dot) <= bound,
                    $"{path} {format} rows {rows} k {k}: y[{i},{j}] = {y[i * ldy + j]}, expected {dot} ± {bound:E2}");
            }
            // Padding between rows of y is never written.
            for (int i = 0; i < rows - 1; i++)
                for (int j = n; j < ldy; j++)
                    Assert.Equal(before[i * ldy + j], y[i * ldy + j]);
        }
    }

    [Fact]
    public void VectorWideningsEqualScalarOnEveryBitPattern()
    {
        var patterns = new ushort[65536 + 16];
        for (int i = 0; i < 65536; i++) patterns[i] = (ushort)i;
        void Check(string width, int lanes, Func<nuint, float[]> bf16, Func<nuint, float[]> fp16)
        {
            for (nuint start = 0; start < 65536; start += (nuint)lanes)
            {
                var b = bf16(start);
                var f = fp16(start);
                for (int lane = 0; lane < lanes; lane++)
                {
                    ushort bits = patterns[(int)start + lane];
                    Assert.True(BitConverter.SingleToUInt32Bits(b[lane]) == BitConverter.SingleToUInt32Bits(Widen(bits, HalfPrecision.BFloat16)),
                        $"{width} bfloat16 0x{bits:X4}: {b[lane]}");
                    float expected = Widen(bits, HalfPrecision.Float16);
                    Assert.True(float.IsNaN(expected) ? float.IsNaN(f[lane]) : BitConverter.SingleToUInt32Bits(f[lane]) == BitConverter.SingleToUInt32Bits(expected),
                        $"{width} float16 0x{bits:X4}: {f[lane]}, expected {expected}");
                }
            }
        }
        // The software fallbacks of unaccelerated widths are checked too: they are what the kernels run there.
        Check("128", 4, s => ToArray(Widen128.BFloat16(ref patterns[0], s)), s => ToArray(Widen128.Float16(ref patterns[0], s)));
        Check("256", 8, s => ToArray(Widen256.BFloat16(ref patterns[0], s)), s => ToArray(Widen256.Float16(ref patterns[0], s)));
        Check("512", 16, s => ToArray(Widen512.BFloat16(ref patterns[0], s)), s => ToArray(Widen512.Float16(ref patterns[0], s)));
    }

    private static float[] ToArray(Vector128<float> v) { var a = new float[4]; v.CopyTo(a); return a; }
    private static float[] ToArray(Vector256<float> v) { var a = new float[8]; v.CopyTo(a); return a; }
    private static float[] ToArray(Vector512<float> v) { var a = new float[16]; v.CopyTo(a); return a; }

    [Fact]
    public void RoundingIsToNearestEven()
    {
        // 1 + 2⁻⁸ lies halfway between the bfloat16 neighbours 1 and 1 + 2⁻⁷: ties go to the even one, 1.
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: the even one is 1 + 2⁻⁶.
        var bits = new ushort[3];
        HalfWeights.Round([1f + MathF.ScaleB(1, -8), 1f + 3 * MathF.ScaleB(1, -8), 1f + MathF.ScaleB(1, -12)], bits, HalfPrecision.BFloat16);
        Assert.Equal([1f, 1f + MathF.ScaleB(1, -6), 1f], bits.Select(b => Widen(b, HalfPrecision.BFloat16)));
        // IEEE half: 1 + 2⁻¹¹ is the tie between 1 and 1 + 2⁻¹⁰; 70,000 overflows to ∞; 2⁻²⁴ is the smallest subnormal.
        HalfWeights.Round([1f + MathF.ScaleB(1, -11), 70000f, MathF.ScaleB(1, -24)], bits, HalfPrecision.Float16);
        Assert.Equal([1f, float.PositiveInfinity, MathF.ScaleB(1, -24)], bits.Select(b => Widen(b, HalfPrecision.Float16)));
    }

    [Fact]
    public void BadShapesAreRejected()
    {
        var x = new float[10];
        var y = new float[4];
        var ex = Assert.Throws<ArgumentException>(() => HalfGemv.Multiply(HalfPrecision.BFloat16, 1, 4, 10, x, 10, new ushort[39], false, y, 4));
        Assert.Contains("weights holds 39 values", ex.Message);
        Assert.Throws<ArgumentException>(() => HalfGemv.Multiply(HalfPrecision.BFloat16, 2, 4, 10, x, 10, new ushort[40], false, y, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => HalfGemv.Multiply((HalfPrecision)7, 1, 4, 10, x, 10, new ushort[40], false, y, 4));
    }
}
