using System.Numerics;
using System.Runtime.InteropServices;

namespace MambaGen.Checkpoints;

/// <summary>
/// bfloat16 is the top half of an IEEE fp32: widening is a 16-bit shift, narrowing rounds the dropped half to
/// nearest, ties to even (what PyTorch's <c>.to(torch.bfloat16)</c> does).
/// </summary>
internal static class BFloat16
{
    public static void ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= source.Length - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out Vector<uint> low, out Vector<uint> high);
                (low << 16).CopyTo(bits[i..]);
                (high << 16).CopyTo(bits[(i + Vector<uint>.Count)..]);
            }
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    public static void FromSingle(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = FromSingle(source[i]);
    }

    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        // Keep a NaN a NaN: rounding could carry its payload into the exponent and turn it into infinity.
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint roundToNearestEven = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundToNearestEven) >> 16);
    }
}
