using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

internal static unsafe partial class Driver
{
    // Module globals (__constant__ and __device__ variables) by name.
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int cuModuleGetGlobal_v2(ulong* address, nuint* bytes, IntPtr module, string name);
}
