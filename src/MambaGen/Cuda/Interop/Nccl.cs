using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

/// <summary>
/// Raw NCCL 2 entry points (nccl.h). Buffers are device addresses, streams are CUDA streams (a driver CUstream is a
/// runtime cudaStream_t), communicators are opaque handles. Status codes are <see cref="NcclResult"/> values.
/// </summary>
internal static unsafe partial class Nccl
{
    static Nccl() => CudaLibrary.EnsureResolverRegistered();

    private const string Lib = CudaLibrary.NcclImportName;

    [LibraryImport(Lib)] internal static partial int ncclGetVersion(int* version);
    [LibraryImport(Lib)] internal static partial int ncclGetUniqueId(NcclUniqueId* uniqueId);
    [LibraryImport(Lib)] internal static partial int ncclCommInitRank(IntPtr* communicator, int ranks, NcclUniqueId uniqueId, int rank);
    [LibraryImport(Lib)] internal static partial int ncclCommDestroy(IntPtr communicator);
    [LibraryImport(Lib)] internal static partial int ncclCommAbort(IntPtr communicator);
    [LibraryImport(Lib)] internal static partial int ncclCommGetAsyncError(IntPtr communicator, int* asyncError);
    [LibraryImport(Lib)] internal static partial byte* ncclGetErrorString(int result);

    [LibraryImport(Lib)]
    internal static partial int ncclAllReduce(ulong sendBuffer, ulong receiveBuffer, nuint count, NcclDataType type, NcclReduction operation,
        IntPtr communicator, IntPtr stream);

    [LibraryImport(Lib)]
    internal static partial int ncclBroadcast(ulong sendBuffer, ulong receiveBuffer, nuint count, NcclDataType type, int root,
        IntPtr communicator, IntPtr stream);

    [LibraryImport(Lib)] internal static partial int ncclGroupStart();
    [LibraryImport(Lib)] internal static partial int ncclGroupEnd();
}

/// <summary>ncclResult_t values the wrappers test for.</summary>
internal static class NcclResult
{
    internal const int Success = 0;
    internal const int InProgress = 7;

    /// <summary>The enumerator's name, for messages (ncclGetErrorString gives the description).</summary>
    internal static string Name(int result) => result switch
    {
        0 => "ncclSuccess",
        1 => "ncclUnhandledCudaError",
        2 => "ncclSystemError",
        3 => "ncclInternalError",
        4 => "ncclInvalidArgument",
        5 => "ncclInvalidUsage",
        6 => "ncclRemoteError",
        7 => "ncclInProgress",
        _ => $"ncclResult {result}",
    };
}

/// <summary>ncclDataType_t values used here.</summary>
internal enum NcclDataType
{
    Float32 = 7,
}

/// <summary>ncclRedOp_t values used here.</summary>
internal enum NcclReduction
{
    Sum = 0,
}

/// <summary>ncclUniqueId: 128 opaque bytes that rank 0 creates and every rank passes to ncclCommInitRank.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NcclUniqueId
{
    internal const int Size = 128;
    internal fixed byte Bytes[Size];
}
