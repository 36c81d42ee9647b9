using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

/// <summary>Raw cuBLAS entry points (cublas_api.h, the v2 API). Matrices are column-major, pointers are device addresses.</summary>
internal static unsafe partial class Cublas
{
    static Cublas() => CudaLibrary.EnsureResolverRegistered();

    private const string Lib = CudaLibrary.CublasImportName;

    internal const int Success = 0;

    [LibraryImport(Lib)] internal static partial int cublasCreate_v2(IntPtr* handle);
    [LibraryImport(Lib)] internal static partial int cublasDestroy_v2(IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cublasGetVersion_v2(IntPtr handle, int* version);
    [LibraryImport(Lib)] internal static partial int cublasSetStream_v2(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cublasSetMathMode(IntPtr handle, CublasMathMode mode);
    [LibraryImport(Lib)] internal static partial int cublasSetWorkspace_v2(IntPtr handle, ulong workspace, nuint bytes);
    [LibraryImport(Lib)] internal static partial byte* cublasGetStatusName(int status);
    [LibraryImport(Lib)] internal static partial byte* cublasGetStatusString(int status);

    [LibraryImport(Lib)]
    internal static partial int cublasSgemm_v2(IntPtr handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
        float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);

    [LibraryImport(Lib)]
    internal static partial int cublasGemmEx(IntPtr handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
        void* alpha, ulong a, CudaDataType aType, int lda, ulong b, CudaDataType bType, int ldb,
        void* beta, ulong c, CudaDataType cType, int ldc, CublasComputeType computeType, int algorithm);

    [LibraryImport(Lib)]
    internal static partial int cublasGemmStridedBatchedEx(IntPtr handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
        void* alpha, ulong a, CudaDataType aType, int lda, long strideA, ulong b, CudaDataType bType, int ldb, long strideB,
        void* beta, ulong c, CudaDataType cType, int ldc, long strideC, int batchCount, CublasComputeType computeType, int algorithm);

    /// <summary>CUBLAS_GEMM_DEFAULT: let cuBLAS pick the algorithm (tensor cores where the types allow).</summary>
    internal const int GemmDefaultAlgorithm = -1;
}
