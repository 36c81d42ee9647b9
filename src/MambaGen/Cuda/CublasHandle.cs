using System.Runtime.InteropServices;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>cublasOperation_t: whether a matrix operand is used as stored (column-major) or transposed.</summary>
public enum CublasOperation
{
    /// <summary>As stored.</summary>
    None = 0,
    /// <summary>Transposed.</summary>
    Transpose = 1,
}

/// <summary>cudaDataType_t values for matrix elements.</summary>
public enum CudaDataType
{
    /// <summary>fp32.</summary>
    Float32 = 0,
    /// <summary>fp64.</summary>
    Float64 = 1,
    /// <summary>IEEE fp16.</summary>
    Float16 = 2,
    /// <summary>bfloat16.</summary>
    BFloat16 = 14,
}

/// <summary>cublasComputeType_t values with fp32 scalars (alpha and beta are floats for all of them).</summary>
public enum CublasComputeType
{
    /// <summary>fp32 accumulation (16-bit inputs use tensor cores with fp32 accumulation).</summary>
    Float32 = 68,
    /// <summary>fp32 accumulation, no reduced-precision shortcuts.</summary>
    Float32Pedantic = 69,
    /// <summary>fp32 in and out, fp16 tensor-core products inside.</summary>
    Float32FastFloat16 = 74,
    /// <summary>fp32 in and out, bf16 tensor-core products inside.</summary>
    Float32FastBFloat16 = 75,
    /// <summary>fp32 in and out, TF32 tensor-core products inside.</summary>
    Float32FastTF32 = 77,
}

/// <summary>cublasMath_t.</summary>
[Flags]
public enum CublasMathMode
{
    /// <summary>Tensor cores where the types allow; fp32 GEMMs stay fp32.</summary>
    Default = 0,
    /// <summary>Strict fp32 everywhere.</summary>
    Pedantic = 2,
    /// <summary>fp32 GEMMs may use TF32 tensor cores.</summary>
    TF32TensorOp = 3,
    /// <summary>Forbid reduced-precision reductions inside 16-bit GEMMs.</summary>
    DisallowReducedPrecisionReduction = 16,
}

/// <summary>
/// A cuBLAS handle bound to a context (and optionally a stream). Matrices are column-major, as in BLAS: a
/// row-major C = A·B is computed as the column-major Cᵀ = Bᵀ·Aᵀ by swapping the operands.
/// </summary>
public sealed unsafe class CublasHandle : IDisposable
{
    private IntPtr _handle;
    private CudaStream? _stream;

