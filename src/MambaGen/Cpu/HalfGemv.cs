using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>The 16-bit float formats weights can be kept in for decoding.</summary>
public enum HalfPrecision
{
    /// <summary>bfloat16: fp32's sign, 8 exponent bits and the top 7 mantissa bits (fp32's range, 2⁻⁸ relative rounding).</summary>
    BFloat16,

    /// <summary>IEEE half: 5 exponent and 10 mantissa bits (2⁻¹¹ relative rounding, magnitudes up to 65,504).</summary>
    Float16,
}

/// <summary>
/// y = x·Wᵀ (+ y) for a few rows x, with W (n × k, row-major) held in a 16-bit format and widened to fp32 in registers:
/// the matrix–vector products of a decode step, which read every weight once per token and so are bound by memory,
/// read half the bytes of fp32 weights. Products and sums are fp32 (fused where the CPU has FMA), so the result is the
/// fp32 product of x with the 16-bit-rounded weights, up to the order of the additions.
/// </summary>
public static unsafe class HalfGemv
{
    /// <summary>Products below this many multiply-adds run on the calling thread alone (waking a helper costs more).</summary>
    private const long ParallelThresholdMacs = 1L << 17;

    /// <summary>The kernel this machine runs: the widest vector unit it has, else plain scalar code.</summary>
    internal static HalfGemvPath BestPath { get; } =
        Vector512.IsHardwareAccelerated ? HalfGemvPath.Vector512
        : Vector256.IsHardwareAccelerated ? HalfGemvPath.Vector256
        : Vector128.IsHardwareAccelerated ? HalfGemvPath.Vector128
        : HalfGemvPath.Scalar;

    /// <summary>The path <see cref="Multiply(HalfPrecision, int, int, int, ReadOnlySpan{float}, int, ReadOnlySpan{ushort}, bool, Span{float}, int)"/> takes on this machine, for reports.</summary>
    public static string BestPathName => BestPath.ToString();

    /// <summary>
    /// y[i, j] = Σₚ x[i, p]·w[j, p] (+ y[i, j] when <paramref name="accumulate"/>) for i &lt; <paramref name="rows"/>,
    /// j &lt; <paramref name="n"/>, p &lt; <paramref name="k"/>; x has row stride <paramref name="ldx"/>, w row stride
    /// <paramref name="k"/>, y row stride <paramref name="ldy"/>. Uses every thread of <see cref="WorkerPool"/> for large
    /// products. y must not overlap x.
    /// </summary>
    public static void Multiply(HalfPrecision format, int rows, int n, int k, ReadOnlySpan<float> x, int ldx,
        ReadOnlySpan<ushort> weights, bool accumulate, Span<float> y, int ldy)
        => Multiply(BestPath, WorkerPool.Shared, format, rows, n, k, x, ldx, weights, accumulate, y, ldy);

    /// <summary>The product on a chosen path and team, so tests can run every path this machine has.</summary>
    internal static void Multiply(HalfGemvPath path, WorkerTeam team, HalfPrecision format, int rows, int n, int k,
        ReadOnlySpan<float> x, int ldx, ReadOnlySpan<ushort> weights, bool accumulate, Span<float> y, int ldy)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (format is not (HalfPrecision.BFloat16 or HalfPrecision.Float16))
            throw new ArgumentOutOfRangeException(nameof(format), format, "Expected HalfPrecision.BFloat16 or HalfPrecision.Float16.");
        RequireMatrix(nameof(x), x.Length, rows, k, ldx);
        RequireMatrix(nameof(weights), weights.Length, n, k, k);
        RequireMatrix(nameof(y), y.Length, rows, n, ldy);
        if (rows == 0 || n == 0) return;

