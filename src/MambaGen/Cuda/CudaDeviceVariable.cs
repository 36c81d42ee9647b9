using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>
/// An array of <typeparamref name="T"/> in device memory. Offsets and counts are in elements. Synchronous copies
/// take spans; asynchronous ones take page-locked host memory, whose address cannot move while the copy runs.
/// </summary>
/// <typeparam name="T">An unmanaged element type; its layout on the device is its .NET layout.</typeparam>
public sealed unsafe class CudaDeviceVariable<T> : IDisposable where T : unmanaged
{
    private ulong _pointer;

    /// <summary>Allocates <paramref name="count"/> elements (uninitialised) on the context's device.</summary>
    /// <exception cref="CudaException">Out of device memory: the message gives the bytes asked for and the bytes free.</exception>
    public CudaDeviceVariable(CudaContext context, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        Context = context;
        Count = count;
        SizeInBytes = checked(count * sizeof(T));
        context.MakeCurrent();
        ulong pointer;
        int status = Driver.cuMemAlloc_v2(&pointer, (nuint)SizeInBytes);
        if (status != CudaResult.Success)
        {
            string detail = $"Requested {SizeInBytes} bytes ({count} × {typeof(T).Name})";
            if (status == CudaResult.OutOfMemory)
            {
                var (free, total) = context.GetMemoryInfo();
                detail += $"; {free} of {total} bytes are free on {context.DeviceName}";
            }
            throw CudaException.FromDriver(status, "cuMemAlloc_v2", detail + ".");
        }
        _pointer = pointer;
        DeviceAllocations.Increment();
    }

    /// <summary>Allocates a device copy of <paramref name="values"/>.</summary>
    public CudaDeviceVariable(CudaContext context, ReadOnlySpan<T> values) : this(context, values.Length)
    {
        try
        {
            CopyToDevice(values);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The context the memory belongs to.</summary>
    public CudaContext Context { get; }

    /// <summary>Number of elements.</summary>
    public long Count { get; }

    /// <summary>Size in bytes.</summary>
    public long SizeInBytes { get; }

    /// <summary>The device address (CUdeviceptr), for kernel arguments and cuBLAS.</summary>
    public ulong DevicePointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == 0, this);
            return _pointer;
        }
    }

    /// <summary>Passes the device address as a kernel argument.</summary>
    public static implicit operator KernelArgument(CudaDeviceVariable<T> variable) => KernelArgument.DevicePointer(variable.DevicePointer);

    /// <summary>Copies <paramref name="source"/> to the device, starting at element <paramref name="offset"/>.</summary>
    public void CopyToDevice(ReadOnlySpan<T> source, long offset = 0)
    {
        ulong destination = Address(offset, source.Length);
        Context.MakeCurrent();
        fixed (T* host = source)
            CudaException.CheckDriver(Driver.cuMemcpyHtoD_v2(destination, host, Bytes(source.Length)), "cuMemcpyHtoD_v2");
    }

    /// <summary>Copies elements from element <paramref name="offset"/> on into <paramref name="destination"/>.</summary>
    public void CopyToHost(Span<T> destination, long offset = 0)
    {
        ulong source = Address(offset, destination.Length);
        Context.MakeCurrent();
        fixed (T* host = destination)
            CudaException.CheckDriver(Driver.cuMemcpyDtoH_v2(host, source, Bytes(destination.Length)), "cuMemcpyDtoH_v2");
    }

    /// <summary>Copies the whole variable to a new host array.</summary>
    public T[] ToArray()
    {
        var result = new T[checked((int)Count)];
        CopyToHost(result);
        return result;
    }

    /// <summary>Copies all of <paramref name="source"/> (same element type, not longer than this) into this variable, on the device.</summary>
    public void CopyToDevice(CudaDeviceVariable<T> source)
    {
        ulong destination = Address(0, source.Count);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemcpyDtoD_v2(destination, source.DevicePointer, Bytes(source.Count)), "cuMemcpyDtoD_v2");
    }

    /// <summary>
    /// Copies <paramref name="count"/> elements of <paramref name="source"/> from <paramref name="sourceOffset"/> to this
    /// variable at <paramref name="offset"/>, device to device; both ranges are checked.
    /// </summary>
    public void CopyFrom(CudaDeviceVariable<T> source, long sourceOffset, long offset, long count)
    {
        ArgumentNullException.ThrowIfNull(source);
        ulong from = source.Address(sourceOffset, count);
        ulong to = Address(offset, count);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemcpyDtoD_v2(to, from, Bytes(count)), "cuMemcpyDtoD_v2");
    }

    /// <summary>Queues a copy of all of <paramref name="source"/> to the device at <paramref name="offset"/> on <paramref name="stream"/>.</summary>
    public void CopyToDeviceAsync(CudaPinnedHostMemory<T> source, CudaStream stream, long offset = 0)
    {
        ulong destination = Address(offset, source.Count);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemcpyHtoDAsync_v2(destination, (void*)source.Pointer, Bytes(source.Count), stream.Handle),
            "cuMemcpyHtoDAsync_v2");
    }

    /// <summary>Queues a copy from element <paramref name="offset"/> on into all of <paramref name="destination"/> on <paramref name="stream"/>.</summary>
    public void CopyToHostAsync(CudaPinnedHostMemory<T> destination, CudaStream stream, long offset = 0)
    {
        ulong source = Address(offset, destination.Count);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemcpyDtoHAsync_v2((void*)destination.Pointer, source, Bytes(destination.Count), stream.Handle),
            "cuMemcpyDtoHAsync_v2");
    }

    /// <summary>Queues a device-to-device copy of all of <paramref name="source"/> into this variable on <paramref name="stream"/>.</summary>
    public void CopyToDeviceAsync(CudaDeviceVariable<T> source, CudaStream stream)
    {
        ulong destination = Address(0, source.Count);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemcpyDtoDAsync_v2(destination, source.DevicePointer, Bytes(source.Count), stream.Handle),
            "cuMemcpyDtoDAsync_v2");
    }

    /// <summary>Sets every byte to <paramref name="value"/>.</summary>
    public void Memset(byte value)
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemsetD8_v2(DevicePointer, value, (nuint)SizeInBytes), "cuMemsetD8_v2");
    }

    /// <summary>Sets every 32-bit word to <paramref name="value"/> (e.g. the bits of a float); the size must be a multiple of 4 bytes.</summary>
    public void Memset(uint value)
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemsetD32_v2(DevicePointer, value, WordCount()), "cuMemsetD32_v2");
    }

    /// <summary>Queues setting every byte to <paramref name="value"/> on <paramref name="stream"/>.</summary>
    public void MemsetAsync(byte value, CudaStream stream)
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemsetD8Async(DevicePointer, value, (nuint)SizeInBytes, stream.Handle), "cuMemsetD8Async");
    }

    /// <summary>Queues setting every 32-bit word to <paramref name="value"/> on <paramref name="stream"/>.</summary>
    public void MemsetAsync(uint value, CudaStream stream)
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemsetD32Async(DevicePointer, value, WordCount(), stream.Handle), "cuMemsetD32Async");
    }

    /// <summary>Frees the device memory.</summary>
    public void Dispose()
    {
        if (_pointer == 0) return;
        var pointer = _pointer;
        _pointer = 0;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemFree_v2(pointer), "cuMemFree_v2");
    }

    private ulong Address(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset > Count - count)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"Elements [{offset}, {offset + count}) are outside the device variable's {Count} elements of {typeof(T).Name}.");
        return DevicePointer + (ulong)(offset * sizeof(T));
    }

    private static nuint Bytes(long count) => (nuint)(count * sizeof(T));

    private nuint WordCount()
    {
        if (SizeInBytes % 4 != 0)
            throw new InvalidOperationException($"A 32-bit memset needs a size that is a multiple of 4 bytes; this variable has {SizeInBytes}.");
        return (nuint)(SizeInBytes / 4);
    }
}

