using MambaGen.Checkpoints;

namespace MambaGen.Cpu;

/// <summary>
/// A 16-bit copy of a model's parameter vector, in the same layout (so every offset of <see cref="ParameterLayout"/>
/// addresses it too), for the products of a decode step (<see cref="HalfGemv"/>). Each value is the fp32 parameter
/// rounded to nearest, ties to even. The copy follows <see cref="MambaParameters.Version"/>: <see cref="For"/> converts
/// again whenever the parameters were marked changed since the last conversion.
/// </summary>
public sealed class HalfWeights
{
    private long _version;

    private HalfWeights(HalfPrecision format, ushort[] bits, long version)
    {
        Format = format;
        Bits = bits;
        _version = version;
    }

    /// <summary>The 16-bit format of <see cref="Bits"/>.</summary>
    public HalfPrecision Format { get; }

    /// <summary>Every parameter in <see cref="Format"/>, in layout order.</summary>
    public ushort[] Bits { get; }

    /// <summary><paramref name="parameters"/> rounded to <paramref name="format"/>.</summary>
    public static HalfWeights Create(MambaParameters parameters, HalfPrecision format)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (format is not (HalfPrecision.BFloat16 or HalfPrecision.Float16))
            throw new ArgumentOutOfRangeException(nameof(format), format, "Expected HalfPrecision.BFloat16 or HalfPrecision.Float16.");
        var weights = new HalfWeights(format, GC.AllocateUninitializedArray<ushort>(parameters.Values.Length), parameters.Version);
        Round(parameters.Values, weights.Bits, format);
        return weights;
    }

    /// <summary>This copy, converted again first if <paramref name="parameters"/> changed since it was made.</summary>
    public HalfWeights For(MambaParameters parameters)
    {
        if (parameters.Version != _version)
        {
            if (parameters.Values.Length != Bits.Length)
                throw new ArgumentException($"The parameters hold {parameters.Values.Length} values; this 16-bit copy was made for {Bits.Length}.", nameof(parameters));
            Round(parameters.Values, Bits, Format);
            _version = parameters.Version;
        }
        return this;
    }

    /// <summary>fp32 values rounded to nearest, ties to even, into 16-bit <paramref name="format"/>.</summary>
    public static void Round(ReadOnlySpan<float> values, Span<ushort> bits, HalfPrecision format)
    {
        if (bits.Length != values.Length)
            throw new ArgumentException($"{values.Length} values need as many 16-bit slots, not {bits.Length}.", nameof(bits));
        if (format == HalfPrecision.BFloat16)
            BFloat16.FromSingle(values, bits);
        else
            for (int i = 0; i < values.Length; i++) bits[i] = BitConverter.HalfToUInt16Bits((Half)values[i]);
    }

    /// <summary>The fp32 value of 16-bit <paramref name="bits"/> in <paramref name="format"/> (exact).</summary>
    public static float Widen(ushort bits, HalfPrecision format) => format == HalfPrecision.BFloat16
        ? BitConverter.UInt32BitsToSingle((uint)bits << 16)
        : (float)BitConverter.UInt16BitsToHalf(bits);
}
