using System.Runtime.CompilerServices;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>A loaded module (PTX, which the driver compiles for the device, or a CUBIN built for it).</summary>
public sealed class CudaModule : IDisposable
{
    private IntPtr _module;

    internal unsafe CudaModule(CudaContext context, ReadOnlySpan<byte> image)
    {
        if (image.IsEmpty) throw new ArgumentException("A module image (PTX or CUBIN) cannot be empty.", nameof(image));
        Context = context;
        context.MakeCurrent();
        // PTX must reach the driver NUL-terminated; a CUBIN is self-delimiting, so one extra byte is harmless.
        var terminated = new byte[image.Length + 1];
        image.CopyTo(terminated);
        IntPtr module;
        fixed (byte* bytes = terminated)
            CudaException.CheckDriver(Driver.cuModuleLoadDataEx(&module, bytes, 0, null, null), "cuModuleLoadDataEx",
                $"(a {image.Length}-byte image on {context.DeviceName}, sm_{context.Architecture})");
        _module = module;
    }

    /// <summary>The context the module is loaded in.</summary>
    public CudaContext Context { get; }

    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_module == IntPtr.Zero, this);
            return _module;
        }
    }

    /// <summary>The kernel named <paramref name="name"/> (its lowered name if it is a C++ template or not <c>extern "C"</c>).</summary>
    public CudaKernel GetKernel(string name) => new(this, name);

    /// <summary>Unloads the module; its kernels can no longer be launched.</summary>
    public void Dispose()
    {
        if (_module == IntPtr.Zero) return;
        var module = _module;
        _module = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuModuleUnload(module), "cuModuleUnload");
    }
}

/// <summary>
/// A kernel of a loaded module with its launch shape. Arguments are <see cref="KernelArgument"/>s: scalars and
/// device variables convert implicitly, so <c>kernel.Run(output, input, n, 0.5f)</c> reads like the CUDA call.
/// </summary>
public sealed class CudaKernel
{
    private readonly CudaModule _module;
    private readonly IntPtr _function;
    private int _maxDynamicSharedMemory;

    /// <summary>Looks up kernel <paramref name="name"/> in <paramref name="module"/>.</summary>
    public unsafe CudaKernel(CudaModule module, string name)
    {
        _module = module;
        Name = name;
        module.Context.MakeCurrent();
        IntPtr function;
        int status = Driver.cuModuleGetFunction(&function, module.Handle, name);
        CudaException.CheckDriver(status, "cuModuleGetFunction", $"(kernel '{name}')");
        _function = function;
        _maxDynamicSharedMemory = Attribute(FunctionAttribute.MaxDynamicSharedSizeBytes);
    }

    /// <summary>The kernel's (lowered) name.</summary>
    public string Name { get; }

    /// <summary>The context the kernel runs in.</summary>
    public CudaContext Context => _module.Context;

    /// <summary>Grid extents (blocks).</summary>
    public Dim3 GridDimensions { get; set; } = new(1);

    /// <summary>Block extents (threads).</summary>
    public Dim3 BlockDimensions { get; set; } = new(1);

    /// <summary>Dynamic shared memory per block in bytes (the kernel's <c>extern __shared__</c> array).</summary>
    public int DynamicSharedMemory { get; set; }

    /// <summary>
    /// Programmatic dependent launch (sm_90 and later): the kernel may be scheduled while the previous kernel in the stream
    /// is still running, so it can start loading what does not depend on it. The kernel must then execute
    /// <c>griddepcontrol.wait</c> before it reads that kernel's results or writes what it reads. Off by default.
    /// </summary>
    public bool StartsBeforePreviousKernelEnds { get; set; }

    /// <summary>
    /// Cooperative launch: the driver starts every block of the grid at once or fails the launch, so blocks may wait for
    /// each other (a grid-wide barrier). The grid must then fit the device's resident blocks. Off by default; not
    /// combined with <see cref="StartsBeforePreviousKernelEnds"/>.
    /// </summary>
    public bool Cooperative { get; set; }

    /// <summary>Registers per thread, as compiled.</summary>
    public int RegistersPerThread => Attribute(FunctionAttribute.NumRegisters);

    /// <summary>Largest block size this kernel can be launched with (registers may make it less than the device's).</summary>
    public int MaxThreadsPerBlock => Attribute(FunctionAttribute.MaxThreadsPerBlock);

    /// <summary>
    /// The limit on <see cref="DynamicSharedMemory"/> (48 KiB unless raised). Setting it above 48 KiB opts the
    /// kernel in to the device's larger shared memory, up to <see cref="CudaContext.MaxSharedMemoryPerBlockOptin"/>.
    /// </summary>
    public int MaxDynamicSharedMemory
    {
        get => _maxDynamicSharedMemory;
        set
        {
            Context.MakeCurrent();
            CudaException.CheckDriver(Driver.cuFuncSetAttribute(_function, FunctionAttribute.MaxDynamicSharedSizeBytes, value),
                "cuFuncSetAttribute", $"(MAX_DYNAMIC_SHARED_SIZE_BYTES = {value} for '{Name}'; the device allows {Context.MaxSharedMemoryPerBlockOptin})");
            _maxDynamicSharedMemory = value;
        }
    }

