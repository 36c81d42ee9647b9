using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

/// <summary>Raw NVRTC entry points (nvrtc.h). Status codes are plain ints; nvrtcGetErrorString names them.</summary>
internal static unsafe partial class Nvrtc
{
    static Nvrtc() => CudaLibrary.EnsureResolverRegistered();

    private const string Lib = CudaLibrary.NvrtcImportName;

    internal const int Success = 0;
    internal const int CompilationError = 6;

    [LibraryImport(Lib)] internal static partial byte* nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] internal static partial int nvrtcVersion(int* major, int* minor);
    [LibraryImport(Lib)] internal static partial int nvrtcGetNumSupportedArchs(int* count);
    [LibraryImport(Lib)] internal static partial int nvrtcGetSupportedArchs(int* architectures);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int nvrtcCreateProgram(IntPtr* program, string source, string name, int headerCount, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] internal static partial int nvrtcDestroyProgram(IntPtr* program);
    [LibraryImport(Lib)] internal static partial int nvrtcCompileProgram(IntPtr program, int optionCount, byte** options);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLogSize(IntPtr program, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLog(IntPtr program, byte* log);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTXSize(IntPtr program, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTX(IntPtr program, byte* ptx);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBINSize(IntPtr program, nuint* size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBIN(IntPtr program, byte* cubin);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int nvrtcAddNameExpression(IntPtr program, string nameExpression);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int nvrtcGetLoweredName(IntPtr program, string nameExpression, byte** loweredName);
}