/// <summary>
/// Page-locked ("pinned") host memory: the GPU reads and writes it directly, so copies to and from it can run
/// asynchronously and at full PCIe/NVLink speed.
/// </summary>
/// <typeparam name="T">An unmanaged element type.</typeparam>
public sealed unsafe class CudaPinnedHostMemory<T> : IDisposable where T : unmanaged
{
    private IntPtr _pointer;

    /// <summary>Allocates <paramref name="count"/> elements (uninitialised), usable from every context (CU_MEMHOSTALLOC_PORTABLE).</summary>
    public CudaPinnedHostMemory(CudaContext context, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        Context = context;
        Count = count;
        context.MakeCurrent();
        void* pointer;
        const uint Portable = 1;
        CudaException.CheckDriver(Driver.cuMemHostAlloc(&pointer, (nuint)((long)count * sizeof(T)), Portable), "cuMemHostAlloc",
            $"Requested {(long)count * sizeof(T)} bytes of page-locked host memory.");
        _pointer = (IntPtr)pointer;
    }

    /// <summary>The context the memory was allocated through.</summary>
    public CudaContext Context { get; }

    /// <summary>Number of elements.</summary>
    public int Count { get; }

    /// <summary>The host address.</summary>
    public IntPtr Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == IntPtr.Zero, this);
            return _pointer;
        }
    }

    /// <summary>The memory as a span (do not touch it while an asynchronous copy that uses it is in flight).</summary>
    public Span<T> Span => new((void*)Pointer, Count);

    /// <summary>Frees the memory.</summary>
    public void Dispose()
    {
        if (_pointer == IntPtr.Zero) return;
        var pointer = _pointer;
        _pointer = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuMemFreeHost((void*)pointer), "cuMemFreeHost");
    }
}

/// <summary>
/// Counts the device allocations this process has made, so tests can show that a steady-state training step,
/// forward or decode step allocates nothing (every buffer is kept and reused for the same shapes).
/// </summary>
internal static class DeviceAllocations
{
    private static long s_count;

    /// <summary>Allocations so far, across all contexts and element types.</summary>
    public static long Count => Interlocked.Read(ref s_count);

    internal static void Increment() => Interlocked.Increment(ref s_count);
}
