using System.Runtime.CompilerServices;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MambaGen.Cpu;

/// <summary>
/// The operations CPU kernels need on one vector width, as static members of a struct so that a kernel written once,
/// generic over <typeparamref name="TVector"/> and the width, is compiled by the JIT into straight-line code for each
/// width (no interface calls remain). .NET keeps its own <c>ISimdVector</c> internal, hence this small trait.
/// </summary>
/// <typeparam name="TVector">The vector of <see cref="float"/> lanes, e.g. <see cref="Vector256{T}"/>.</typeparam>
public interface IVectorWidth<TVector> where TVector : struct
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Whether this width runs on vector hardware (a JIT-time constant).</summary>
    static abstract bool IsHardwareAccelerated { get; }

    static abstract TVector Zero { get; }
    static abstract TVector One { get; }
    static abstract TVector Create(float value);
    static abstract TVector Load(ref float source, nuint index);
    static abstract void Store(TVector value, ref float target, nuint index);
    static abstract TVector Add(TVector a, TVector b);
    static abstract TVector Subtract(TVector a, TVector b);
    static abstract TVector Multiply(TVector a, TVector b);
    static abstract TVector Divide(TVector a, TVector b);

    /// <summary>a·b + addend with one rounding.</summary>
    static abstract TVector Fma(TVector a, TVector b, TVector addend);
    /// <summary>
    /// a·b + addend, fused (one rounding) where the CPU has FMA, else a multiply and an add (two roundings). For the
    /// element-wise math and the scan, whose tolerances allow either: without FMA hardware <see cref="Fma"/> falls back
    /// to a per-lane software fma, about a hundred times slower.
    /// </summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector addend);
    static abstract float Sum(TVector value);
    static abstract float GetElement(TVector value, int lane);

    static abstract TVector Negate(TVector value);
    /// <summary>
    /// The smaller lane of each pair, in one instruction: where a lane of either is NaN the result is the hardware's
    /// (on x86 b's lane, on Arm NaN), so pass a possibly-NaN value as b to keep it NaN. (Vector512.Min's IEEE
    /// semantics cost five instructions unless an operand is a constant the JIT sees, which it does not through a trait.)
    /// </summary>
    static abstract TVector Min(TVector a, TVector b);
    /// <summary>The larger lane of each pair, in one instruction; NaN as for <see cref="Min"/>.</summary>
    static abstract TVector Max(TVector a, TVector b);
    static abstract TVector Abs(TVector value);
    /// <summary>Whether every lane of <paramref name="value"/> is ≤ the same lane of <paramref name="limit"/> (false where a lane is NaN).</summary>
    static abstract bool AllAtMost(TVector value, TVector limit);
    /// <summary>Each lane rounded to the nearest integer, ties to even.</summary>
    static abstract TVector Round(TVector value);
    static abstract TVector Floor(TVector value);
    /// <summary>All bits set in the lanes where a &gt; b, clear elsewhere (a mask for <see cref="ConditionalSelect"/>).</summary>
    static abstract TVector GreaterThan(TVector a, TVector b);
    /// <summary>Bitwise: the bits of <paramref name="ifTrue"/> where <paramref name="mask"/> has them set, else of <paramref name="ifFalse"/>.</summary>
    static abstract TVector ConditionalSelect(TVector mask, TVector ifTrue, TVector ifFalse);

    /// <summary>
    /// 2^e for integral lanes e in [−126, 127], built in the exponent bits: the normal powers of two only, hence
    /// <see cref="ScaleByPowerOfTwo"/> for products that may leave the normal range.
    /// </summary>
    static abstract TVector PowerOfTwo(TVector exponent);

    /// <summary>
    /// value·2^e for integral lanes e in [−252, 252], rounded once, so a product below the normal range is the correctly
    /// rounded subnormal (or 0) and one above it is ∞. AVX-512's vscalefps where the CPU has it, else two normal factors
    /// (see <see cref="VectorWidthShared.ScaleInHalves"/>).
    /// </summary>
    static abstract TVector ScaleByPowerOfTwo(TVector value, TVector exponent);

    /// <summary>
    /// Whether <see cref="ScaleByPowerOfTwo"/> is one instruction (AVX-512's vscalefps); without it, it takes two
    /// multiplies and their exponent arithmetic, which exp avoids where its result stays normal.
    /// </summary>
    static abstract bool HasScaleInstruction { get; }

    /// <summary>
    /// A mask of the lanes whose index has bit <paramref name="half"/> set (half a power of two below Count). With
    /// <see cref="SwapLanes"/> it forms the lane-sum butterfly; both are literal vectors once inlined with a constant half.
    /// </summary>
    static abstract TVector UpperLanes([ConstantExpected] int half);

    /// <summary>Lane l of the result is lane l ^ <paramref name="half"/> of <paramref name="value"/>.</summary>
    static abstract TVector SwapLanes(TVector value, [ConstantExpected] int half);
}

