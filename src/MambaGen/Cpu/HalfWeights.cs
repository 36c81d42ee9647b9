using MambaGen.Checkpoints;

namespace MambaGen.Cpu;

/// <summary>
/// A model's parameter vector in a 16-bit format, in the same layout and segments (so every offset of
/// <see cref="ParameterLayout"/> addresses it too), for the products (<see cref="HalfGemv"/>). Either a copy of fp32
/// parameters (<see cref="Create"/>: each value rounded to nearest, ties to even, converted again by <see cref="For"/>
/// whenever the parameters were marked changed), or the weights of a 16-bit-only load as the checkpoint stored them
/// (<see cref="MambaParameters.SixteenBitWeights"/>).
/// </summary>
public sealed class HalfWeights
{
    private readonly SegmentedArray<ushort> _bits;
    private long _version;

    private HalfWeights(HalfPrecision format, SegmentedArray<ushort> bits, long version)
    {
        Format = format;
        _bits = bits;
        _version = version;
    }

    /// <summary>The 16-bit format of the values.</summary>
    public HalfPrecision Format { get; }

    /// <summary>The 16-bit values of the layout's <see cref="ParameterLayout.Segments"/>, in order.</summary>
    public IReadOnlyList<ushort[]> Segments => _bits.Blocks;

    /// <summary>The 16-bit elements [<paramref name="offset"/>, + <paramref name="length"/>) of the flat vector (inside one segment).</summary>
    public Span<ushort> Span(long offset, int length) => _bits.TryGetSpan(offset, length, out var span) ? span
        : throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Elements [{offset}, {offset} + {length}) are not inside one segment of the 16-bit weights.");

    /// <summary>Zero-filled 16-bit weights for <paramref name="layout"/>, which a 16-bit-only load fills.</summary>
    internal static HalfWeights Allocate(ParameterLayout layout, HalfPrecision format) =>
        new(RequireFormat(format), SegmentedArray<ushort>.ForSegments(layout), 0);

    /// <summary><paramref name="parameters"/> rounded to <paramref name="format"/>.</summary>
    public static HalfWeights Create(MambaParameters parameters, HalfPrecision format)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.SixteenBitWeights is not null) throw parameters.SixteenBitOnlyError("a rounded 16-bit copy");
        var weights = new HalfWeights(RequireFormat(format), SegmentedArray<ushort>.ForSegments(parameters.Layout), parameters.Version);
        weights.RoundFrom(parameters);
        return weights;
    }

    /// <summary>This copy, converted again first if <paramref name="parameters"/> changed since it was made.</summary>
    public HalfWeights For(MambaParameters parameters)
    {
        if (parameters.Version != _version)
        {
            if (parameters.Count != _bits.Blocks.Sum(b => (long)b.Length))
                throw new ArgumentException($"The parameters hold {parameters.Count} values; this 16-bit copy was made for {_bits.Blocks.Sum(b => (long)b.Length)}.", nameof(parameters));
            RoundFrom(parameters);
            _version = parameters.Version;
        }
        return this;
    }

    private void RoundFrom(MambaParameters parameters)
    {
        var values = parameters.Segments;
        for (int segment = 0; segment < values.Count; segment++) Round(values[segment], _bits.Blocks[segment], Format);
    }

    private static HalfPrecision RequireFormat(HalfPrecision format) => format is HalfPrecision.BFloat16 or HalfPrecision.Float16 ? format
        : throw new ArgumentOutOfRangeException(nameof(format), format, "Expected HalfPrecision.BFloat16 or HalfPrecision.Float16.");

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

    /// <summary>16-bit values in <paramref name="format"/> widened to fp32 (exact).</summary>
    public static void Widen(ReadOnlySpan<ushort> bits, Span<float> values, HalfPrecision format)
    {
        if (bits.Length != values.Length)
            throw new ArgumentException($"{bits.Length} 16-bit values need as many fp32 slots, not {values.Length}.", nameof(values));
        if (format == HalfPrecision.BFloat16)
            BFloat16.ToSingle(bits, values);
        else
            for (int i = 0; i < values.Length; i++) values[i] = (float)BitConverter.UInt16BitsToHalf(bits[i]);
    }

    /// <summary>The fp32 value of 16-bit <paramref name="bits"/> in <paramref name="format"/> (exact).</summary>
    public static float Widen(ushort bits, HalfPrecision format) => format == HalfPrecision.BFloat16
        ? BitConverter.UInt32BitsToSingle((uint)bits << 16)
        : (float)BitConverter.UInt16BitsToHalf(bits);
}
