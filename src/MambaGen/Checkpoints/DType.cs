namespace MambaGen.Checkpoints;

/// <summary>Element types of the safetensors format (the header spells them as <see cref="DTypes.HeaderName"/>).</summary>
public enum DType
{
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// <summary>Sizes and header spellings of <see cref="DType"/>.</summary>
public static class DTypes
{
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
