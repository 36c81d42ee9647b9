using System.Reflection;
using System.Runtime.InteropServices;

namespace MambaGen.Cuda.Interop;

/// <summary>The native CUDA libraries MambaGen binds to.</summary>
public enum CudaLibraryKind
{
    /// <summary>The driver API (libcuda), installed with the NVIDIA driver.</summary>
    Driver,
    /// <summary>The run-time compiler (libnvrtc), from the CUDA toolkit or a redistributable package.</summary>
    Nvrtc,
    /// <summary>The BLAS library (libcublas), from the CUDA toolkit or a redistributable package.</summary>
    Cublas,
    /// <summary>NVIDIA's collective-communication library (libnccl), for training on several GPUs.</summary>
    Nccl,
}

/// <summary>
/// Finds the CUDA libraries by their versioned file names and hands them to the P/Invoke stubs. The stubs name
/// logical libraries (<see cref="DriverImportName"/> and friends) that no loader knows, so every native call goes
/// through <see cref="Resolve"/> and a missing library is reported once, with what was tried and how to get it.
/// </summary>
public static class CudaLibrary
{
    internal const string DriverImportName = "mambagen-cuda-driver";
    internal const string NvrtcImportName = "mambagen-nvrtc";
    internal const string CublasImportName = "mambagen-cublas";
    internal const string NcclImportName = "mambagen-nccl";

    /// <summary>Names a file or a folder holding libnccl.so.2, searched before everything else.</summary>
    public const string NcclPathVariable = "MAMBAGEN_NCCL_PATH";

    /// <summary>Where pip's nvidia-nccl package puts the library in the GPU image MambaGen is tested on; searched last.</summary>
    internal const string PythonNcclFolder = "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib";

    private static readonly object s_gate = new();
    private static readonly Dictionary<CudaLibraryKind, IntPtr> s_loaded = [];
    private static readonly Dictionary<CudaLibraryKind, string> s_loadedNames = [];
    private static bool s_resolverRegistered;

    /// <summary>File names tried for a library, newest version first.</summary>
    public static IReadOnlyList<string> CandidateNames(CudaLibraryKind kind) => OperatingSystem.IsWindows()
        ? kind switch
        {
            CudaLibraryKind.Driver => ["nvcuda.dll"],
            CudaLibraryKind.Nvrtc => ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"],
            CudaLibraryKind.Nccl => ["nccl.dll"],
            _ => ["cublas64_13.dll", "cublas64_12.dll"],
        }
        : kind switch
        {
            CudaLibraryKind.Driver => ["libcuda.so.1"],
            CudaLibraryKind.Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"],
            CudaLibraryKind.Nccl => ["libnccl.so.2"],
            _ => ["libcublas.so.13", "libcublas.so.12"],
        };