/// <summary>512-bit vectors (AVX-512).</summary>
public readonly struct Width512 : IVectorWidth<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static bool IsHardwareAccelerated => Vector512.IsHardwareAccelerated;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    public static Vector512<float> One => Vector512<float>.One;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Create(float value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(ref float source, nuint index) => Vector512.LoadUnsafe(ref source, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> value, ref float target, nuint index) => value.StoreUnsafe(ref target, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> addend) => Vector512.FusedMultiplyAdd(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> addend) => Vector512.MultiplyAddEstimate(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> value) => Vector512.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GetElement(Vector512<float> value, int lane) => value.GetElement(lane);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Negate(Vector512<float> value) => -value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Abs(Vector512<float> value) => Vector512.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AllAtMost(Vector512<float> value, Vector512<float> limit) => Vector512.LessThanOrEqualAll(value, limit);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Round(Vector512<float> value) => Vector512.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Floor(Vector512<float> value) => Vector512.Floor(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> GreaterThan(Vector512<float> a, Vector512<float> b) => Vector512.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ConditionalSelect(Vector512<float> mask, Vector512<float> ifTrue, Vector512<float> ifFalse) => Vector512.ConditionalSelect(mask, ifTrue, ifFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> PowerOfTwo(Vector512<float> exponent) => ((Vector512.ConvertToInt32Native(exponent) + Vector512.Create(127)) << 23).AsSingle();
    public static bool HasScaleInstruction => Avx512F.IsSupported;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScaleByPowerOfTwo(Vector512<float> value, Vector512<float> exponent) =>
        Avx512F.IsSupported ? Avx512F.Scale(value, exponent) : VectorWidthShared.ScaleInHalves<Vector512<float>, Width512>(value, exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> UpperLanes([ConstantExpected] int half) => half switch
    {
        8 => Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1).AsSingle(),
        4 => Vector512.Create(0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1).AsSingle(),
        2 => Vector512.Create(0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1).AsSingle(),
        1 => Vector512.Create(0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1).AsSingle(),
        _ => VectorWidthShared.NotAHalf<Vector512<float>>(half),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SwapLanes(Vector512<float> value, [ConstantExpected] int half) => half switch
    {
        8 => Vector512.Shuffle(value, Vector512.Create(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)),
        4 => Vector512.Shuffle(value, Vector512.Create(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11)),
        2 => Vector512.Shuffle(value, Vector512.Create(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13)),
        1 => Vector512.Shuffle(value, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)),
        _ => VectorWidthShared.NotAHalf<Vector512<float>>(half),
    };
}

/// <summary>256-bit vectors (AVX2).</summary>
public readonly struct Width256 : IVectorWidth<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static bool IsHardwareAccelerated => Vector256.IsHardwareAccelerated;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    public static Vector256<float> One => Vector256<float>.One;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Create(float value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(ref float source, nuint index) => Vector256.LoadUnsafe(ref source, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> value, ref float target, nuint index) => value.StoreUnsafe(ref target, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> addend) => Vector256.FusedMultiplyAdd(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> addend) => Vector256.MultiplyAddEstimate(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> value) => Vector256.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GetElement(Vector256<float> value, int lane) => value.GetElement(lane);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Negate(Vector256<float> value) => -value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Abs(Vector256<float> value) => Vector256.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AllAtMost(Vector256<float> value, Vector256<float> limit) => Vector256.LessThanOrEqualAll(value, limit);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Round(Vector256<float> value) => Vector256.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Floor(Vector256<float> value) => Vector256.Floor(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> GreaterThan(Vector256<float> a, Vector256<float> b) => Vector256.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ConditionalSelect(Vector256<float> mask, Vector256<float> ifTrue, Vector256<float> ifFalse) => Vector256.ConditionalSelect(mask, ifTrue, ifFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> PowerOfTwo(Vector256<float> exponent) => ((Vector256.ConvertToInt32Native(exponent) + Vector256.Create(127)) << 23).AsSingle();
    public static bool HasScaleInstruction => Avx512F.VL.IsSupported;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScaleByPowerOfTwo(Vector256<float> value, Vector256<float> exponent) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.Scale(value, exponent) : VectorWidthShared.ScaleInHalves<Vector256<float>, Width256>(value, exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> UpperLanes([ConstantExpected] int half) => half switch
    {
        4 => Vector256.Create(0, 0, 0, 0, -1, -1, -1, -1).AsSingle(),
        2 => Vector256.Create(0, 0, -1, -1, 0, 0, -1, -1).AsSingle(),
        1 => Vector256.Create(0, -1, 0, -1, 0, -1, 0, -1).AsSingle(),
        _ => VectorWidthShared.NotAHalf<Vector256<float>>(half),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SwapLanes(Vector256<float> value, [ConstantExpected] int half) => half switch
    {
        4 => Vector256.Shuffle(value, Vector256.Create(4, 5, 6, 7, 0, 1, 2, 3)),
        2 => Vector256.Shuffle(value, Vector256.Create(2, 3, 0, 1, 6, 7, 4, 5)),
        1 => Vector256.Shuffle(value, Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6)),
        _ => VectorWidthShared.NotAHalf<Vector256<float>>(half),
    };
}

/// <summary>128-bit vectors: SSE on x86, NEON on Arm64, and the portable software fallback everywhere else.</summary>
public readonly struct Width128 : IVectorWidth<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;
    public static bool IsHardwareAccelerated => Vector128.IsHardwareAccelerated;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    public static Vector128<float> One => Vector128<float>.One;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Create(float value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(ref float source, nuint index) => Vector128.LoadUnsafe(ref source, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> value, ref float target, nuint index) => value.StoreUnsafe(ref target, index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Divide(Vector128<float> a, Vector128<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> addend) => Vector128.FusedMultiplyAdd(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> addend) => Vector128.MultiplyAddEstimate(a, b, addend);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> value) => Vector128.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GetElement(Vector128<float> value, int lane) => value.GetElement(lane);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Negate(Vector128<float> value) => -value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Min(Vector128<float> a, Vector128<float> b) => Vector128.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Abs(Vector128<float> value) => Vector128.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AllAtMost(Vector128<float> value, Vector128<float> limit) => Vector128.LessThanOrEqualAll(value, limit);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Round(Vector128<float> value) => Vector128.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Floor(Vector128<float> value) => Vector128.Floor(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> GreaterThan(Vector128<float> a, Vector128<float> b) => Vector128.GreaterThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ConditionalSelect(Vector128<float> mask, Vector128<float> ifTrue, Vector128<float> ifFalse) => Vector128.ConditionalSelect(mask, ifTrue, ifFalse);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> PowerOfTwo(Vector128<float> exponent) => ((Vector128.ConvertToInt32Native(exponent) + Vector128.Create(127)) << 23).AsSingle();
    public static bool HasScaleInstruction => Avx512F.VL.IsSupported;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ScaleByPowerOfTwo(Vector128<float> value, Vector128<float> exponent) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.Scale(value, exponent) : VectorWidthShared.ScaleInHalves<Vector128<float>, Width128>(value, exponent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> UpperLanes([ConstantExpected] int half) => half switch
    {
        2 => Vector128.Create(0, 0, -1, -1).AsSingle(),
        1 => Vector128.Create(0, -1, 0, -1).AsSingle(),
        _ => VectorWidthShared.NotAHalf<Vector128<float>>(half),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SwapLanes(Vector128<float> value, [ConstantExpected] int half) => half switch
    {
        2 => Vector128.Shuffle(value, Vector128.Create(2, 3, 0, 1)),
        1 => Vector128.Shuffle(value, Vector128.Create(1, 0, 3, 2)),
        _ => VectorWidthShared.NotAHalf<Vector128<float>>(half),
    };
}

/// <summary>Width-independent formulas the width traits share.</summary>
internal static class VectorWidthShared
{
    /// <summary>
    /// The error for a lane distance that is not a power of two below the lane count. A throw statement inside
    /// UpperLanes or SwapLanes kept the JIT from inlining them into the lane-sum butterfly on 256-bit vectors (calls
    /// in place of single instructions, 5× slower); a call to this out-of-line method does not.
    /// </summary>
    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static T NotAHalf<T>(int half) => throw new ArgumentOutOfRangeException(nameof(half), half, "A power of two below the lane count.");

    /// <summary>
    /// value·2^e for integral e in [−252, 252] without a scale instruction, as two normal powers of two:
    /// e = ⌊e/2⌋ + (e − ⌊e/2⌋), each half in [−126, 126]. The first product only shifts the exponent, so it is exact
    /// while it stays normal (for exp's polynomial, in [½, 2], whenever e ≥ −250); the second rounds once, to the
    /// subnormal, 0 or ∞ the true product rounds to. One power of two alone cannot reach below 2^−126 or above 2^127.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector ScaleInHalves<TVector, TWidth>(TVector value, TVector exponent)
        where TVector : struct
        where TWidth : struct, IVectorWidth<TVector>
    {
        var lower = TWidth.Floor(TWidth.Multiply(exponent, TWidth.Create(0.5f)));
        var upper = TWidth.Subtract(exponent, lower);
        return TWidth.Multiply(TWidth.Multiply(value, TWidth.PowerOfTwo(lower)), TWidth.PowerOfTwo(upper));
    }
}
