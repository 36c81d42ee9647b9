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

/// <summary>Kernels and helpers shared by the CUDA tests.</summary>
internal static class CudaTestKernels
{
    /// <summary>Self-contained CUDA C++ (no includes), so it compiles with a bare NVRTC such as Debian's.</summary>
    public const string Source = """
        extern "C" __global__ void scale(float* y, const float* x, float a, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a * x[i];
        }

        extern "C" __global__ void add_one(float* y, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] += 1.0f;
        }

        // Reverses each block's tile of blockDim.x * per_thread elements through dynamic shared memory.
        extern "C" __global__ void reverse_tiles(float* y, const float* x, int per_thread)
        {
            extern __shared__ float tile[];
            int tile_size = blockDim.x * per_thread;
            const float* in = x + (long long)blockIdx.x * tile_size;
            float* out = y + (long long)blockIdx.x * tile_size;
            for (int j = threadIdx.x; j < tile_size; j += blockDim.x) tile[j] = in[j];
            __syncthreads();
            for (int j = threadIdx.x; j < tile_size; j += blockDim.x) out[j] = tile[tile_size - 1 - j];
        }

        template <typename T, int Width>
        __global__ void fill(T* out, T value, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) out[i] = value * Width;
        }
        """;

    public const string FillFloat4 = "fill<float, 4>";

    /// <summary>A fresh, empty cache folder under the temp directory.</summary>
    public static string NewCacheDirectory()
    {
        var path = Path.Combine(Path.GetTempPath(), "mambagen-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }
}
