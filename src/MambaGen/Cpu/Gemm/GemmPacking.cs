using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MambaGen.Cpu;

/// <summary>
/// Copies blocks of A and B into the panel layout the micro-kernels stream: a panel of <c>width</c> lanes stores,
/// for each depth step p, <c>width</c> consecutive floats (lanes past the matrix edge are zero, so edge tiles run
/// the same kernel). Every operand reduces to one of two source shapes: lanes contiguous in memory (a plain copy
/// per depth step) or depth contiguous (a transpose, done 8×8 at a time with AVX where available).
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>
    /// Packs lane l, depth p from <c>source[p·stride + l]</c> (lanes contiguous) for l &lt; lanes, p &lt; depth.
    /// </summary>
    public static void PackLanesContiguous(float* source, nint stride, int lanes, int depth, float* panel, int width)
    {
        // A full panel (all but the last one of a ragged edge) is copied in whole vectors, inline: a copy call per
        // depth step, 64 bytes on AVX2, cost more than the copy itself.
        if (lanes == width && Vector512.IsHardwareAccelerated && width % Width512.Count == 0)
        {
            CopyRows<Vector512<float>, Width512>(source, stride, depth, panel, width);
            return;
        }
        if (lanes == width && Vector256.IsHardwareAccelerated && width % Width256.Count == 0)
        {
            CopyRows<Vector256<float>, Width256>(source, stride, depth, panel, width);
            return;
        }

        for (int p = 0; p < depth; p++, source += stride, panel += width)
        {
            new ReadOnlySpan<float>(source, lanes).CopyTo(new Span<float>(panel, lanes));
            new Span<float>(panel + lanes, width - lanes).Clear();
        }
    }

    /// <summary>panel[p·width + l] = source[p·stride + l] for every lane of every depth step; width is a multiple of the vector's lanes.</summary>
    private static void CopyRows<TVector, TWidth>(float* source, nint stride, int depth, float* panel, int width)
        where TVector : struct
        where TWidth : struct, IVectorWidth<TVector>
    {
        for (int p = 0; p < depth; p++, source += stride, panel += width)
            for (int l = 0; l < width; l += TWidth.Count)
                TWidth.Store(TWidth.Load(ref source[l], 0), ref panel[l], 0);
    }

    /// <summary>
    /// Packs lane l, depth p from <c>source[l·stride + p]</c> (depth contiguous) for l &lt; lanes, p &lt; depth.
    /// </summary>
    public static void PackDepthContiguous(float* source, nint stride, int lanes, int depth, float* panel, int width)
    {
        int lane = 0;
        if (Avx.IsSupported)
        {
            for (; lane + 8 <= lanes; lane += 8)
            {
                float* rows = source + lane * stride;
                int p = 0;
                for (; p + 8 <= depth; p += 8)
                    Transpose8x8(rows + p, stride, panel + (nint)p * width + lane, width);
                for (; p < depth; p++)
                    for (int l = 0; l < 8; l++)
                        panel[(nint)p * width + lane + l] = rows[l * stride + p];
            }
        }

        for (; lane < lanes; lane++)
        {
            float* row = source + lane * stride;
            for (int p = 0; p < depth; p++)
                panel[(nint)p * width + lane] = row[p];
        }

        if (lanes < width)
            for (int p = 0; p < depth; p++)
                new Span<float>(panel + (nint)p * width + lanes, width - lanes).Clear();
    }

    /// <summary>Writes the transpose of the 8×8 block at <paramref name="source"/> (row stride given) to <paramref name="target"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* source, nint sourceStride, float* target, nint targetStride)
    {
        var r0 = Avx.LoadVector256(source);
        var r1 = Avx.LoadVector256(source + sourceStride);
        var r2 = Avx.LoadVector256(source + 2 * sourceStride);
        var r3 = Avx.LoadVector256(source + 3 * sourceStride);
        var r4 = Avx.LoadVector256(source + 4 * sourceStride);
        var r5 = Avx.LoadVector256(source + 5 * sourceStride);
        var r6 = Avx.LoadVector256(source + 6 * sourceStride);
        var r7 = Avx.LoadVector256(source + 7 * sourceStride);

        // Interleave pairs of rows, then pairs of pairs: each 128-bit half now holds a 4×4 transposed quarter.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);

        // Join the low halves (columns 0-3) and the high halves (columns 4-7) of rows 0-3 and 4-7.
        Avx.Store(target, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(target + targetStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(target + 2 * targetStride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(target + 3 * targetStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(target + 4 * targetStride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(target + 5 * targetStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(target + 6 * targetStride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(target + 7 * targetStride, Avx.Permute2x128(u3, u7, 0x31));
    }
}
