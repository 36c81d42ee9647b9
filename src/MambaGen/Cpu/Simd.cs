using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>Span-level entry points of <see cref="Simd{TVector, TWidth}"/>, on the widest vectors the CPU runs natively.</summary>
public static class Simd
{
    /// <summary>Softplus switches to the identity above this input (PyTorch's default threshold).</summary>
    public const float SoftplusThreshold = 20f;

    /// <summary>
    /// y = exp(x) element-wise with <see cref="Simd{TVector, TWidth}.Exp(TVector)"/>'s formula (scalar tail in double).
    /// Used instead of TensorPrimitives.Exp, which on this runtime falls into a path ~100× slower when a vector holds
    /// exact integers such as the 0 of a max-shifted logit row or of log(1) in A_log.
    /// </summary>
    public static void Exp(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"Output has {y.Length} values, input {x.Length}.", nameof(y));
        // 128-bit vectors also serve CPUs without vector hardware: the portable fallback of a narrower vector does less
        // wasted work per element than that of a wider one.
        int done = Vector512.IsHardwareAccelerated ? Simd<Vector512<float>, Width512>.ExpWholeVectors(x, y)
                 : Vector256.IsHardwareAccelerated ? Simd<Vector256<float>, Width256>.ExpWholeVectors(x, y)
                 : Simd<Vector128<float>, Width128>.ExpWholeVectors(x, y);
        for (int i = done; i < x.Length; i++) y[i] = (float)Math.Exp(x[i]);
    }
}

