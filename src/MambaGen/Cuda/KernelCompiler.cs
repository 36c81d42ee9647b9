using System.Security.Cryptography;
using System.Text;

namespace MambaGen.Cuda;

/// <summary>What NVRTC produces: PTX (the driver compiles it at load time) or a CUBIN for one real architecture.</summary>
public enum CudaImageKind
{
    /// <summary>PTX for a virtual architecture (compute_XY): runs on that architecture and newer ones.</summary>
    Ptx,
    /// <summary>Machine code for a real architecture (sm_XY): loads without a JIT step.</summary>
    Cubin,
}

/// <summary>A compiled module image and the symbols of the name expressions it was asked for.</summary>
/// <param name="Image">The PTX text or CUBIN bytes, ready for <see cref="CudaContext.LoadModule"/>.</param>
/// <param name="Kind">PTX or CUBIN.</param>
/// <param name="Architecture">The architecture compiled for, as 10·major + minor.</param>
/// <param name="LoweredNames">Each requested name expression mapped to its mangled symbol.</param>
/// <param name="FromCache">True when the image was read from the disk cache rather than compiled now.</param>
public sealed record CompiledImage(byte[] Image, CudaImageKind Kind, int Architecture,
    IReadOnlyDictionary<string, string> LoweredNames, bool FromCache);

/// <summary>
/// Compiles CUDA C++ with NVRTC and caches the result on disk, keyed by a SHA-256 of the source, its name, the
/// options, the name expressions, the NVRTC version, the architecture and the image kind. Entries are written to a
/// temporary file and renamed into place, so concurrent processes never see a partial entry; an entry that fails its
/// checksum (truncated, corrupted) is ignored and rebuilt. A cache folder that cannot be written only costs speed.
/// </summary>
public sealed class KernelCompiler
{
    private const int FormatVersion = 1;
    private static readonly byte[] s_magic = "MGKC"u8.ToArray();

    /// <summary>Uses <paramref name="cacheDirectory"/>, or <see cref="DefaultCacheDirectory"/> when null.</summary>
    public KernelCompiler(string? cacheDirectory = null) => CacheDirectory = cacheDirectory ?? DefaultCacheDirectory;

    /// <summary>The folder holding the cached images.</summary>
    public string CacheDirectory { get; }

