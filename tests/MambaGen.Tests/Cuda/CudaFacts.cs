using MambaGen.Cuda;
using MambaGen.Cuda.Interop;

namespace MambaGen.Tests.Cuda;

/// <summary>A fact that needs a CUDA driver and at least one device; skipped, with the reason, where there is none.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> s_skipReason = new(() =>
        CudaContext.IsAvailable(out var reason) ? null : $"No usable CUDA device: {reason}");

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when no device is usable (checked once per test run).</summary>
    public GpuFactAttribute()
    {
        if (s_skipReason.Value is { } reason) Skip = reason;
    }
}

/// <summary>A fact that needs the NVRTC library (no GPU); skipped, with the reason, where NVRTC cannot be loaded.</summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> s_skipReason = new(() =>
        CudaLibrary.TryLoad(CudaLibraryKind.Nvrtc, out var failure) ? null : failure);

    /// <summary>
    /// Sets <see cref="FactAttribute.Skip"/> when NVRTC is missing, unless <c>MAMBAGEN_REQUIRE_NVRTC=1</c> (as CI sets it,
    /// having installed NVRTC): then the test runs and fails, so a lost NVRTC cannot pass as a skip.
    /// </summary>
    public NvrtcFactAttribute()
    {
        if (s_skipReason.Value is { } reason && Environment.GetEnvironmentVariable("MAMBAGEN_REQUIRE_NVRTC") != "1") Skip = reason;
    }
}
