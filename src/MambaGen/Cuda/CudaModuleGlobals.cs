using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>Reading a module's <c>__constant__</c> / <c>__device__</c> variables, e.g. launch facts a kernel publishes.</summary>
public static class CudaModuleGlobals
{
    /// <summary>
    /// Copies the first <paramref name="count"/> elements of the module global <paramref name="name"/> to the host.
    /// Fails with the global's name when the module has none of that name or it is smaller than asked.
    /// </summary>
    public static unsafe T[] ReadConstant<T>(this CudaModule module, string name, int count) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(module);
        module.Context.MakeCurrent();
        ulong address;
        nuint bytes;
        CudaException.CheckDriver(Driver.cuModuleGetGlobal_v2(&address, &bytes, module.Handle, name), "cuModuleGetGlobal_v2", $"(global '{name}')");
        long wanted = (long)count * sizeof(T);
        if ((long)bytes < wanted)
            throw new ArgumentException($"Module global '{name}' holds {bytes} bytes; {count} × {typeof(T).Name} = {wanted} were asked for.", nameof(count));
        var values = new T[count];
        fixed (T* target = values)
            CudaException.CheckDriver(Driver.cuMemcpyDtoH_v2(target, address, (nuint)wanted), "cuMemcpyDtoH_v2", $"(global '{name}')");
        return values;
    }
}