    /// <summary>
    /// <c>$MAMBAGEN_CACHE/kernels</c> when that variable is set; otherwise <c>$XDG_CACHE_HOME/mambagen/kernels</c>,
    /// <c>~/.cache/mambagen/kernels</c>, or on Windows <c>%LOCALAPPDATA%\MambaGen\cache\kernels</c>.
    /// </summary>
    public static string DefaultCacheDirectory
    {
        get
        {
            var root = Environment.GetEnvironmentVariable("MAMBAGEN_CACHE");
            if (!string.IsNullOrWhiteSpace(root)) return Path.Combine(root, "kernels");
            if (OperatingSystem.IsWindows())
                return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "MambaGen", "cache", "kernels");
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var cache = string.IsNullOrWhiteSpace(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg;
            return Path.Combine(cache, "mambagen", "kernels");
        }
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for <paramref name="architecture"/> (e.g. 90), as a CUBIN
    /// (<c>--gpu-architecture=sm_90</c>) or PTX (<c>compute_90</c>), or returns the cached image.
    /// </summary>
    /// <param name="source">Self-contained CUDA C++ source.</param>
    /// <param name="name">The source's name in NVRTC's log, e.g. "selective_scan.cu".</param>
    /// <param name="architecture">Target architecture as 10·major + minor.</param>
    /// <param name="kind">PTX or CUBIN.</param>
    /// <param name="options">Further NVRTC options (the architecture option is added here).</param>
    /// <param name="nameExpressions">Template instantiations or C++ names whose mangled symbols are wanted.</param>
    /// <exception cref="NvrtcCompilationException">NVRTC rejected the source.</exception>
    public CompiledImage Compile(string source, string name, int architecture, CudaImageKind kind,
        IEnumerable<string>? options = null, IEnumerable<string>? nameExpressions = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(architecture, 10);
        var allOptions = new List<string> { $"--gpu-architecture={(kind == CudaImageKind.Cubin ? "sm" : "compute")}_{architecture}" };
        allOptions.AddRange(options ?? []);
        var expressions = (nameExpressions ?? []).Distinct().ToArray();
        var version = CudaRuntimeCompiler.Version;

        string path = Path.Combine(CacheDirectory, $"{CacheKey(source, name, allOptions, expressions, version, architecture, kind)}.{kind.ToString().ToLowerInvariant()}");
        var cached = TryRead(path, expressions);
        if (cached is not null) return new CompiledImage(cached.Value.Image, kind, architecture, cached.Value.LoweredNames, FromCache: true);

        using var program = new CudaRuntimeCompiler(source, name);
        foreach (var expression in expressions) program.AddNameExpression(expression);
        program.Compile([.. allOptions]);
        var image = kind == CudaImageKind.Cubin ? program.GetCubin() : program.GetPtx();
        var lowered = expressions.ToDictionary(e => e, program.GetLoweredName);
        TryWrite(path, image, lowered);
        return new CompiledImage(image, kind, architecture, lowered, FromCache: false);
    }

    /// <summary>
    /// Compiles for <paramref name="context"/>'s device: a CUBIN when this NVRTC knows the device's architecture,
    /// otherwise PTX for the newest architecture it knows, which the driver compiles for the device at load time.
    /// </summary>
    public CompiledImage CompileFor(CudaContext context, string source, string name,
        IEnumerable<string>? options = null, IEnumerable<string>? nameExpressions = null)
    {
        var supported = CudaRuntimeCompiler.SupportedArchitectures;
        int device = context.Architecture;
        if (supported.Contains(device)) return Compile(source, name, device, CudaImageKind.Cubin, options, nameExpressions);
        var older = supported.Where(a => a < device).ToArray();
        if (older.Length == 0)
            throw new NotSupportedException(
                $"NVRTC {CudaRuntimeCompiler.Version} targets sm_{supported[0]}..sm_{supported[^1]}; the device {context.DeviceName} is sm_{device}.");
        return Compile(source, name, older[^1], CudaImageKind.Ptx, options, nameExpressions);
    }

    private static string CacheKey(string source, string name, IReadOnlyList<string> options, IReadOnlyList<string> expressions,
        Version nvrtcVersion, int architecture, CudaImageKind kind)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // Length-prefixed fields, so no two different inputs can concatenate to the same bytes.
        void Add(string field)
        {
            var bytes = Encoding.UTF8.GetBytes(field);
            hash.AppendData(BitConverter.GetBytes(bytes.Length));
            hash.AppendData(bytes);
        }
        Add($"format {FormatVersion}; nvrtc {nvrtcVersion}; arch {architecture}; {kind}");
        Add(name);
        Add(source);
        Add(string.Join('\n', options));
        Add(string.Join('\n', expressions));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    // Entry layout: magic, format version, payload length, payload, SHA-256 of the payload.
    // Payload: lowered-name count, (expression, symbol) pairs, image length, image.
    private static (byte[] Image, IReadOnlyDictionary<string, string> LoweredNames)? TryRead(string path, string[] expressions)
    {
        try
        {
            if (!File.Exists(path)) return null;
            using var reader = new BinaryReader(File.OpenRead(path));
            if (!reader.ReadBytes(s_magic.Length).AsSpan().SequenceEqual(s_magic) || reader.ReadInt32() != FormatVersion) return null;
            int payloadLength = reader.ReadInt32();
            if (payloadLength < 0 || payloadLength > reader.BaseStream.Length) return null;
            var payload = reader.ReadBytes(payloadLength);
            var checksum = reader.ReadBytes(32);
            if (payload.Length != payloadLength || !SHA256.HashData(payload).AsSpan().SequenceEqual(checksum)) return null;

            using var body = new BinaryReader(new MemoryStream(payload));
            int count = body.ReadInt32();
            var lowered = new Dictionary<string, string>();
            for (int i = 0; i < count; i++) lowered[body.ReadString()] = body.ReadString();
            var image = body.ReadBytes(body.ReadInt32());
            // The key covers the expressions, so a mismatch means a damaged entry that still passed its checksum.
            if (!expressions.All(lowered.ContainsKey) || image.Length == 0) return null;
            return (image, lowered);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EndOfStreamException or FormatException)
        {
            return null; // unreadable: compile again and overwrite it
        }
    }

    private static void TryWrite(string path, byte[] image, IReadOnlyDictionary<string, string> lowered)
    {
        var payloadStream = new MemoryStream();
        using (var body = new BinaryWriter(payloadStream, Encoding.UTF8, leaveOpen: true))
        {
            body.Write(lowered.Count);
            foreach (var (expression, symbol) in lowered)
            {
                body.Write(expression);
                body.Write(symbol);
            }
            body.Write(image.Length);
            body.Write(image);
        }
        var payload = payloadStream.ToArray();

        string temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using (var writer = new BinaryWriter(File.Create(temporary)))
            {
                writer.Write(s_magic);
                writer.Write(FormatVersion);
                writer.Write(payload.Length);
                writer.Write(payload);
                writer.Write(SHA256.HashData(payload));
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache is only a shortcut: a read-only or full disk must not fail the compile.
            try { File.Delete(temporary); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
        }
    }
}