    /// <summary>Launches on the legacy default stream and waits for the kernel, so launch and execution errors surface here.</summary>
    public void Run(params ReadOnlySpan<KernelArgument> arguments)
    {
        Launch(null, arguments);
        Context.Synchronize();
    }

    /// <summary>Queues a launch on <paramref name="stream"/> (the legacy default stream when null) and returns at once.</summary>
    public unsafe void Launch(CudaStream? stream, params ReadOnlySpan<KernelArgument> arguments)
    {
        if (DynamicSharedMemory > _maxDynamicSharedMemory)
            throw new InvalidOperationException(
                $"'{Name}' asks for {DynamicSharedMemory} bytes of dynamic shared memory but its limit is {_maxDynamicSharedMemory}; raise MaxDynamicSharedMemory first.");
        // The driver reads each argument through a pointer to its value; the values are copied to the stack
        // first because a span element's address is only stable inside a fixed block.
        KernelArgument* values = stackalloc KernelArgument[arguments.Length];
        void** pointers = stackalloc void*[Math.Max(arguments.Length, 1)];
        for (int i = 0; i < arguments.Length; i++)
        {
            values[i] = arguments[i];
            pointers[i] = &values[i];
        }
        Context.MakeCurrent();
        var (grid, block) = (GridDimensions, BlockDimensions);
        if (StartsBeforePreviousKernelEnds || Cooperative)
        {
            var attribute = new LaunchAttribute { Id = Cooperative ? LaunchAttributeId.Cooperative : LaunchAttributeId.ProgrammaticStreamSerialization, Value = 1 };
            var config = new LaunchConfig
            {
                GridX = grid.X, GridY = grid.Y, GridZ = grid.Z, BlockX = block.X, BlockY = block.Y, BlockZ = block.Z,
                SharedMemoryBytes = (uint)DynamicSharedMemory, Stream = stream?.Handle ?? IntPtr.Zero, Attributes = &attribute, AttributeCount = 1,
            };
            CudaException.CheckDriver(Driver.cuLaunchKernelEx(&config, _function, pointers, null), "cuLaunchKernelEx",
                $"('{Name}', grid {grid}, block {block}, {DynamicSharedMemory} bytes of dynamic shared memory, {(Cooperative ? "cooperative" : "programmatic dependent")} launch)");
            return;
        }
        int status = Driver.cuLaunchKernel(_function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            (uint)DynamicSharedMemory, stream?.Handle ?? IntPtr.Zero, pointers, null);
        CudaException.CheckDriver(status, "cuLaunchKernel",
            $"('{Name}', grid {grid}, block {block}, {DynamicSharedMemory} bytes of dynamic shared memory)");
    }

    private unsafe int Attribute(FunctionAttribute attribute)
    {
        Context.MakeCurrent();
        int value;
        CudaException.CheckDriver(Driver.cuFuncGetAttribute(&value, attribute, _function), "cuFuncGetAttribute", $"({attribute} of '{Name}')");
        return value;
    }
}

/// <summary>
/// One kernel argument: the bytes of an unmanaged value of up to 32 bytes, passed by value. Scalars and
/// <see cref="CudaDeviceVariable{T}"/> (its device address) convert implicitly; other structs go through <see cref="Of{T}"/>.
/// </summary>
public readonly struct KernelArgument
{
    private readonly Bytes32 _bytes;

    [InlineArray(4)]
    private struct Bytes32
    {
        private ulong _element;
    }

    private KernelArgument(Bytes32 bytes) => _bytes = bytes;

    /// <summary>The bytes of <paramref name="value"/>; it must match the kernel parameter's type exactly (a C++ <c>bool</c> is one byte).</summary>
    public static unsafe KernelArgument Of<T>(T value) where T : unmanaged
    {
        if (sizeof(T) > sizeof(Bytes32))
            throw new ArgumentException($"A {typeof(T).Name} is {sizeof(T)} bytes; kernel arguments passed by value are limited to {sizeof(Bytes32)}. Pass a device pointer instead.", nameof(value));
        Bytes32 bytes = default;
        Unsafe.WriteUnaligned(ref Unsafe.As<Bytes32, byte>(ref bytes), value);
        return new KernelArgument(bytes);
    }

    /// <summary>A device address (CUdeviceptr) passed as a pointer argument.</summary>
    public static KernelArgument DevicePointer(ulong address) => Of(address);

    /// <summary>An <c>int</c> argument.</summary>
    public static implicit operator KernelArgument(int value) => Of(value);
    /// <summary>An <c>unsigned int</c> argument.</summary>
    public static implicit operator KernelArgument(uint value) => Of(value);
    /// <summary>A <c>long long</c> argument.</summary>
    public static implicit operator KernelArgument(long value) => Of(value);
    /// <summary>An <c>unsigned long long</c> argument.</summary>
    public static implicit operator KernelArgument(ulong value) => Of(value);
    /// <summary>A <c>float</c> argument.</summary>
    public static implicit operator KernelArgument(float value) => Of(value);
    /// <summary>A <c>double</c> argument.</summary>
    public static implicit operator KernelArgument(double value) => Of(value);
    /// <summary>A C++ <c>bool</c> argument (one byte).</summary>
    public static implicit operator KernelArgument(bool value) => Of(value ? (byte)1 : (byte)0);
}