/// <summary>
/// Element-wise math on whole vectors, used by the generated kernels: each function written once, for every vector
/// width <typeparamref name="TWidth"/> describes. The JIT compiles a copy per width struct, with every trait call
/// inlined, so the code is the same as if written against that width's vector type.
/// </summary>
/// <remarks>
/// <see cref="Exp(TVector)"/> splits x = n·ln 2 + r with n = round(x·log2 e) and r reduced in two steps (Cody–Waite:
/// ln 2 = high + low parts, n·high exact), evaluates e^r on |r| ≤ ½ ln 2 by a degree-6 polynomial (Chebyshev fit,
/// 2e-8 relative), then scales by 2^n with one rounding (<see cref="IVectorWidth{TVector}.ScaleByPowerOfTwo"/>:
/// AVX-512's vscalefps, else two normal powers of two, or one where every lane's result is normal). Max relative error
/// ≈ 1.2e-7 where e^x is normal (x ≥ −87.3), measured against double. Below that the result is the subnormal e^x rounds to, within one subnormal step (2^−149),
/// and 0 below about −103.3; above x ≈ 88.72 it is +∞. Nothing turns into NaN except NaN itself. The scan spends most of
/// its time here, so it is kept to about a dozen instructions and, like every function in this class, inlines.
/// </remarks>
public static class Simd<TVector, TWidth>
    where TVector : struct
    where TWidth : struct, IVectorWidth<TVector>
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2High = 0.693359375f, Ln2Low = -2.12194440e-4f;
    // Inputs are clamped to this range: beyond it e^x rounds to 0 or ∞ in fp32 anyway, and n stays an exact small
    // integer within what ScaleByPowerOfTwo takes (n ∈ [−150, 128]).
    private const float InputMin = -104f, InputMax = 89f;
    // Within ±86, n = round(x·log2 e) ∈ [−124, 124] and e^x is a normal float.
    private const float NormalInputBound = 86f;
    // e^r ≈ ((((((C6·r + C5)·r + C4)·r + C3)·r + C2)·r + C1)·r + 1 on |r| ≤ ½ ln 2.
    private const float C6 = 1.3941108481958508e-3f, C5 = 8.37512593716383e-3f, C4 = 4.166635125875473e-2f;
    private const float C3 = 0.16666415333747864f, C2 = 0.5f, C1 = 1f;

    // log1p(u) = 2·atanh(s), s = u/(2 + u) ∈ [0, 1/3] for u ∈ [0, 1]: the odd series 2s·Σ s^2k/(2k + 1), to k = 7
    // (truncation < 1.4e-8 relative). Every term is positive, so it stays accurate to a few ulps however small u is,
    // and, unlike Vector512.Log, it inlines: a call inside the scan loop would force every hoisted constant to spill.
    private const float Atanh1 = 1f / 3, Atanh2 = 1f / 5, Atanh3 = 1f / 7, Atanh4 = 1f / 9, Atanh5 = 1f / 11, Atanh6 = 1f / 13, Atanh7 = 1f / 15;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Exp(TVector x)
    {
        // Without a scale instruction (AVX2, SSE, NEON), when every lane has |x| ≤ NormalInputBound (as in nearly every
        // call the scan makes) the clamp is not needed and one normal power of two does the scaling: |n| ≤ 124, so
        // p·2^n is normal, hence exact, and the very value the general path below returns, in 5 fewer instructions of
        // about 23 (NaN and ±∞ take the general path).
        if (!TWidth.HasScaleInstruction && TWidth.AllAtMost(TWidth.Abs(x), TWidth.Create(NormalInputBound)))
        {
            var exponent = TWidth.Round(TWidth.Multiply(x, TWidth.Create(Log2E)));
            return TWidth.Multiply(ExpOfRemainder(x, exponent), TWidth.PowerOfTwo(exponent));
        }
        x = TWidth.Min(TWidth.Create(InputMax), TWidth.Max(TWidth.Create(InputMin), x));
        var n = TWidth.Round(TWidth.Multiply(x, TWidth.Create(Log2E)));
        return TWidth.ScaleByPowerOfTwo(ExpOfRemainder(x, n), n);
    }

    /// <summary>e^r for r = x − n·ln 2, n = round(x·log2 e): a value in [½, 2].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector ExpOfRemainder(TVector x, TVector n)
    {
        var r = TWidth.MultiplyAdd(n, TWidth.Create(-Ln2High), x);
        r = TWidth.MultiplyAdd(n, TWidth.Create(-Ln2Low), r);
        var p = TWidth.MultiplyAdd(TWidth.Create(C6), r, TWidth.Create(C5));
        p = TWidth.MultiplyAdd(p, r, TWidth.Create(C4));
        p = TWidth.MultiplyAdd(p, r, TWidth.Create(C3));
        p = TWidth.MultiplyAdd(p, r, TWidth.Create(C2));
        p = TWidth.MultiplyAdd(p, r, TWidth.Create(C1));
        return TWidth.MultiplyAdd(p, r, TWidth.One);
    }

    /// <summary>y = exp(x) for the leading whole vectors of x; returns how many elements it wrote.</summary>
    internal static int ExpWholeVectors(ReadOnlySpan<float> x, Span<float> y)
    {
        ref float source = ref MemoryMarshal.GetReference(x);
        ref float target = ref MemoryMarshal.GetReference(y);
        int i = 0;
        for (; i + TWidth.Count <= x.Length; i += TWidth.Count)
            TWidth.Store(Exp(TWidth.Load(ref source, (nuint)i)), ref target, (nuint)i);
        return i;
    }

    /// <summary>
    /// softplus(v) = v &gt; 20 ? v : log1p(exp(v)), as torch.nn.functional.softplus, evaluated as
    /// max(v, 0) + log1p(exp(−|v|)) so the logarithm only sees [1, 2] (see <see cref="Log1pUnit"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Softplus(TVector v) =>
        TWidth.ConditionalSelect(TWidth.GreaterThan(v, TWidth.Create(Simd.SoftplusThreshold)), v,
            TWidth.Add(TWidth.Max(TWidth.Zero, v), Log1pUnit(Exp(TWidth.Negate(TWidth.Abs(v))))));

    /// <summary>log(1 + u) for u ∈ [0, 1], to a few ulps relative even for tiny u.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Log1pUnit(TVector u)
    {
        var s = TWidth.Divide(u, TWidth.Add(TWidth.Create(2f), u));
        var s2 = TWidth.Multiply(s, s);
        var series = TWidth.MultiplyAdd(TWidth.Create(Atanh7), s2, TWidth.Create(Atanh6));
        series = TWidth.MultiplyAdd(series, s2, TWidth.Create(Atanh5));
        series = TWidth.MultiplyAdd(series, s2, TWidth.Create(Atanh4));
        series = TWidth.MultiplyAdd(series, s2, TWidth.Create(Atanh3));
        series = TWidth.MultiplyAdd(series, s2, TWidth.Create(Atanh2));
        series = TWidth.MultiplyAdd(series, s2, TWidth.Create(Atanh1));
        series = TWidth.MultiplyAdd(series, s2, TWidth.One);
        return TWidth.Multiply(TWidth.Add(s, s), series);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Sigmoid(TVector v) => TWidth.Divide(TWidth.One, TWidth.Add(TWidth.One, Exp(TWidth.Negate(v))));

    /// <summary>SiLU(v) = v·sigmoid(v).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Silu(TVector v) => TWidth.Multiply(v, Sigmoid(v));

    /// <summary>
    /// sums[i] += the sum of the lanes of vectors[i]. Count vectors at a time go through a butterfly of Count − 1 folds
    /// (for 16 lanes about 60 instructions instead of 16 separate horizontal sums' 130); the rest are summed one by one.
    /// The scan backward uses it to reduce a chunk's ∂B_t and ∂C_t products across a block's channels.
    /// </summary>
    // Compiled fully optimised at once, as the kernels that call it are: its tier-0 code calls every lane operation.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddLaneSums(ReadOnlySpan<TVector> vectors, Span<float> sums)
    {
        if (sums.Length < vectors.Length) throw new ArgumentException($"{vectors.Length} sums are needed, the output holds {sums.Length}.", nameof(sums));
        ref float target = ref MemoryMarshal.GetReference(sums);
        int i = 0;
        for (; i + TWidth.Count <= vectors.Length; i += TWidth.Count)
        {
            // Count is a JIT-time constant: only one of these stays.
            var v = vectors.Slice(i, TWidth.Count);
            var totals = TWidth.Count switch
            {
                16 => LaneSums8(Fold(v[0], v[8], 8), Fold(v[1], v[9], 8), Fold(v[2], v[10], 8), Fold(v[3], v[11], 8),
                                Fold(v[4], v[12], 8), Fold(v[5], v[13], 8), Fold(v[6], v[14], 8), Fold(v[7], v[15], 8)),
                8 => LaneSums8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]),
                _ => LaneSums4(v[0], v[1], v[2], v[3]),
            };
            TWidth.Store(TWidth.Add(TWidth.Load(ref target, (nuint)i), totals), ref target, (nuint)i);
        }
        for (; i < vectors.Length; i++) sums[i] += TWidth.Sum(vectors[i]);
    }

    /// <summary>
    /// One butterfly step: lanes without bit <paramref name="half"/> hold a's pairwise sums a[l] + a[l ^ half], lanes
    /// with it b's. Applied log2(Count) times to Count vectors it leaves vector i's full lane sum in lane i.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Fold(TVector a, TVector b, [ConstantExpected] int half)
    {
        var upper = TWidth.UpperLanes(half);
        return TWidth.Add(TWidth.ConditionalSelect(upper, b, a), TWidth.SwapLanes(TWidth.ConditionalSelect(upper, a, b), half));
    }

    /// <summary>Three butterfly steps on eight vectors: the last three of a 16-lane butterfly, the whole of an 8-lane one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector LaneSums8(TVector v0, TVector v1, TVector v2, TVector v3, TVector v4, TVector v5, TVector v6, TVector v7) =>
        LaneSums4(Fold(v0, v4, 4), Fold(v1, v5, 4), Fold(v2, v6, 4), Fold(v3, v7, 4));

    /// <summary>Two butterfly steps on four vectors: the last two of a wider butterfly, the whole of a 4-lane one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector LaneSums4(TVector v0, TVector v1, TVector v2, TVector v3) =>
        Fold(Fold(v0, v2, 2), Fold(v1, v3, 2), 1);
}
