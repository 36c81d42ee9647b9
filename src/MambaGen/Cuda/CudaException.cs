using System.Runtime.InteropServices;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>
/// A CUDA driver, NVRTC or cuBLAS call returned an error. The message names the call, the error's symbolic name
/// (e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>) and its description, plus any context the caller added.
/// </summary>
public class CudaException : Exception
{
    /// <summary>Creates the exception from its parts; <paramref name="detail"/> (may be null) is appended to the message.</summary>
    public CudaException(string call, int status, string errorName, string errorText, string? detail = null)
        : base(Describe(call, status, errorName, errorText, detail))
    {
        Call = call;
        Status = status;
        ErrorName = errorName;
        ErrorText = errorText;
    }

    /// <summary>The API function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string Call { get; }

    /// <summary>The numeric status the library returned.</summary>
    public int Status { get; }

    /// <summary>The status's symbolic name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The library's description of the status.</summary>
    public string ErrorText { get; }

    private static string Describe(string call, int status, string name, string text, string? detail) =>
        $"{call} failed with {name} ({status}): {text}" + (detail is null ? "" : $" {detail}");

    /// <summary>Throws a <see cref="CudaException"/> for a non-success driver status.</summary>
    internal static void CheckDriver(int status, string call, string? detail = null)
    {
        if (status != CudaResult.Success) throw FromDriver(status, call, detail);
    }

    internal static unsafe CudaException FromDriver(int status, string call, string? detail = null)
    {
        byte* name = null, text = null;
        // The lookups themselves can fail (an unknown code): fall back to the number.
        string errorName = Driver.cuGetErrorName(status, &name) == CudaResult.Success && name != null
            ? Marshal.PtrToStringUTF8((IntPtr)name)! : $"CUresult {status}";
        string errorText = Driver.cuGetErrorString(status, &text) == CudaResult.Success && text != null
            ? Marshal.PtrToStringUTF8((IntPtr)text)! : "unknown CUDA driver error";
        return new CudaException(call, status, errorName, errorText, detail);
    }

    /// <summary>Throws a <see cref="CudaException"/> for a non-success NVRTC status.</summary>
    internal static unsafe void CheckNvrtc(int status, string call, string? detail = null)
    {
        if (status == Nvrtc.Success) return;
        byte* name = Nvrtc.nvrtcGetErrorString(status);
        string errorName = name != null ? Marshal.PtrToStringUTF8((IntPtr)name)! : $"nvrtcResult {status}";
        throw new CudaException(call, status, errorName, "NVRTC reported an error", detail);
    }
}

/// <summary>NVRTC rejected a source: carries the source's name and NVRTC's full log.</summary>
public sealed class NvrtcCompilationException : CudaException
{
    internal NvrtcCompilationException(string sourceName, IReadOnlyList<string> options, string log)
        : base("nvrtcCompileProgram", Nvrtc.CompilationError, "NVRTC_ERROR_COMPILATION",
            $"'{sourceName}' did not compile", $"Options: {string.Join(' ', options)}. NVRTC log:\n{log}")
    {
        SourceName = sourceName;
        Log = log;
    }

    /// <summary>The name the source was given (it prefixes each line of the log).</summary>
    public string SourceName { get; }

    /// <summary>NVRTC's compile log: errors and warnings with line numbers.</summary>
    public string Log { get; }
}