    /// <summary>Creates a handle on <paramref name="context"/>'s device; work goes to <paramref name="stream"/> (the legacy default stream when null).</summary>
    /// <exception cref="CudaLibraryNotFoundException">libcublas cannot be loaded.</exception>
    public CublasHandle(CudaContext context, CudaStream? stream = null)
    {
        Context = context;
        CudaLibrary.Load(CudaLibraryKind.Cublas);
        context.MakeCurrent();
        IntPtr handle;
        Check(Cublas.cublasCreate_v2(&handle), "cublasCreate_v2");
        _handle = handle;
        try
        {
            Stream = stream;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The context the handle works in.</summary>
    public CudaContext Context { get; }

    /// <summary>The stream cuBLAS queues its kernels on (null: the legacy default stream).</summary>
    public CudaStream? Stream
    {
        get => _stream;
        set
        {
            Context.MakeCurrent();
            Check(Cublas.cublasSetStream_v2(Handle, value?.Handle ?? IntPtr.Zero), "cublasSetStream_v2");
            _stream = value;
        }
    }

    /// <summary>The cuBLAS version, e.g. 130000 for 13.0.0.</summary>
    public int Version
    {
        get
        {
            int version;
            Check(Cublas.cublasGetVersion_v2(Handle, &version), "cublasGetVersion_v2");
            return version;
        }
    }

    /// <summary>
    /// Hands cuBLAS <paramref name="workspace"/> as its scratch, so its kernels never allocate (which a CUDA graph capture
    /// forbids). Setting <see cref="Stream"/> afterwards resets it to cuBLAS's own pool, so set the stream first.
    /// </summary>
    public void SetWorkspace(CudaDeviceVariable<byte> workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        Context.MakeCurrent();
        Check(Cublas.cublasSetWorkspace_v2(Handle, workspace.DevicePointer, (nuint)workspace.SizeInBytes), "cublasSetWorkspace_v2", $"({workspace.SizeInBytes} bytes)");
    }

    /// <summary>Sets the math mode (e.g. allow TF32 for fp32 GEMMs).</summary>
    public void SetMathMode(CublasMathMode mode) => Check(Cublas.cublasSetMathMode(Handle, mode), "cublasSetMathMode");

    /// <summary>
    /// fp32 GEMM: C = α·op(A)·op(B) + β·C with op(A) m×k, op(B) k×n, C m×n, all column-major with leading
    /// dimensions lda, ldb, ldc. Checks that each variable holds the elements the shape implies.
    /// </summary>
    public void Sgemm(CublasOperation transA, CublasOperation transB, int m, int n, int k,
        float alpha, CudaDeviceVariable<float> a, int lda, CudaDeviceVariable<float> b, int ldb,
        float beta, CudaDeviceVariable<float> c, int ldc)
    {
        RequireOperand("A", a.Count, transA == CublasOperation.None ? m : k, transA == CublasOperation.None ? k : m, lda);
        RequireOperand("B", b.Count, transB == CublasOperation.None ? k : n, transB == CublasOperation.None ? n : k, ldb);
        RequireOperand("C", c.Count, m, n, ldc);
        Context.MakeCurrent();
        Check(Cublas.cublasSgemm_v2(Handle, transA, transB, m, n, k, &alpha, a.DevicePointer, lda, b.DevicePointer, ldb,
            &beta, c.DevicePointer, ldc), "cublasSgemm_v2", $"(m {m}, n {n}, k {k})");
    }

    /// <summary>
    /// Mixed-precision GEMM (cublasGemmEx): inputs and output of the given types (e.g. bf16 in, fp32 or bf16
    /// out) with fp32 scalars and accumulation. Pointers are device addresses; shapes as in <see cref="Sgemm"/>.
    /// </summary>
    public void GemmEx(CublasOperation transA, CublasOperation transB, int m, int n, int k,
        float alpha, ulong a, CudaDataType aType, int lda, ulong b, CudaDataType bType, int ldb,
        float beta, ulong c, CudaDataType cType, int ldc, CublasComputeType computeType = CublasComputeType.Float32)
    {
        Context.MakeCurrent();
        Check(Cublas.cublasGemmEx(Handle, transA, transB, m, n, k, &alpha, a, aType, lda, b, bType, ldb,
            &beta, c, cType, ldc, computeType, Cublas.GemmDefaultAlgorithm),
            "cublasGemmEx", $"(m {m}, n {n}, k {k}, {aType}·{bType} → {cType}, {computeType})");
    }

    /// <summary>
    /// <paramref name="batchCount"/> independent GEMMs as <see cref="GemmEx"/>, matrix i of each operand starting
    /// <c>i·stride</c> elements after the first.
    /// </summary>
    public void GemmStridedBatchedEx(CublasOperation transA, CublasOperation transB, int m, int n, int k,
        float alpha, ulong a, CudaDataType aType, int lda, long strideA, ulong b, CudaDataType bType, int ldb, long strideB,
        float beta, ulong c, CudaDataType cType, int ldc, long strideC, int batchCount,
        CublasComputeType computeType = CublasComputeType.Float32)
    {
        Context.MakeCurrent();
        Check(Cublas.cublasGemmStridedBatchedEx(Handle, transA, transB, m, n, k, &alpha, a, aType, lda, strideA, b, bType, ldb, strideB,
            &beta, c, cType, ldc, strideC, batchCount, computeType, Cublas.GemmDefaultAlgorithm),
            "cublasGemmStridedBatchedEx", $"(m {m}, n {n}, k {k}, batch {batchCount}, {aType}·{bType} → {cType}, {computeType})");
    }

    /// <summary>Destroys the handle.</summary>
    public void Dispose()
    {
        if (_handle == IntPtr.Zero) return;
        var handle = _handle;
        _handle = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        Check(Cublas.cublasDestroy_v2(handle), "cublasDestroy_v2");
    }

    private IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == IntPtr.Zero, this);
            return _handle;
        }
    }

    private static void RequireOperand(string operand, long available, int rows, int columns, int leadingDimension)
    {
        if (rows < 0 || columns < 0) throw new ArgumentOutOfRangeException(operand, $"Matrix {operand} cannot be {rows}×{columns}.");
        if (leadingDimension < Math.Max(1, rows))
            throw new ArgumentOutOfRangeException(operand, $"Matrix {operand} has {rows} rows, so its leading dimension must be at least {Math.Max(1, rows)}; got {leadingDimension}.");
        long needed = columns == 0 ? 0 : (long)leadingDimension * (columns - 1) + rows;
        if (available < needed)
            throw new ArgumentException($"Matrix {operand} ({rows}×{columns}, leading dimension {leadingDimension}) needs {needed} elements; the device variable holds {available}.", operand);
    }

    private static void Check(int status, string call, string? detail = null)
    {
        if (status == Cublas.Success) return;
        throw new CudaException(call, status, StatusName(status), StatusText(status), detail);
    }

    // cublasGetStatusName/String arrived in cuBLAS 11.4; older libraries get the names from cublas_api.h.
    private static string StatusName(int status)
    {
        try
        {
            byte* name = Cublas.cublasGetStatusName(status);
            if (name != null) return Marshal.PtrToStringUTF8((IntPtr)name)!;
        }
        catch (EntryPointNotFoundException) { }
        return status switch
        {
            1 => "CUBLAS_STATUS_NOT_INITIALIZED",
            3 => "CUBLAS_STATUS_ALLOC_FAILED",
            7 => "CUBLAS_STATUS_INVALID_VALUE",
            8 => "CUBLAS_STATUS_ARCH_MISMATCH",
            11 => "CUBLAS_STATUS_MAPPING_ERROR",
            13 => "CUBLAS_STATUS_EXECUTION_FAILED",
            14 => "CUBLAS_STATUS_INTERNAL_ERROR",
            15 => "CUBLAS_STATUS_NOT_SUPPORTED",
            16 => "CUBLAS_STATUS_LICENSE_ERROR",
            _ => $"cublasStatus_t {status}",
        };
    }

    private static string StatusText(int status)
    {
        try
        {
            byte* text = Cublas.cublasGetStatusString(status);
            if (text != null) return Marshal.PtrToStringUTF8((IntPtr)text)!;
        }
        catch (EntryPointNotFoundException) { }
        return "cuBLAS reported an error";
    }
}
