using MambaGen.Cuda;
using MambaGen.Cuda.Interop;

namespace MambaGen.Tests.Cuda;

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