        fixed (float* px = x, py = y)
        fixed (ushort* pw = weights)
        {
            var job = Job.ForCallingThread();
            job.Problem = new Problem(path, format, rows, n, k, px, ldx, pw, accumulate, py, ldy);
            long macs = (long)rows * n * k;
            int threads = macs >= ParallelThresholdMacs ? team.UsableThreads : 1;
            if (threads == 1)
            {
                job.Problem.Run(0, n);
                return;
            }
            // Four chunks per thread even out threads that start late; a chunk spans at least 16 outputs.
            job.ChunkSize = Math.Max(16, (n + 4 * threads - 1) / (4 * threads));
            team.For((n + job.ChunkSize - 1) / job.ChunkSize, job.Body, threads);
        }
    }

    private static void RequireMatrix(string name, int length, int rowCount, int columns, int stride)
    {
        if (stride < columns)
            throw new ArgumentException($"The row stride of {name} is {stride}, smaller than its {columns} columns.", name);
        long needed = rowCount == 0 || columns == 0 ? 0 : (long)(rowCount - 1) * stride + columns;
        if (length < needed)
            throw new ArgumentException($"{name} holds {length} values, but {rowCount} rows of {columns} with stride {stride} need {needed}.", name);
    }

    /// <summary>One call's operands as raw pointers (pinned for the duration of the call).</summary>
    private readonly struct Problem(HalfGemvPath path, HalfPrecision format, int rows, int n, int k,
        float* x, int ldx, ushort* weights, bool accumulate, float* y, int ldy)
    {
        /// <summary>Outputs per row.</summary>
        public int N => n;

        /// <summary>Outputs [first, end) of every row.</summary>
        public void Run(int first, int end)
        {
            bool bf16 = format == HalfPrecision.BFloat16;
            switch (path)
            {
                case HalfGemvPath.Vector512 when bf16: Rows<Vector512<float>, Width512, Widen512, BFloat16Bits>(first, end); break;
                case HalfGemvPath.Vector512: Rows<Vector512<float>, Width512, Widen512, Float16Bits>(first, end); break;
                case HalfGemvPath.Vector256 when bf16: Rows<Vector256<float>, Width256, Widen256, BFloat16Bits>(first, end); break;
                case HalfGemvPath.Vector256: Rows<Vector256<float>, Width256, Widen256, Float16Bits>(first, end); break;
                case HalfGemvPath.Vector128 when bf16: Rows<Vector128<float>, Width128, Widen128, BFloat16Bits>(first, end); break;
                case HalfGemvPath.Vector128: Rows<Vector128<float>, Width128, Widen128, Float16Bits>(first, end); break;
                default: ScalarRows(bf16, first, end); break;
            }
        }

        /// <summary>
        /// Each weight row is read from memory once and dotted with every row of x while it is in L1 (x itself, a few KB,
        /// stays there throughout).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Rows<TVector, TWidth, TWiden, TFormat>(int first, int end)
            where TVector : struct
            where TWidth : struct, IVectorWidth<TVector>
            where TWiden : struct, IHalfWiden<TVector>
            where TFormat : struct, IHalfFormat
        {
            for (int j = first; j < end; j++)
            {
                ref ushort w = ref Unsafe.AsRef<ushort>(weights + (nint)j * k);
                for (int i = 0; i < rows; i++)
                {
                    float dot = Dot<TVector, TWidth, TWiden, TFormat>(ref Unsafe.AsRef<float>(x + (nint)i * ldx), ref w, k);
                    float* target = y + (nint)i * ldy + j;
                    *target = accumulate ? *target + dot : dot;
                }
            }
        }

        private void ScalarRows(bool bf16, int first, int end)
        {
            for (int j = first; j < end; j++)
            {
                ushort* w = weights + (nint)j * k;
                for (int i = 0; i < rows; i++)
                {
                    float* xi = x + (nint)i * ldx;
                    float dot = 0;
                    for (int p = 0; p < k; p++)
                        dot += xi[p] * (bf16 ? BitConverter.UInt32BitsToSingle((uint)w[p] << 16) : (float)BitConverter.UInt16BitsToHalf(w[p]));
                    float* target = y + (nint)i * ldy + j;
                    *target = accumulate ? *target + dot : dot;
                }
            }
        }
    }

    /// <summary>Σ x[p]·w[p] over k values: four independent accumulator chains hide the multiply-add latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TVector, TWidth, TWiden, TFormat>(ref float x, ref ushort w, int k)
        where TVector : struct
        where TWidth : struct, IVectorWidth<TVector>
        where TWiden : struct, IHalfWiden<TVector>
        where TFormat : struct, IHalfFormat
    {
        nuint count = (nuint)TWidth.Count, length = (nuint)k, p = 0;
        TVector acc0 = TWidth.Zero, acc1 = TWidth.Zero, acc2 = TWidth.Zero, acc3 = TWidth.Zero;
        for (; p + 4 * count <= length; p += 4 * count)
        {
            acc0 = TWidth.MultiplyAdd(TWidth.Load(ref x, p), Widen<TVector, TWiden, TFormat>(ref w, p), acc0);
            acc1 = TWidth.MultiplyAdd(TWidth.Load(ref x, p + count), Widen<TVector, TWiden, TFormat>(ref w, p + count), acc1);
            acc2 = TWidth.MultiplyAdd(TWidth.Load(ref x, p + 2 * count), Widen<TVector, TWiden, TFormat>(ref w, p + 2 * count), acc2);
            acc3 = TWidth.MultiplyAdd(TWidth.Load(ref x, p + 3 * count), Widen<TVector, TWiden, TFormat>(ref w, p + 3 * count), acc3);
        }
        for (; p + count <= length; p += count)
            acc0 = TWidth.MultiplyAdd(TWidth.Load(ref x, p), Widen<TVector, TWiden, TFormat>(ref w, p), acc0);
        float dot = TWidth.Sum(TWidth.Add(TWidth.Add(acc0, acc1), TWidth.Add(acc2, acc3)));
        for (; p < length; p++)
            dot += Unsafe.Add(ref x, p) * ScalarWiden<TFormat>(Unsafe.Add(ref w, p));
        return dot;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Widen<TVector, TWiden, TFormat>(ref ushort w, nuint index)
        where TVector : struct
        where TWiden : struct, IHalfWiden<TVector>
        where TFormat : struct, IHalfFormat
        => TFormat.IsBFloat16 ? TWiden.BFloat16(ref w, index) : TWiden.Float16(ref w, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ScalarWiden<TFormat>(ushort bits) where TFormat : struct, IHalfFormat
        => TFormat.IsBFloat16 ? BitConverter.UInt32BitsToSingle((uint)bits << 16) : (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>
    /// One parallel call's state, kept in an object reused by its calling thread so that a decode step allocates nothing.
    /// </summary>
    private sealed class Job
    {
        [ThreadStatic] private static Job? _forThread;

        public Problem Problem;
        public int ChunkSize;
        public readonly Action<int> Body;

        private Job() => Body = RunChunk;

        public static Job ForCallingThread() => _forThread ??= new Job();

        private void RunChunk(int chunk) =>
            Problem.Run(chunk * ChunkSize, Math.Min(Problem.N, (chunk + 1) * ChunkSize));
    }

}

/// <summary>The code paths of <see cref="HalfGemv"/>.</summary>
internal enum HalfGemvPath
{
    /// <summary>One weight at a time, converted by <see cref="BitConverter"/>: for machines without vector hardware.</summary>
    Scalar,
    Vector128,
    Vector256,
    Vector512,
}

/// <summary>Which 16-bit format a kernel instance reads (a JIT-time constant).</summary>
internal interface IHalfFormat
{
    static abstract bool IsBFloat16 { get; }
}

internal readonly struct BFloat16Bits : IHalfFormat
{
    public static bool IsBFloat16 => true;
}

internal readonly struct Float16Bits : IHalfFormat
{
    public static bool IsBFloat16 => false;
}

/// <summary>
/// Loads as many 16-bit values as a vector of floats has lanes and widens them to fp32, for one vector width.
/// bfloat16 is the top half of an fp32, so widening is a 16-bit shift. IEEE half has no conversion instruction that
/// .NET 10 exposes, so it is widened in integer lanes, each case exactly: a normal half's exponent and mantissa bits
/// shifted into fp32's places, plus the difference of the exponent biases (127 − 15) in the exponent field; a subnormal
/// half's mantissa m converted to fp32 and scaled by 2⁻²⁴ (its value is m·2⁻²⁴, a normal fp32); the all-ones exponent
/// as fp32's ∞ or NaN; the sign bit moved over last. No step computes on an fp32 subnormal: with weights from a
/// trained or random model a few lanes in a thousand are half subnormals, and a multiply with a subnormal operand (the
/// shorter route of multiplying the shifted bits by 2¹¹²) took a microcode assist that made decoding 2–4× slower.
/// </summary>
internal interface IHalfWiden<TVector> where TVector : struct
{
    static abstract TVector BFloat16(ref ushort source, nuint index);
    static abstract TVector Float16(ref ushort source, nuint index);
}

/// <summary>The IEEE half widening's constants, shared by every width.</summary>
internal static class Float16Widening
{
    public const uint MagnitudeMask = 0x7FFF;
    public const uint ExponentMask = 0x7C00;
    public const uint SignMask = 0x8000;
    public const uint Fp32ExponentBits = 0x7F80_0000;
    /// <summary>(127 − 15) in fp32's exponent field: moves a normal half's exponent from fp16's bias to fp32's.</summary>
    public const uint BiasDifference = 112u << 23;
    /// <summary>2⁻²⁴, the value of a half subnormal's mantissa unit.</summary>
    public const float SubnormalUnit = 5.9604645e-8f;
}

internal readonly struct Widen512 : IHalfWiden<Vector512<float>>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> BFloat16(ref ushort source, nuint index) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.LoadUnsafe(ref source, index).ToVector512Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Float16(ref ushort source, nuint index)
    {
        var bits = Vector512.WidenLower(Vector256.LoadUnsafe(ref source, index).ToVector512Unsafe());
        var magnitude = bits & Vector512.Create(Float16Widening.MagnitudeMask);
        var exponent = bits & Vector512.Create(Float16Widening.ExponentMask);
        var normal = Vector512.ShiftLeft(magnitude, 13) + Vector512.Create(Float16Widening.BiasDifference);
        var subnormal = (Vector512.ConvertToSingle(magnitude.AsInt32()) * Vector512.Create(Float16Widening.SubnormalUnit)).AsUInt32();
        var special = Vector512.ShiftLeft(magnitude, 13) | Vector512.Create(Float16Widening.Fp32ExponentBits);
        var value = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<uint>.Zero), subnormal,
            Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512.Create(Float16Widening.ExponentMask)), special, normal));
        return (value | Vector512.ShiftLeft(bits & Vector512.Create(Float16Widening.SignMask), 16)).AsSingle();
    }
}

