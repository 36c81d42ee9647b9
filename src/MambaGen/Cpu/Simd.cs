using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MambaGen.Cpu;

/// <summary>
/// Element-wise math on whole vectors, used by the generated kernels. Each function has one overload per vector
/// width the kernels are emitted for (512 and 256 bits), with identical formulas, so the emitted kernel text is the
/// same for both widths apart from the vector type.
/// </summary>
/// <remarks>
/// <see cref="Exp(Vector512{float})"/> is a single-precision Cody–Waite reduction with a degree-6 polynomial
/// (max relative error ≈ 1.2e-7 on [−87, 88], measured against double); it is about twice as fast as
/// <c>Vector512.Exp</c>, which widens to double, and the scan spends most of its time in exp.
/// Inputs are clamped to [−87, 88]: results below ≈ 1.6e-38 come out as ≈ 1.6e-38 rather than 0, and nothing overflows.
/// </remarks>
public static class Simd
{
    /// <summary>Softplus switches to the identity above this input (PyTorch's default threshold).</summary>
    public const float SoftplusThreshold = 20f;

    private const float ExpInputMin = -87f;
    private const float ExpInputMax = 88f;
    private const float Log2E = 1.44269504088896341f;
    // ln 2 split so n·Ln2High is exact for the n that occur (Cody–Waite).
    private const float Ln2High = 0.693359375f;
    private const float Ln2Low = -2.12194440e-4f;
    // Minimax coefficients of (exp(r) − 1 − r)/r² on |r| ≤ ln2/2 (Cephes expf).
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f;
    private const float P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    // ---- 512-bit ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(ExpInputMin)), Vector512.Create(ExpInputMax));
        var n = Vector512.Round(x * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2High), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Low), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        var twoToN = (Vector512.ConvertToInt32Native(n) + Vector512.Create(127)) << 23;
        return p * twoToN.AsSingle();
    }

    /// <summary>softplus(v) = v &gt; 20 ? v : log1p(exp(v)), as torch.nn.functional.softplus.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Softplus(Vector512<float> v) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(v, Vector512.Create(SoftplusThreshold)), v, Log1p(Exp(v)));

    /// <summary>log(1 + u) for u ≥ 0, accurate for small u: log(w)·u/(w − 1) with w = 1 + u cancels w's rounding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Log1p(Vector512<float> u)
    {
        var w = Vector512<float>.One + u;
        var rounded = w - Vector512<float>.One;
        return Vector512.ConditionalSelect(Vector512.Equals(rounded, Vector512<float>.Zero), u, Vector512.Log(w) * (u / rounded));
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
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(ExpInputMin)), Vector256.Create(ExpInputMax));
        var n = Vector256.Round(x * Vector256.Create(Log2E));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2High), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Low), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
        p = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        var twoToN = (Vector256.ConvertToInt32Native(n) + Vector256.Create(127)) << 23;
        return p * twoToN.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Softplus(Vector256<float> v) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(v, Vector256.Create(SoftplusThreshold)), v, Log1p(Exp(v)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Log1p(Vector256<float> u)
    {
        var w = Vector256<float>.One + u;
        var rounded = w - Vector256<float>.One;
        return Vector256.ConditionalSelect(Vector256.Equals(rounded, Vector256<float>.Zero), u, Vector256.Log(w) * (u / rounded));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> v) => Vector256<float>.One / (Vector256<float>.One + Exp(-v));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Silu(Vector256<float> v) => v * Sigmoid(v);
}
