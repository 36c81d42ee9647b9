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

/// <summary>
/// Where a model runs: <see cref="Cpu"/> or <see cref="Cuda(int)"/> with a device ordinal. Parsed from and printed as
/// <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>, the spelling PyTorch uses.
/// </summary>
public readonly record struct Device
{
    private Device(DeviceKind kind, int ordinal)
    {
        Kind = kind;
        Ordinal = ordinal;
    }

    /// <summary>CPU or CUDA.</summary>
    public DeviceKind Kind { get; }

    /// <summary>The GPU's ordinal in CUDA's enumeration; 0 for the CPU.</summary>
    public int Ordinal { get; }

    /// <summary>The CPU.</summary>
    public static Device Cpu => default;

    /// <summary>The CUDA GPU with the given ordinal (0 is the first).</summary>
    public static Device Cuda(int ordinal = 0)
    {
        if (ordinal < 0) throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, "A CUDA device ordinal is 0 or more.");
        return new Device(DeviceKind.Cuda, ordinal);
    }

    /// <summary>Reads <c>cpu</c>, <c>cuda</c> (ordinal 0) or <c>cuda:N</c>, case-insensitively.</summary>
    public static Device Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim().ToLowerInvariant();
        if (trimmed == "cpu") return Cpu;
        if (trimmed == "cuda") return Cuda();
        if (trimmed.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(trimmed.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int ordinal))
            return Cuda(ordinal);
        throw new FormatException($"'{text}' is not a device: expected 'cpu', 'cuda' or 'cuda:N' with N a device ordinal.");
    }

    /// <summary>The device as <see cref="Parse"/> reads it: <c>cpu</c> or <c>cuda:N</c>.</summary>
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{Ordinal.ToString(CultureInfo.InvariantCulture)}";
}
