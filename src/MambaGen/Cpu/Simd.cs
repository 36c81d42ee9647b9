using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MambaGen.Cpu;

/// <summary>
/// Element-wise math on whole vectors, used by the generated kernels. Each function has one overload per vector
/// width the kernels are emitted for (512 and 256 bits), with identical formulas, so the emitted kernel text is the
/// same for both widths apart from the vector type.
/// </summary>
/// <remarks>
/// <see cref="Exp(Vector512{float})"/> splits x = n·ln 2 + r with n = round(x·log2 e) and r reduced in two steps
/// (Cody–Waite: ln 2 = high + low parts, n·high exact), evaluates e^r on |r| ≤ ½ ln 2 by a degree-6 polynomial
/// (Chebyshev fit, 2e-8 relative), then scales by 2^n (AVX-512's vscalefps where available, else the exponent bits).
/// Max relative error ≈ 1.2e-7 on [−87, 88], measured against double. The scan spends most of its time here, so it
/// is kept to about a dozen instructions and, like every function in this class, inlines. Results underflow to 0 (or,
/// without AVX-512, to ≈ 6e-39) and overflow to +∞; nothing turns into NaN.
/// </remarks>
public static class Simd
{
    /// <summary>Softplus switches to the identity above this input (PyTorch's default threshold).</summary>
    public const float SoftplusThreshold = 20f;

    private const float Log2E = 1.44269504088896341f;
    private const float Ln2High = 0.693359375f, Ln2Low = -2.12194440e-4f;
    // Inputs are clamped to this range: beyond it e^x is 0 or ∞ in fp32 anyway, and n stays an exact small integer.
    private const float InputMin = -104f, InputMax = 89f;
    // Without vscalefps the scale is built in the exponent bits, which hold normal numbers only.
    private const float BitsExponentMin = -126f, BitsExponentMax = 127f;
    // e^r ≈ ((((((C6·r + C5)·r + C4)·r + C3)·r + C2)·r + C1)·r + 1 on |r| ≤ ½ ln 2.
    private const float C6 = 1.3941108481958508e-3f, C5 = 8.37512593716383e-3f, C4 = 4.166635125875473e-2f;
    private const float C3 = 0.16666415333747864f, C2 = 0.5f, C1 = 1f;

    // log1p(u) = 2·atanh(s), s = u/(2 + u) ∈ [0, 1/3] for u ∈ [0, 1]: the odd series 2s·Σ s^2k/(2k + 1), to k = 7
    // (truncation < 1.4e-8 relative). Every term is positive, so it stays accurate to a few ulps however small u is,
    // and, unlike Vector512.Log, it inlines: a call inside the scan loop would force every hoisted constant to spill.
    private const float Atanh1 = 1f / 3, Atanh2 = 1f / 5, Atanh3 = 1f / 7, Atanh4 = 1f / 9, Atanh5 = 1f / 11, Atanh6 = 1f / 13, Atanh7 = 1f / 15;

