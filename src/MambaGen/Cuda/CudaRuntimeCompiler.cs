using System.Runtime.InteropServices;
using System.Text;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>
/// One NVRTC program: CUDA C++ source compiled in-process to PTX or, for a real architecture
/// (<c>--gpu-architecture=sm_XY</c>), to a CUBIN. <see cref="KernelCompiler"/> adds the disk cache.
/// </summary>
public sealed unsafe class CudaRuntimeCompiler : IDisposable
{
    private IntPtr _program;
    private bool _compiled;

    /// <summary>Creates a program from <paramref name="source"/>; <paramref name="name"/> labels it in NVRTC's log.</summary>
    /// <exception cref="CudaLibraryNotFoundException">libnvrtc cannot be loaded.</exception>
    public CudaRuntimeCompiler(string source, string name)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrEmpty(name);
        SourceName = name;
        CudaLibrary.Load(CudaLibraryKind.Nvrtc);
        IntPtr program;
        CudaException.CheckNvrtc(Nvrtc.nvrtcCreateProgram(&program, source, name, 0, null, null), "nvrtcCreateProgram", $"('{name}')");
        _program = program;
    }

    /// <summary>The name the source was given.</summary>
    public string SourceName { get; }

    /// <summary>The NVRTC library's version, e.g. 11.8 or 13.0.</summary>
    public static Version Version
    {
        get
        {
            CudaLibrary.Load(CudaLibraryKind.Nvrtc);
            int major, minor;
            CudaException.CheckNvrtc(Nvrtc.nvrtcVersion(&major, &minor), "nvrtcVersion");
            return new Version(major, minor);
        }
    }

    /// <summary>The architectures this NVRTC can compile for, as 10·major + minor (e.g. 52 … 90), ascending.</summary>
    public static IReadOnlyList<int> SupportedArchitectures
    {
        get
        {
            CudaLibrary.Load(CudaLibraryKind.Nvrtc);
            int count;
            CudaException.CheckNvrtc(Nvrtc.nvrtcGetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
            var architectures = new int[count];
            fixed (int* values = architectures)
                CudaException.CheckNvrtc(Nvrtc.nvrtcGetSupportedArchs(values), "nvrtcGetSupportedArchs");
            Array.Sort(architectures);
            return architectures;
        }
    }

    /// <summary>
    /// Asks NVRTC to instantiate and name <paramref name="nameExpression"/> (e.g. <c>scan&lt;float, 16&gt;</c>);
    /// after <see cref="Compile"/>, <see cref="GetLoweredName"/> gives the symbol to load. Call before compiling.
    /// </summary>
    public void AddNameExpression(string nameExpression)
    {
        if (_compiled) throw new InvalidOperationException("Name expressions must be added before the program is compiled.");
        CudaException.CheckNvrtc(Nvrtc.nvrtcAddNameExpression(Program, nameExpression), "nvrtcAddNameExpression", $"('{nameExpression}')");
    }

    /// <summary>Compiles with NVRTC <paramref name="options"/>; a rejected source throws <see cref="NvrtcCompilationException"/> with the log.</summary>
    public void Compile(params string[] options)
    {
        var encoded = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
        var handles = encoded.Select(bytes => GCHandle.Alloc(bytes, GCHandleType.Pinned)).ToArray();
        try
        {
            byte** pointers = stackalloc byte*[Math.Max(options.Length, 1)];
            for (int i = 0; i < handles.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
            int status = Nvrtc.nvrtcCompileProgram(Program, options.Length, pointers);
            if (status == Nvrtc.CompilationError) throw new NvrtcCompilationException(SourceName, options, Log);
            CudaException.CheckNvrtc(status, "nvrtcCompileProgram", $"('{SourceName}', options: {string.Join(' ', options)}) NVRTC log:\n{Log}");
            _compiled = true;
        }
        finally
        {
            foreach (var handle in handles) handle.Free();
        }
    }

    /// <summary>NVRTC's log of the last compilation (warnings even when it succeeded).</summary>
    public string Log
    {
        get
        {
            nuint size;
            CudaException.CheckNvrtc(Nvrtc.nvrtcGetProgramLogSize(Program, &size), "nvrtcGetProgramLogSize");
            var log = new byte[size];
            fixed (byte* bytes = log) CudaException.CheckNvrtc(Nvrtc.nvrtcGetProgramLog(Program, bytes), "nvrtcGetProgramLog");
            return Encoding.UTF8.GetString(log).TrimEnd('\0');
        }
    }

    /// <summary>The PTX text (without its terminating NUL); only for a virtual architecture (compute_XY).</summary>
    public byte[] GetPtx()
    {
        RequireCompiled();
        nuint size;
        CudaException.CheckNvrtc(Nvrtc.nvrtcGetPTXSize(Program, &size), "nvrtcGetPTXSize");
        var ptx = new byte[size];
        fixed (byte* bytes = ptx) CudaException.CheckNvrtc(Nvrtc.nvrtcGetPTX(Program, bytes), "nvrtcGetPTX");
        return ptx.AsSpan().TrimEnd((byte)0).ToArray();
    }

    /// <summary>The CUBIN; only for a real architecture (sm_XY).</summary>
    public byte[] GetCubin()
    {
        RequireCompiled();
        nuint size;
        CudaException.CheckNvrtc(Nvrtc.nvrtcGetCUBINSize(Program, &size), "nvrtcGetCUBINSize",
            "(a CUBIN exists only when compiling for a real architecture, --gpu-architecture=sm_XY)");
        var cubin = new byte[size];
        fixed (byte* bytes = cubin) CudaException.CheckNvrtc(Nvrtc.nvrtcGetCUBIN(Program, bytes), "nvrtcGetCUBIN");
        return cubin;
    }

    /// <summary>The mangled symbol of a name expression added before compiling.</summary>
    public string GetLoweredName(string nameExpression)
    {
        RequireCompiled();
        byte* lowered;
        CudaException.CheckNvrtc(Nvrtc.nvrtcGetLoweredName(Program, nameExpression, &lowered), "nvrtcGetLoweredName", $"('{nameExpression}')");
        return Marshal.PtrToStringUTF8((IntPtr)lowered)!;
    }

    /// <summary>Destroys the program.</summary>
    public void Dispose()
    {
        if (_program == IntPtr.Zero) return;
        var program = _program;
        _program = IntPtr.Zero;
        CudaException.CheckNvrtc(Nvrtc.nvrtcDestroyProgram(&program), "nvrtcDestroyProgram");
    }

    private IntPtr Program
    {
        get
        {
            ObjectDisposedException.ThrowIf(_program == IntPtr.Zero, this);
            return _program;
        }
    }

    private void RequireCompiled()
    {
        if (!_compiled) throw new InvalidOperationException($"'{SourceName}' has not been compiled yet.");
    }
}