    /// <summary>
    /// Folders searched before the loader's own path: lib64 and lib (bin on Windows) under <c>CUDA_PATH</c> and
    /// <c>CUDA_HOME</c>. The default toolkit folder (/usr/local/cuda) is searched last, after the loader's path.
    /// </summary>
    public static IReadOnlyList<string> ToolkitDirectories()
    {
        var roots = new List<string>();
        foreach (var variable in new[] { "CUDA_PATH", "CUDA_HOME" })
        {
            var root = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrWhiteSpace(root)) roots.Add(root);
        }
        return LibraryFolders(roots);
    }

    private static IReadOnlyList<string> FallbackDirectories(CudaLibraryKind kind)
    {
        List<string> folders = OperatingSystem.IsWindows() ? [] : LibraryFolders(["/usr/local/cuda"]);
        if (kind == CudaLibraryKind.Nccl && !OperatingSystem.IsWindows()) folders.Add(PythonNcclFolder);
        return folders;
    }

    /// <summary>
    /// Folders searched first for <paramref name="kind"/>: for NCCL the <see cref="NcclPathVariable"/> folder (or the
    /// folder of the file it names), then those of <see cref="ToolkitDirectories"/>.
    /// </summary>
    public static IReadOnlyList<string> SearchDirectories(CudaLibraryKind kind)
    {
        var folders = new List<string>();
        if (kind == CudaLibraryKind.Nccl && Environment.GetEnvironmentVariable(NcclPathVariable) is { Length: > 0 } path)
            folders.Add(File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))! : path);
        folders.AddRange(ToolkitDirectories());
        return folders;
    }

    private static List<string> LibraryFolders(IEnumerable<string> roots)
    {
        var folders = new List<string>();
        foreach (var root in roots)
        {
            string[] subfolders = OperatingSystem.IsWindows() ? ["bin/x64", "bin"] : ["lib64", "lib"];
            foreach (var sub in subfolders) folders.Add(Path.Combine(root, sub));
        }
        return folders;
    }

    /// <summary>
    /// Loads a library (once per process) or throws <see cref="CudaLibraryNotFoundException"/> naming every file
    /// and folder tried.
    /// </summary>
    public static IntPtr Load(CudaLibraryKind kind)
    {
        lock (s_gate)
        {
            if (s_loaded.TryGetValue(kind, out var handle)) return handle;
            var found = Locate(kind, SearchDirectories(kind), searchLoaderPath: true, FallbackDirectories(kind));
            s_loaded[kind] = found.Handle;
            s_loadedNames[kind] = found.Name;
            return found.Handle;
        }
    }

    /// <summary>True when the library can be loaded; <paramref name="failure"/> says why not otherwise.</summary>
    public static bool TryLoad(CudaLibraryKind kind, out string? failure)
    {
        try
        {
            Load(kind);
            failure = null;
            return true;
        }
        catch (CudaLibraryNotFoundException e)
        {
            failure = e.Message;
            return false;
        }
    }

    /// <summary>The file name (or path) the library was loaded from, or null if it has not been loaded.</summary>
    public static string? LoadedFrom(CudaLibraryKind kind)
    {
        lock (s_gate) return s_loadedNames.GetValueOrDefault(kind);
    }

    /// <summary>
    /// The search itself: each candidate name in each folder, then (optionally) each name through the loader's
    /// path, then the fallback folders. Separate from <see cref="Load"/> so tests can search folders of their own.
    /// </summary>
    internal static (IntPtr Handle, string Name) Locate(
        CudaLibraryKind kind, IReadOnlyList<string> directories, bool searchLoaderPath, IReadOnlyList<string> fallbackDirectories)
    {
        var names = CandidateNames(kind);
        var tried = new List<string>();
        foreach (var directory in directories)
        {
            foreach (var name in names)
            {
                var path = Path.Combine(directory, name);
                tried.Add(path);
                if (File.Exists(path) && NativeLibrary.TryLoad(path, out var handle)) return (handle, path);
            }
        }
        if (searchLoaderPath)
        {
            foreach (var name in names)
            {
                tried.Add($"{name} (loader path)");
                if (NativeLibrary.TryLoad(name, out var handle)) return (handle, name);
            }
        }
        foreach (var directory in fallbackDirectories)
        {
            foreach (var name in names)
            {
                var path = Path.Combine(directory, name);
                tried.Add(path);
                if (File.Exists(path) && NativeLibrary.TryLoad(path, out var handle)) return (handle, path);
            }
        }
        throw new CudaLibraryNotFoundException(kind, names, tried);
    }

    /// <summary>
    /// Points the MambaGen assembly's P/Invoke stubs at <see cref="Resolve"/>. A .NET assembly has one resolver,
    /// so this is the single place MambaGen registers one.
    /// </summary>
    internal static void EnsureResolverRegistered()
    {
        lock (s_gate)
        {
            if (s_resolverRegistered) return;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibrary).Assembly, Resolve);
            s_resolverRegistered = true;
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) => libraryName switch
    {
        DriverImportName => Load(CudaLibraryKind.Driver),
        NvrtcImportName => Load(CudaLibraryKind.Nvrtc),
        CublasImportName => Load(CudaLibraryKind.Cublas),
        NcclImportName => Load(CudaLibraryKind.Nccl),
        _ => IntPtr.Zero, // not ours: the runtime's default probing applies
    };
}

/// <summary>A CUDA library could not be found; the message names what was tried and how to install it.</summary>
public sealed class CudaLibraryNotFoundException : DllNotFoundException
{
    internal CudaLibraryNotFoundException(CudaLibraryKind kind, IReadOnlyList<string> names, IReadOnlyList<string> tried)
        : base(Describe(kind, names, tried))
    {
        Library = kind;
        Tried = tried;
    }

    /// <summary>Which library is missing.</summary>
    public CudaLibraryKind Library { get; }

    /// <summary>Every path (or loader-path name) that was tried, in order.</summary>
    public IReadOnlyList<string> Tried { get; }

    private static string Describe(CudaLibraryKind kind, IReadOnlyList<string> names, IReadOnlyList<string> tried)
    {
        string what = kind switch
        {
            CudaLibraryKind.Driver => "the CUDA driver library",
            CudaLibraryKind.Nvrtc => "the NVRTC run-time compiler",
            CudaLibraryKind.Nccl => "the NCCL collective-communication library (needed for training on several GPUs)",
            _ => "the cuBLAS library",
        };
        string howToGet = kind switch
        {
            CudaLibraryKind.Driver =>
                "It is installed with the NVIDIA GPU driver (e.g. Debian/Ubuntu 'libcuda1' / 'libnvidia-compute-*'); " +
                "inside a container, run it with the NVIDIA container toolkit (--gpus).",
            CudaLibraryKind.Nvrtc =>
                "Install the CUDA toolkit and set CUDA_PATH, or a redistributable NVRTC: Debian's 'libnvrtc11.2' " +
                "(non-free), or pip 'nvidia-cuda-nvrtc' with its lib folder on LD_LIBRARY_PATH.",
            CudaLibraryKind.Nccl =>
                "Install NCCL 2 (NVIDIA's 'libnccl2' package from the CUDA repository), or pip 'nvidia-nccl-cu12' / " +
                $"'nvidia-nccl-cu13' and set {CudaLibrary.NcclPathVariable} to its nvidia/nccl/lib folder (or put that folder on LD_LIBRARY_PATH).",
            _ =>
                "Install the CUDA toolkit and set CUDA_PATH, or a redistributable cuBLAS: pip 'nvidia-cublas' with " +
                "its lib folder on LD_LIBRARY_PATH.",
        };
        return $"Could not load {what} ({string.Join(" / ", names)}). Tried: {string.Join(", ", tried)}. {howToGet}";
    }
}