    /// <summary>
    /// y = exp(x) element-wise with <see cref="Exp(Vector512{float})"/>'s formula (scalar tail in double). Used instead of
    /// TensorPrimitives.Exp, which on this runtime falls into a path ~100× slower when a vector holds exact integers such
    /// as the 0 of a max-shifted logit row or of log(1) in A_log.
    /// </summary>
    public static void Exp(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"Output has {y.Length} values, input {x.Length}.", nameof(y));
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + Vector512<float>.Count <= x.Length; i += Vector512<float>.Count)
                Exp(Vector512.Create(x.Slice(i))).CopyTo(y.Slice(i));
        else
            for (; i + Vector256<float>.Count <= x.Length; i += Vector256<float>.Count)
                Exp(Vector256.Create(x.Slice(i))).CopyTo(y.Slice(i));
        for (; i < x.Length; i++) y[i] = (float)Math.Exp(x[i]);
    }

    // Lane masks and swaps of the lane-sum butterfly: Upper{h} selects lanes with bit h set, Swap{h} maps lane l to l ^ h.
    // Literal vectors, so the JIT embeds them as constants.
    private static Vector512<float> Upper8x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1).AsSingle();
    }
    private static Vector512<int> Swap8x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    }
    private static Vector512<float> Upper4x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1).AsSingle();
    }
    private static Vector512<int> Swap4x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    }
    private static Vector512<float> Upper2x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1).AsSingle();
    }
    private static Vector512<int> Swap2x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    }
    private static Vector512<float> Upper1x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1).AsSingle();
    }
    private static Vector512<int> Swap1x16
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    }
    private static Vector256<float> Upper4x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(0, 0, 0, 0, -1, -1, -1, -1).AsSingle();
    }
    private static Vector256<int> Swap4x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(4, 5, 6, 7, 0, 1, 2, 3);
    }
    private static Vector256<float> Upper2x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(0, 0, -1, -1, 0, 0, -1, -1).AsSingle();
    }
    private static Vector256<int> Swap2x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(2, 3, 0, 1, 6, 7, 4, 5);
    }
    private static Vector256<float> Upper1x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(0, -1, 0, -1, 0, -1, 0, -1).AsSingle();
    }
    private static Vector256<int> Swap1x8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6);
    }

    /// <summary>
    /// One butterfly step: lanes without bit h of the result hold a's pairwise sums a[l] + a[l ^ h], lanes with it b's.
    /// Applied log2(width) times to width vectors it leaves vector i's full lane sum in lane i.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fold(Vector512<float> a, Vector512<float> b, Vector512<float> upper, Vector512<int> swap) =>
        Vector512.ConditionalSelect(upper, b, a) + Vector512.Shuffle(Vector512.ConditionalSelect(upper, a, b), swap);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fold(Vector256<float> a, Vector256<float> b, Vector256<float> upper, Vector256<int> swap) =>
        Vector256.ConditionalSelect(upper, b, a) + Vector256.Shuffle(Vector256.ConditionalSelect(upper, a, b), swap);

    /// <summary>
    /// sums[i] += the sum of the lanes of vectors[i]. Sixteen vectors at a time go through a butterfly of 15 folds (about
    /// 60 instructions) instead of 16 separate horizontal sums (about 130); the rest are summed one by one. The scan
    /// backward uses it to reduce a chunk's ∂B_t and ∂C_t products across a block's channels.
    /// </summary>
    public static void AddLaneSums(ReadOnlySpan<Vector512<float>> vectors, Span<float> sums)
    {
        if (sums.Length < vectors.Length) throw new ArgumentException($"{vectors.Length} sums are needed, the output holds {sums.Length}.", nameof(sums));
        int i = 0;
        for (; i + 16 <= vectors.Length; i += 16)
        {
            var v = vectors.Slice(i, 16);
            var w0 = Fold(v[0], v[8], Upper8x16, Swap8x16);
            var w1 = Fold(v[1], v[9], Upper8x16, Swap8x16);
            var w2 = Fold(v[2], v[10], Upper8x16, Swap8x16);
            var w3 = Fold(v[3], v[11], Upper8x16, Swap8x16);
            var w4 = Fold(v[4], v[12], Upper8x16, Swap8x16);
            var w5 = Fold(v[5], v[13], Upper8x16, Swap8x16);
            var w6 = Fold(v[6], v[14], Upper8x16, Swap8x16);
            var w7 = Fold(v[7], v[15], Upper8x16, Swap8x16);
            var u0 = Fold(w0, w4, Upper4x16, Swap4x16);
            var u1 = Fold(w1, w5, Upper4x16, Swap4x16);
            var u2 = Fold(w2, w6, Upper4x16, Swap4x16);
            var u3 = Fold(w3, w7, Upper4x16, Swap4x16);
            var s0 = Fold(u0, u2, Upper2x16, Swap2x16);
            var s1 = Fold(u1, u3, Upper2x16, Swap2x16);
            var target = sums.Slice(i, 16);
            (Vector512.Create((ReadOnlySpan<float>)target) + Fold(s0, s1, Upper1x16, Swap1x16)).CopyTo(target);
        }
        for (; i < vectors.Length; i++) sums[i] += Vector512.Sum(vectors[i]);
    }

    /// <summary>sums[i] += the sum of the lanes of vectors[i], eight vectors at a time through a butterfly of 7 folds.</summary>
    public static void AddLaneSums(ReadOnlySpan<Vector256<float>> vectors, Span<float> sums)
    {
        if (sums.Length < vectors.Length) throw new ArgumentException($"{vectors.Length} sums are needed, the output holds {sums.Length}.", nameof(sums));
        int i = 0;
        for (; i + 8 <= vectors.Length; i += 8)
        {
            var v = vectors.Slice(i, 8);
            var w0 = Fold(v[0], v[4], Upper4x8, Swap4x8);
            var w1 = Fold(v[1], v[5], Upper4x8, Swap4x8);
            var w2 = Fold(v[2], v[6], Upper4x8, Swap4x8);
            var w3 = Fold(v[3], v[7], Upper4x8, Swap4x8);
            var u0 = Fold(w0, w2, Upper2x8, Swap2x8);
            var u1 = Fold(w1, w3, Upper2x8, Swap2x8);
            var target = sums.Slice(i, 8);
            (Vector256.Create((ReadOnlySpan<float>)target) + Fold(u0, u1, Upper1x8, Swap1x8)).CopyTo(target);
        }
        for (; i < vectors.Length; i++) sums[i] += Vector256.Sum(vectors[i]);
    }

    // ---- 512-bit ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(InputMin)), Vector512.Create(InputMax));
        var n = Vector512.Round(x * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2High), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Low), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(C6), r, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        if (Avx512F.IsSupported)
            return Avx512F.Scale(p, n);
        n = Vector512.Min(Vector512.Max(n, Vector512.Create(BitsExponentMin)), Vector512.Create(BitsExponentMax));
        return p * ((Vector512.ConvertToInt32Native(n) + Vector512.Create(127)) << 23).AsSingle();
    }

    /// <summary>
    /// softplus(v) = v &gt; 20 ? v : log1p(exp(v)), as torch.nn.functional.softplus, evaluated as
    /// max(v, 0) + log1p(exp(−|v|)) so the logarithm only sees [1, 2] (see <see cref="Log1pUnit(Vector512{float})"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Softplus(Vector512<float> v) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(v, Vector512.Create(SoftplusThreshold)), v,
            Vector512.Max(v, Vector512<float>.Zero) + Log1pUnit(Exp(-Vector512.Abs(v))));

    /// <summary>log(1 + u) for u ∈ [0, 1], to a few ulps relative even for tiny u.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Log1pUnit(Vector512<float> u)
    {
        var s = u / (Vector512.Create(2f) + u);
        var s2 = s * s;
        var series = Vector512.FusedMultiplyAdd(Vector512.Create(Atanh7), s2, Vector512.Create(Atanh6));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512.Create(Atanh5));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512.Create(Atanh4));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512.Create(Atanh3));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512.Create(Atanh2));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512.Create(Atanh1));
        series = Vector512.FusedMultiplyAdd(series, s2, Vector512<float>.One);
        return (s + s) * series;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Sigmoid(Vector512<float> v) => Vector512<float>.One / (Vector512<float>.One + Exp(-v));

    /// <summary>SiLU(v) = v·sigmoid(v).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Silu(Vector512<float> v) => v * Sigmoid(v);

    // ---- 256-bit: the same formulas ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(InputMin)), Vector256.Create(InputMax));
        var n = Vector256.Round(x * Vector256.Create(Log2E));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2High), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Low), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(C6), r, Vector256.Create(C5));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        if (Avx512F.VL.IsSupported)
            return Avx512F.VL.Scale(p, n);
        n = Vector256.Min(Vector256.Max(n, Vector256.Create(BitsExponentMin)), Vector256.Create(BitsExponentMax));
        return p * ((Vector256.ConvertToInt32Native(n) + Vector256.Create(127)) << 23).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Softplus(Vector256<float> v) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(v, Vector256.Create(SoftplusThreshold)), v,
            Vector256.Max(v, Vector256<float>.Zero) + Log1pUnit(Exp(-Vector256.Abs(v))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Log1pUnit(Vector256<float> u)
    {
        var s = u / (Vector256.Create(2f) + u);
        var s2 = s * s;
        var series = Vector256.FusedMultiplyAdd(Vector256.Create(Atanh7), s2, Vector256.Create(Atanh6));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256.Create(Atanh5));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256.Create(Atanh4));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256.Create(Atanh3));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256.Create(Atanh2));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256.Create(Atanh1));
        series = Vector256.FusedMultiplyAdd(series, s2, Vector256<float>.One);
        return (s + s) * series;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> v) => Vector256<float>.One / (Vector256<float>.One + Exp(-v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Silu(Vector256<float> v) => v * Sigmoid(v);
}
