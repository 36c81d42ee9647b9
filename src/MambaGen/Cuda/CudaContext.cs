using System.Runtime.InteropServices;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>
/// One GPU: retains the device's primary context (the one the CUDA runtime and cuBLAS share) and describes the
/// device. Objects created from a context make it current on the calling thread before each driver call, so a
/// context may be used from any thread. Disposing it releases the primary context; resources created from it
/// must be disposed first.
/// </summary>
public sealed class CudaContext : IDisposable
{
    private IntPtr _context;
    private bool _disposed;

    /// <summary>Initialises the driver, retains device <paramref name="deviceOrdinal"/>'s primary context and makes it current.</summary>
    /// <exception cref="CudaLibraryNotFoundException">libcuda cannot be loaded.</exception>
    /// <exception cref="ArgumentOutOfRangeException">There is no device with that ordinal.</exception>
    public unsafe CudaContext(int deviceOrdinal = 0)
    {
        int count = GetDeviceCount();
        if (deviceOrdinal < 0 || deviceOrdinal >= count)
            throw new ArgumentOutOfRangeException(nameof(deviceOrdinal), deviceOrdinal,
                count == 0 ? "No CUDA device is present." : $"Device ordinals run from 0 to {count - 1}.");
        int device;
        CudaException.CheckDriver(Driver.cuDeviceGet(&device, deviceOrdinal), "cuDeviceGet", $"(ordinal {deviceOrdinal})");
        IntPtr context;
        CudaException.CheckDriver(Driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        try
        {
            CudaException.CheckDriver(Driver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
            Device = device;
            DeviceOrdinal = deviceOrdinal;
            DeviceName = ReadDeviceName(device);
            ComputeCapability = (Attribute(DeviceAttribute.ComputeCapabilityMajor), Attribute(DeviceAttribute.ComputeCapabilityMinor));
            MultiprocessorCount = Attribute(DeviceAttribute.MultiprocessorCount);
            MaxThreadsPerBlock = Attribute(DeviceAttribute.MaxThreadsPerBlock);
            WarpSize = Attribute(DeviceAttribute.WarpSize);
            MaxSharedMemoryPerBlock = Attribute(DeviceAttribute.MaxSharedMemoryPerBlock);
            MaxSharedMemoryPerBlockOptin = Attribute(DeviceAttribute.MaxSharedMemoryPerBlockOptin);
            MaxGridDimensions = new Dim3((uint)Attribute(DeviceAttribute.MaxGridDimX), (uint)Attribute(DeviceAttribute.MaxGridDimY),
                (uint)Attribute(DeviceAttribute.MaxGridDimZ));
            L2CacheSize = Attribute(DeviceAttribute.L2CacheSize);
            nuint total;
            CudaException.CheckDriver(Driver.cuDeviceTotalMem_v2(&total, device), "cuDeviceTotalMem_v2");
            TotalMemory = (long)total;
            int version;
            CudaException.CheckDriver(Driver.cuDriverGetVersion(&version), "cuDriverGetVersion");
            DriverVersion = new Version(version / 1000, version % 1000 / 10);
        }
        catch
        {
            Driver.cuDevicePrimaryCtxRelease_v2(device);
            throw;
        }
        _context = context;
    }

    /// <summary>The number of CUDA devices (initialises the driver).</summary>
    /// <exception cref="CudaLibraryNotFoundException">libcuda cannot be loaded.</exception>
    public static unsafe int GetDeviceCount()
    {
        CudaLibrary.Load(CudaLibraryKind.Driver);
        int status = Driver.cuInit(0);
        // A machine with the driver but no GPU reports CUDA_ERROR_NO_DEVICE from cuInit: that is zero devices.
        if (status == CudaResult.NoDevice) return 0;
        CudaException.CheckDriver(status, "cuInit");
        int count;
        CudaException.CheckDriver(Driver.cuDeviceGetCount(&count), "cuDeviceGetCount");
        return count;
    }

    /// <summary>
    /// Whether a CUDA device can be used here; when not, <paramref name="reason"/> says why (no driver library,
    /// driver failure, no device). Never throws.
    /// </summary>
    public static bool IsAvailable(out string? reason)
    {
        try
        {
            if (GetDeviceCount() > 0)
            {
                reason = null;
                return true;
            }
            reason = "the CUDA driver reports no device";
        }
        catch (Exception e) when (e is CudaLibraryNotFoundException or CudaException)
        {
            reason = e.Message;
        }
        return false;
    }

    /// <summary>The device ordinal this context was created for.</summary>
    public int DeviceOrdinal { get; }

    /// <summary>The driver's CUdevice handle.</summary>
    internal int Device { get; }

    /// <summary>The device's marketing name, e.g. "NVIDIA H200".</summary>
    public string DeviceName { get; }

    /// <summary>Compute capability (major, minor), e.g. (9, 0) for Hopper.</summary>
    public (int Major, int Minor) ComputeCapability { get; }

    /// <summary>The compute capability as NVRTC writes it: 10·major + minor, e.g. 90.</summary>
    public int Architecture => ComputeCapability.Major * 10 + ComputeCapability.Minor;

    /// <summary>Number of streaming multiprocessors.</summary>
    public int MultiprocessorCount { get; }

    /// <summary>Largest number of threads in a block.</summary>
    public int MaxThreadsPerBlock { get; }

    /// <summary>Threads per warp.</summary>
    public int WarpSize { get; }

    /// <summary>Shared memory a block gets without opting in (bytes; usually 48 KiB).</summary>
    public int MaxSharedMemoryPerBlock { get; }

    /// <summary>Shared memory a block may get after raising the kernel's limit (<see cref="CudaKernel.MaxDynamicSharedMemory"/>).</summary>
    public int MaxSharedMemoryPerBlockOptin { get; }

    /// <summary>Largest grid extents.</summary>
    public Dim3 MaxGridDimensions { get; }

    /// <summary>L2 cache size in bytes.</summary>
    public int L2CacheSize { get; }

    /// <summary>Device memory in bytes.</summary>
    public long TotalMemory { get; }

    /// <summary>The CUDA version the driver supports, e.g. 13.0.</summary>
    public Version DriverVersion { get; }

    /// <summary>Free and total device memory in bytes, as the driver sees them now.</summary>
    public unsafe (long Free, long Total) GetMemoryInfo()
    {
        MakeCurrent();
        nuint free, total;
        CudaException.CheckDriver(Driver.cuMemGetInfo_v2(&free, &total), "cuMemGetInfo_v2");
        return ((long)free, (long)total);
    }

    /// <summary>Makes this context current on the calling thread.</summary>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CudaException.CheckDriver(Driver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
    }

    /// <summary>Waits for all work on the device (every stream) to finish; reports asynchronous errors.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaException.CheckDriver(Driver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Loads a compiled module (PTX text or CUBIN) into this context.</summary>
    public CudaModule LoadModule(ReadOnlySpan<byte> image) => new(this, image);

    /// <summary>True once <see cref="Dispose"/> has run; resources of this context then skip their own release.</summary>
    internal bool IsDisposed => _disposed;

    /// <summary>Releases the primary context (the driver frees everything in it when the last holder lets go).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Driver.cuCtxSetCurrent(IntPtr.Zero);
        Driver.cuDevicePrimaryCtxRelease_v2(Device);
        _context = IntPtr.Zero;
    }

    /// <summary>A one-line description: name, compute capability, SMs, memory.</summary>
    public override string ToString() =>
        $"{DeviceName} (device {DeviceOrdinal}, sm_{Architecture}, {MultiprocessorCount} SMs, {TotalMemory / (1L << 20)} MiB)";

    private unsafe int Attribute(DeviceAttribute attribute)
    {
        int value;
        CudaException.CheckDriver(Driver.cuDeviceGetAttribute(&value, attribute, Device), "cuDeviceGetAttribute", $"({attribute})");
        return value;
    }

    private static unsafe string ReadDeviceName(int device)
    {
        const int Capacity = 256;
        byte* name = stackalloc byte[Capacity];
        CudaException.CheckDriver(Driver.cuDeviceGetName(name, Capacity, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((IntPtr)name) ?? "";
    }
}

/// <summary>Grid or block extents.</summary>
/// <param name="X">Extent in x.</param>
/// <param name="Y">Extent in y.</param>
/// <param name="Z">Extent in z.</param>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>A one-dimensional extent.</summary>
    public static implicit operator Dim3(uint x) => new(x);

    /// <summary>A one-dimensional extent.</summary>
    public static implicit operator Dim3(int x) => new(checked((uint)x));
}
