using System.Globalization;

namespace MambaGen;

/// <summary>Which kind of processor a model runs on.</summary>
public enum DeviceKind
{
    /// <summary>The CPU, with the generated SIMD kernels (the default).</summary>
    Cpu = 0,

    /// <summary>An NVIDIA GPU through the CUDA driver, NVRTC and cuBLAS.</summary>
    Cuda = 1,
}

/// <summary>The arithmetic a GPU model computes in. Parameters, optimizer state and gradients stay fp32 in every mode.</summary>
public enum GpuPrecision
{
    /// <summary>fp32 throughout: matches the CPU path to fp32 rounding (the default).</summary>
    Float32 = 0,

    /// <summary>
    /// bf16 compute with fp32 master weights: matrix products on tensor cores with bf16 inputs and fp32
    /// accumulation, activations stored as bf16; the residual stream, norm statistics, scan states, reductions,
    /// weights and their gradients stay fp32. About 3 significant digits per activation, so results match the fp32
    /// path within a relative 3e-2.
    /// </summary>
    BFloat16 = 1,
}

/// <summary>
/// Where a model runs: <see cref="Cpu"/> or <see cref="Cuda(int, GpuPrecision)"/> with a device ordinal and the GPU's
/// <see cref="GpuPrecision"/>. Parsed from and printed as <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (the spelling
/// PyTorch uses), with <c>:bf16</c> appended for bf16 compute (<c>cuda:bf16</c>, <c>cuda:0:bf16</c>).
/// </summary>
public readonly record struct Device
{
    private Device(DeviceKind kind, int ordinal, GpuPrecision precision)
    {
        Kind = kind;
        Ordinal = ordinal;
        Precision = precision;
    }

    /// <summary>CPU or CUDA.</summary>
    public DeviceKind Kind { get; }

    /// <summary>The GPU's ordinal in CUDA's enumeration; 0 for the CPU.</summary>
    public int Ordinal { get; }

    /// <summary>The arithmetic of a CUDA model (<see cref="GpuPrecision.Float32"/> for the CPU, which has no other).</summary>
    public GpuPrecision Precision { get; }

    /// <summary>The CPU.</summary>
    public static Device Cpu => default;

    /// <summary>The CUDA GPU with the given ordinal (0 is the first), computing in <paramref name="precision"/>.</summary>
    public static Device Cuda(int ordinal = 0, GpuPrecision precision = GpuPrecision.Float32)
    {
        if (ordinal < 0) throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, "A CUDA device ordinal is 0 or more.");
        if (!Enum.IsDefined(precision))
            throw new ArgumentOutOfRangeException(nameof(precision), precision, $"GpuPrecision must be Float32 or BFloat16; got {(int)precision}.");
        return new Device(DeviceKind.Cuda, ordinal, precision);
    }

    /// <summary>
    /// Reads <c>cpu</c>, <c>cuda</c> (ordinal 0) or <c>cuda:N</c>, each CUDA form optionally followed by <c>:bf16</c>
    /// or <c>:fp32</c>, case-insensitively.
    /// </summary>
    public static Device Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Trim().ToLowerInvariant().Split(':');
        if (parts is ["cpu"]) return Cpu;
        if (parts[0] == "cuda" && parts.Length <= 3)
        {
            var precision = GpuPrecision.Float32;
            int ordinal = 0;
            bool valid = true;
            for (int i = 1; i < parts.Length && valid; i++)
            {
                if (i == parts.Length - 1 && TryParsePrecision(parts[i], out precision)) continue;
                valid = i == 1 && int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ordinal);
            }
            if (valid) return Cuda(ordinal, precision);
        }
        throw new FormatException($"'{text}' is not a device: expected 'cpu', 'cuda' or 'cuda:N' with N a device ordinal, " +
                                  "optionally followed by ':bf16' or ':fp32' (e.g. 'cuda:0:bf16').");
    }

    private static bool TryParsePrecision(string text, out GpuPrecision precision)
    {
        precision = text switch { "fp32" => GpuPrecision.Float32, "bf16" => GpuPrecision.BFloat16, _ => (GpuPrecision)(-1) };
        if ((int)precision >= 0) return true;
        precision = GpuPrecision.Float32;
        return false;
    }

    /// <summary>The device as <see cref="Parse"/> reads it: <c>cpu</c>, <c>cuda:N</c> or, computing in bf16, <c>cuda:N:bf16</c>.</summary>
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu"
        : $"cuda:{Ordinal.ToString(CultureInfo.InvariantCulture)}{(Precision == GpuPrecision.BFloat16 ? ":bf16" : "")}";
}