internal readonly struct Widen256 : IHalfWiden<Vector256<float>>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> BFloat16(ref ushort source, nuint index) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.LoadUnsafe(ref source, index).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Float16(ref ushort source, nuint index)
    {
        var bits = Vector256.WidenLower(Vector128.LoadUnsafe(ref source, index).ToVector256Unsafe());
        var magnitude = bits & Vector256.Create(Float16Widening.MagnitudeMask);
        var exponent = bits & Vector256.Create(Float16Widening.ExponentMask);
        var normal = Vector256.ShiftLeft(magnitude, 13) + Vector256.Create(Float16Widening.BiasDifference);
        var subnormal = (Vector256.ConvertToSingle(magnitude.AsInt32()) * Vector256.Create(Float16Widening.SubnormalUnit)).AsUInt32();
        var special = Vector256.ShiftLeft(magnitude, 13) | Vector256.Create(Float16Widening.Fp32ExponentBits);
        var value = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<uint>.Zero), subnormal,
            Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256.Create(Float16Widening.ExponentMask)), special, normal));
        return (value | Vector256.ShiftLeft(bits & Vector256.Create(Float16Widening.SignMask), 16)).AsSingle();
    }
}

internal readonly struct Widen128 : IHalfWiden<Vector128<float>>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> BFloat16(ref ushort source, nuint index) =>
        Vector128.ShiftLeft(Vector128.WidenLower(Vector64.LoadUnsafe(ref source, index).ToVector128Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Float16(ref ushort source, nuint index)
    {
        var bits = Vector128.WidenLower(Vector64.LoadUnsafe(ref source, index).ToVector128Unsafe());
        var magnitude = bits & Vector128.Create(Float16Widening.MagnitudeMask);
        var exponent = bits & Vector128.Create(Float16Widening.ExponentMask);
        var normal = Vector128.ShiftLeft(magnitude, 13) + Vector128.Create(Float16Widening.BiasDifference);
        var subnormal = (Vector128.ConvertToSingle(magnitude.AsInt32()) * Vector128.Create(Float16Widening.SubnormalUnit)).AsUInt32();
        var special = Vector128.ShiftLeft(magnitude, 13) | Vector128.Create(Float16Widening.Fp32ExponentBits);
        var value = Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128<uint>.Zero), subnormal,
            Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128.Create(Float16Widening.ExponentMask)), special, normal));
        return (value | Vector128.ShiftLeft(bits & Vector128.Create(Float16Widening.SignMask), 16)).AsSingle();
    }
}
