namespace MambaGen.Checkpoints;

/// <summary>Element types of the safetensors format (the header spells them as <see cref="DTypes.HeaderName"/>).</summary>
public enum DType
{
    /// <summary>Boolean, one byte.</summary>
    Bool,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 4 exponent and 3 mantissa bits.</summary>
    F8E4M3,
    /// <summary>8-bit float, 5 exponent and 2 mantissa bits.</summary>
    F8E5M2,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16: float32 with the low 16 mantissa bits dropped.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single precision (what MambaGen computes in).</summary>
    F32,
    /// <summary>IEEE double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Sizes and header spellings of <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes one element of <paramref name="dtype"/> occupies.</summary>
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.Bool or DType.U8 or DType.I8 or DType.F8E4M3 or DType.F8E5M2 => 1,
        DType.I16 or DType.U16 or DType.F16 or DType.BF16 => 2,
        DType.I32 or DType.U32 or DType.F32 => 4,
        DType.F64 or DType.I64 or DType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
    };

    /// <summary>The dtype as the safetensors header writes it, e.g. <c>"BF16"</c> or <c>"F8_E4M3"</c>.</summary>
    public static string HeaderName(this DType dtype) => dtype switch
    {
        DType.Bool => "BOOL",
        DType.F8E4M3 => "F8_E4M3",
        DType.F8E5M2 => "F8_E5M2",
        _ => dtype.ToString(),
    };

    internal static bool TryParseHeaderName(string name, out DType dtype)
    {
        foreach (var candidate in Enum.GetValues<DType>())
        {
            if (candidate.HeaderName() == name)
            {
                dtype = candidate;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    internal static string KnownHeaderNames => string.Join(", ", Enum.GetValues<DType>().Select(d => d.HeaderName()));
}
