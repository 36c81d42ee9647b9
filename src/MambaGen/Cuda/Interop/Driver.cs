using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

/// <summary>
/// Raw CUDA driver API entry points (cuda.h). Versioned symbols (<c>_v2</c>) are bound where cuda.h maps the plain
/// name to them, because the unversioned export keeps the old 32-bit ABI. Status codes are plain ints
/// (<see cref="CudaResult"/> names the ones the wrappers test for).
/// </summary>
internal static unsafe partial class Driver
{
    static Driver() => CudaLibrary.EnsureResolverRegistered();

    private const string Lib = CudaLibrary.DriverImportName;

    // Errors
    [LibraryImport(Lib)] internal static partial int cuGetErrorName(int error, byte** name);
    [LibraryImport(Lib)] internal static partial int cuGetErrorString(int error, byte** text);

    // Initialisation and devices
    [LibraryImport(Lib)] internal static partial int cuInit(uint flags);
    [LibraryImport(Lib)] internal static partial int cuDriverGetVersion(int* version);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetCount(int* count);
    [LibraryImport(Lib)] internal static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetAttribute(int* value, DeviceAttribute attribute, int device);
    [LibraryImport(Lib)] internal static partial int cuDeviceTotalMem_v2(nuint* bytes, int device);

    // Primary context
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRetain(IntPtr* context, int device);
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Lib)] internal static partial int cuCtxSynchronize();
    [LibraryImport(Lib)] internal static partial int cuMemGetInfo_v2(nuint* free, nuint* total);

    // Streams and events
    [LibraryImport(Lib)] internal static partial int cuStreamCreate(IntPtr* stream, uint flags);
    [LibraryImport(Lib)] internal static partial int cuStreamSynchronize(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuStreamQuery(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuStreamDestroy_v2(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuEventCreate(IntPtr* e, uint flags);
    [LibraryImport(Lib)] internal static partial int cuEventRecord(IntPtr e, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuEventSynchronize(IntPtr e);
    [LibraryImport(Lib)] internal static partial int cuEventElapsedTime(float* milliseconds, IntPtr start, IntPtr end);
    [LibraryImport(Lib)] internal static partial int cuEventDestroy_v2(IntPtr e);

    // Device memory
    [LibraryImport(Lib)] internal static partial int cuMemAlloc_v2(ulong* pointer, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemFree_v2(ulong pointer);
    [LibraryImport(Lib)] internal static partial int cuMemcpyHtoD_v2(ulong destination, void* source, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoH_v2(void* destination, ulong source, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoD_v2(ulong destination, ulong source, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemcpyHtoDAsync_v2(ulong destination, void* source, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoHAsync_v2(void* destination, ulong source, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemcpyDtoDAsync_v2(ulong destination, ulong source, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemsetD8_v2(ulong destination, byte value, nuint count);
    [LibraryImport(Lib)] internal static partial int cuMemsetD32_v2(ulong destination, uint value, nuint count);
    [LibraryImport(Lib)] internal static partial int cuMemsetD8Async(ulong destination, byte value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, IntPtr stream);

    // Page-locked host memory
    [LibraryImport(Lib)] internal static partial int cuMemHostAlloc(void** pointer, nuint bytes, uint flags);
    [LibraryImport(Lib)] internal static partial int cuMemFreeHost(void* pointer);

    // Modules and launches
    [LibraryImport(Lib)] internal static partial int cuModuleLoadDataEx(IntPtr* module, void* image, uint optionCount, int* options, void** optionValues);
    [LibraryImport(Lib)] internal static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int cuModuleGetFunction(IntPtr* function, IntPtr module, string name);
    [LibraryImport(Lib)] internal static partial int cuFuncSetAttribute(IntPtr function, FunctionAttribute attribute, int value);
    [LibraryImport(Lib)] internal static partial int cuFuncGetAttribute(int* value, FunctionAttribute attribute, IntPtr function);
    [LibraryImport(Lib)]
    internal static partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemoryBytes, IntPtr stream, void** parameters, void** extra);
    [LibraryImport(Lib)] internal static partial int cuLaunchKernelEx(LaunchConfig* config, IntPtr function, void** parameters, void** extra);

    // Graphs (stream capture)
    [LibraryImport(Lib)] internal static partial int cuStreamBeginCapture_v2(IntPtr stream, StreamCaptureMode mode);
    [LibraryImport(Lib)] internal static partial int cuStreamEndCapture(IntPtr stream, IntPtr* graph);
    [LibraryImport(Lib)] internal static partial int cuGraphInstantiateWithFlags(IntPtr* graphExec, IntPtr graph, ulong flags);
    [LibraryImport(Lib)] internal static partial int cuGraphLaunch(IntPtr graphExec, IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuGraphExecDestroy(IntPtr graphExec);
    [LibraryImport(Lib)] internal static partial int cuGraphDestroy(IntPtr graph);
}

/// <summary>CUresult values the wrappers test for by value (the rest are only reported by name).</summary>
internal static class CudaResult
{
    internal const int Success = 0;
    internal const int OutOfMemory = 2;
    internal const int Deinitialized = 4;
    internal const int NoDevice = 100;
    internal const int NotReady = 600;
}

/// <summary>CUdevice_attribute values used by <see cref="CudaContext"/>.</summary>
internal enum DeviceAttribute
{
    MaxThreadsPerBlock = 1,
    MaxGridDimX = 5,
    MaxGridDimY = 6,
    MaxGridDimZ = 7,
    MaxSharedMemoryPerBlock = 8,
    WarpSize = 10,
    MultiprocessorCount = 16,
    L2CacheSize = 38,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
    MaxSharedMemoryPerBlockOptin = 97,
}

/// <summary>CUfunction_attribute values used by <see cref="CudaKernel"/>.</summary>
internal enum FunctionAttribute
{
    MaxThreadsPerBlock = 0,
    SharedSizeBytes = 1,
    NumRegisters = 4,
    MaxDynamicSharedSizeBytes = 8,
}

/// <summary>CUlaunchConfig: a launch's shape, stream and extra attributes (cuLaunchKernelEx).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LaunchConfig
{
    internal uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedMemoryBytes;
    internal IntPtr Stream;
    internal LaunchAttribute* Attributes;
    internal uint AttributeCount;
}

/// <summary>CUlaunchAttribute: an id (4 bytes, padded to 8) and a 64-byte value union, of which only an int is used here.</summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
internal struct LaunchAttribute
{
    [FieldOffset(0)] internal LaunchAttributeId Id;
    [FieldOffset(8)] internal int Value;
}

/// <summary>CUlaunchAttributeID values used here.</summary>
internal enum LaunchAttributeId
{
    /// <summary>The kernel may start before the previous kernel in the stream has finished (it waits with griddepcontrol.wait).</summary>
    ProgrammaticStreamSerialization = 6,

    /// <summary>Every block of the grid is resident at once (the launch fails otherwise), so blocks may wait for each other.</summary>
    Cooperative = 2,
}

/// <summary>CUstreamCaptureMode.</summary>
internal enum StreamCaptureMode
{
    Global = 0,
    ThreadLocal = 1,
    Relaxed = 2,
}
