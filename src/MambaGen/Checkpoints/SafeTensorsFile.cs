using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;

namespace MambaGen.Checkpoints;

/// <summary>
/// Reads a safetensors file: an 8-byte little-endian header length, a JSON header, then the data section.
/// <see cref="Open"/> validates the whole header against the file before any tensor is touched, so a corrupt or
/// truncated file fails there with a <see cref="CheckpointException"/> and no read can ever leave the data section.
/// Tensor bytes are streamed once, straight into the caller's buffer (converted chunk by chunk where the dtype
/// differs), with positional reads that are safe to issue from several threads.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted; real headers are kilobytes, so anything near this is corruption.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const int LengthPrefixBytes = 8;
    private const string MetadataKey = "__metadata__";
    // Chunk of raw bytes converted at a time for non-F32 dtypes: large enough to amortise the read call, small
    // enough to stay in L2.
    private const int ConversionChunkBytes = 1 << 18;

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    /// <summary>The file this reader was opened on, as given.</summary>
    public string FilePath { get; }

    /// <summary>Every tensor in the file, by key.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Tensors { get; }

    /// <summary>The header's optional <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart,
        IReadOnlyDictionary<string, TensorEntry> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        FilePath = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>Opens <paramref name="path"/> and validates its header; throws <see cref="CheckpointException"/> if it is malformed.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; this reader needs a little-endian machine.");

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < LengthPrefixBytes)
                throw new CheckpointException(
                    $"{path}: the file is {fileLength} bytes, shorter than the {LengthPrefixBytes}-byte header length prefix (truncated or not a safetensors file).");

            Span<byte> prefix = stackalloc byte[LengthPrefixBytes];
            ReadExactly(handle, path, prefix, 0);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > MaxHeaderBytes)
                throw new CheckpointException(
                    $"{path}: the header length prefix says {headerLength} bytes, more than the {MaxHeaderBytes}-byte limit (corrupt file or not a safetensors file).");
            if ((long)headerLength > fileLength - LengthPrefixBytes)
                throw new CheckpointException(
                    $"{path}: the header length prefix says {headerLength} bytes but only {fileLength - LengthPrefixBytes} bytes follow it (truncated file?).");

            var header = new byte[headerLength];
            ReadExactly(handle, path, header, LengthPrefixBytes);
            long dataStart = LengthPrefixBytes + (long)headerLength;
            var (tensors, metadata) = HeaderParser.Parse(path, header, fileLength - dataStart);
            return new SafeTensorsFile(path, handle, dataStart, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The entry for <paramref name="key"/>; throws <see cref="CheckpointException"/> naming the file if there is none.</summary>
    public TensorEntry GetEntry(string key) =>
        Tensors.TryGetValue(key, out var entry) ? entry : throw new CheckpointException($"{FilePath}: there is no tensor '{key}'.");

    /// <summary>Reads a floating-point tensor (F32, F16, BF16 or F64) into <paramref name="destination"/> as fp32.</summary>
    public void ReadFloat32(string key, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var entry = GetEntry(key);
        CheckDestinationLength(entry, destination.Length);
        switch (entry.DType)
        {
            case DType.F32:
                ReadData(entry, MemoryMarshal.AsBytes(destination), 0);
                break;
            case DType.F16:
                ReadConverted<Half, float>(entry, destination, static (source, target) => TensorPrimitives.ConvertToSingle(source, target));
                break;
            case DType.BF16:
                ReadConverted<ushort, float>(entry, destination, BFloat16.ToSingle);
                break;
            case DType.F64:
                ReadConverted<double, float>(entry, destination, static (source, target) =>
                {
                    for (int i = 0; i < source.Length; i++) target[i] = (float)source[i];
                });
                break;
            default:
                throw new CheckpointException(
                    $"{FilePath}: tensor '{key}' has dtype {entry.DType.HeaderName()}, not a floating-point dtype (F32, F16, BF16 or F64).");
        }
    }

    /// <summary>Copies an F16 or BF16 tensor's 16-bit values as stored (no conversion) into <paramref name="destination"/>.</summary>
    public void ReadSixteenBit(string key, Span<ushort> destination)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var entry = GetEntry(key);
        CheckDestinationLength(entry, destination.Length);
        if (entry.DType is not (DType.F16 or DType.BF16))
            throw new CheckpointException($"{FilePath}: tensor '{key}' has dtype {entry.DType.HeaderName()}, not a 16-bit one (F16 or BF16).");
        ReadData(entry, MemoryMarshal.AsBytes(destination), 0);
    }

    /// <summary>Reads a floating-point tensor as a new fp32 array (see <see cref="ReadFloat32(string, Span{float})"/>).</summary>
    public float[] ReadFloat32(string key)
    {
        var values = new float[CheckedArrayLength(GetEntry(key))];
        ReadFloat32(key, values);
        return values;
    }

    /// <summary>Reads an integer tensor stored as I64 or I32 (token ids, counters) as 64-bit values.</summary>
    public long[] ReadInt64(string key)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var entry = GetEntry(key);
        if (entry.DType is not (DType.I64 or DType.I32))
            throw new CheckpointException($"{FilePath}: tensor '{key}' has dtype {entry.DType.HeaderName()}, not I64 or I32.");
        var values = new long[CheckedArrayLength(entry)];
        if (entry.DType == DType.I64)
        {
            ReadData(entry, MemoryMarshal.AsBytes(values.AsSpan()), 0);
        }
        else
        {
            ReadConverted<int, long>(entry, values.AsSpan(), static (source, target) =>
            {
                for (int i = 0; i < source.Length; i++) target[i] = source[i];
            });
        }
        return values;
    }

    /// <summary>Reads an integer tensor stored as I32 or I64 as 32-bit values; an I64 value outside the int range is an error.</summary>
    public int[] ReadInt32(string key)
    {
        long[] wide = ReadInt64(key);
        var values = new int[wide.Length];
        for (int i = 0; i < wide.Length; i++)
        {
            if (wide[i] is < int.MinValue or > int.MaxValue)
                throw new CheckpointException($"{FilePath}: tensor '{key}' element {i} is {wide[i]}, outside the 32-bit integer range.");
            values[i] = (int)wide[i];
        }
        return values;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();

    private void CheckDestinationLength(TensorEntry entry, int length)
    {
        if (length != entry.ElementCount)
            throw new ArgumentException(
                $"{FilePath}: tensor '{entry.Name}' {entry.ShapeText} has {entry.ElementCount} elements but the destination holds {length}.",
                "destination");
    }

    private int CheckedArrayLength(TensorEntry entry) =>
        entry.ElementCount <= Array.MaxLength
            ? (int)entry.ElementCount
            : throw new CheckpointException($"{FilePath}: tensor '{entry.Name}' has {entry.ElementCount} elements, too many for one array.");

    private delegate void ConvertChunk<TSource, TTarget>(ReadOnlySpan<TSource> source, Span<TTarget> target);

    /// <summary>Streams a tensor of <typeparamref name="TSource"/> elements through a pooled buffer into <paramref name="destination"/>.</summary>
    private void ReadConverted<TSource, TTarget>(TensorEntry entry, Span<TTarget> destination, ConvertChunk<TSource, TTarget> convert)
        where TSource : unmanaged
    {
        int elementSize = entry.DType.SizeInBytes();
        int chunkElements = ConversionChunkBytes / elementSize;
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(entry.ByteLength, ConversionChunkBytes));
        try
        {
            for (int start = 0; start < destination.Length; start += chunkElements)
            {
                int count = Math.Min(chunkElements, destination.Length - start);
                var raw = buffer.AsSpan(0, count * elementSize);
                ReadData(entry, raw, (long)start * elementSize);
                convert(MemoryMarshal.Cast<byte, TSource>(raw), destination.Slice(start, count));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads <paramref name="target"/>.Length bytes of a tensor starting <paramref name="offsetInTensor"/> bytes into it.</summary>
    private void ReadData(TensorEntry entry, Span<byte> target, long offsetInTensor)
    {
        // The header was validated against the file length, so this can only fail if the file shrank since Open.
        ReadExactly(_handle, FilePath, target, _dataStart + entry.DataOffset + offsetInTensor);
    }

    private static void ReadExactly(SafeFileHandle handle, string path, Span<byte> target, long fileOffset)
    {
        while (!target.IsEmpty)
        {
            int read = RandomAccess.Read(handle, target, fileOffset);
            if (read == 0)
                throw new CheckpointException($"{path}: the file ended at byte {fileOffset} while reading it (was it truncated after opening?).");
            target = target[read..];
            fileOffset += read;
        }
    }

    /// <summary>Validates the JSON header against the data section's length.</summary>
    private static class HeaderParser
    {
        public static (IReadOnlyDictionary<string, TensorEntry>, IReadOnlyDictionary<string, string>) Parse(
            string path, byte[] header, long dataLength)
        {
            // The JSON reader leaves strings unvalidated until they are read, so check the encoding up front.
            if (!Utf8.IsValid(header))
                throw new CheckpointException($"{path}: the header is not valid UTF-8.");
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(header);
            }
            catch (JsonException e)
            {
                throw new CheckpointException($"{path}: the header is not valid JSON ({e.Message}).", e);
            }

            using (document)
            {
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new CheckpointException($"{path}: the header must be a JSON object but is a JSON {root.ValueKind}.");

                var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
                var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
                bool sawMetadata = false;
                foreach (var property in root.EnumerateObject())
                {
                    if (property.Name == MetadataKey)
                    {
                        if (sawMetadata) throw new CheckpointException($"{path}: the header has '{MetadataKey}' twice.");
                        sawMetadata = true;
                        ReadMetadata(path, property.Value, metadata);
                        continue;
                    }
                    var entry = ReadEntry(path, property.Name, property.Value, dataLength);
                    if (!tensors.TryAdd(entry.Name, entry))
                        throw new CheckpointException($"{path}: the header lists tensor '{entry.Name}' twice.");
                }
                CheckCoverage(path, tensors.Values, dataLength);
                return (tensors, metadata);
            }
        }

        private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
        {
            if (value.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{path}: '{MetadataKey}' must be an object of strings but is a JSON {value.ValueKind}.");
            foreach (var item in value.EnumerateObject())
            {
                if (item.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException(
                        $"{path}: '{MetadataKey}' entry '{item.Name}' must be a string but is a JSON {item.Value.ValueKind}.");
                if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                    throw new CheckpointException($"{path}: '{MetadataKey}' has key '{item.Name}' twice.");
            }
        }

        private static TensorEntry ReadEntry(string path, string name, JsonElement value, long dataLength)
        {
            string where = $"{path}: tensor '{name}'";
            if (value.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{where} must be described by a JSON object but is a JSON {value.ValueKind}.");

            var dtypeElement = Field(where, value, "dtype", JsonValueKind.String);
            string dtypeName = dtypeElement.GetString()!;
            if (!DTypes.TryParseHeaderName(dtypeName, out var dtype))
                throw new CheckpointException($"{where}: dtype \"{dtypeName}\" is unknown; expected one of {DTypes.KnownHeaderNames}.");

            var shapeElement = Field(where, value, "shape", JsonValueKind.Array);
            var shape = new int[shapeElement.GetArrayLength()];
            long elements = 1;
            int axis = 0;
            foreach (var dim in shapeElement.EnumerateArray())
            {
                if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt32(out int size) || size < 0)
                    throw new CheckpointException(
                        $"{where}: shape[{axis}] must be an integer from 0 to {int.MaxValue} but is {dim.GetRawText()}.");
                shape[axis++] = size;
                elements = elements <= long.MaxValue / Math.Max(size, 1)
                    ? elements * size
                    : throw new CheckpointException($"{where}: shape {TensorEntry.FormatShape(shape)} has too many elements.");
            }

            var offsetsElement = Field(where, value, "data_offsets", JsonValueKind.Array);
            if (offsetsElement.GetArrayLength() != 2)
                throw new CheckpointException(
                    $"{where}: data_offsets must be [begin, end] but has {offsetsElement.GetArrayLength()} elements.");
            long begin = Offset(where, offsetsElement[0], "begin");
            long end = Offset(where, offsetsElement[1], "end");
            if (begin > end)
                throw new CheckpointException($"{where}: data_offsets begin {begin} is after end {end}.");
            if (end > dataLength)
                throw new CheckpointException(
                    $"{where}: data_offsets end {end} is beyond the data section, which holds {dataLength} bytes (truncated file?).");

            int elementSize = dtype.SizeInBytes();
            long expectedBytes = elements <= long.MaxValue / elementSize
                ? elements * elementSize
                : throw new CheckpointException($"{where}: shape {TensorEntry.FormatShape(shape)} has too many elements.");
            if (end - begin != expectedBytes)
                throw new CheckpointException(
                    $"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes but shape {TensorEntry.FormatShape(shape)} of {dtype.HeaderName()} needs {expectedBytes}.");

            return new TensorEntry(name, dtype, shape, begin, end - begin);
        }

        private static JsonElement Field(string where, JsonElement entry, string name, JsonValueKind kind)
        {
            if (!entry.TryGetProperty(name, out var field))
                throw new CheckpointException($"{where} has no '{name}' field.");
            if (field.ValueKind != kind)
                throw new CheckpointException($"{where}: '{name}' must be a JSON {kind} but is {field.GetRawText()}.");
            return field;
        }

        private static long Offset(string where, JsonElement value, string which)
        {
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long offset) || offset < 0)
                throw new CheckpointException($"{where}: data_offsets {which} must be a non-negative integer but is {value.GetRawText()}.");
            return offset;
        }

        /// <summary>
        /// Like the reference implementation, require the tensors to tile the data section exactly: no overlaps
        /// (two keys aliasing bytes), no gaps and no trailing bytes (room for a hidden second payload).
        /// </summary>
        private static void CheckCoverage(string path, IEnumerable<TensorEntry> entries, long dataLength)
        {
            long covered = 0;
            TensorEntry? previous = null;
            foreach (var entry in entries.OrderBy(e => e.DataOffset).ThenBy(e => e.ByteLength))
            {
                if (entry.DataOffset < covered)
                    throw new CheckpointException(
                        $"{path}: tensor '{entry.Name}' (bytes {entry.DataOffset}..{entry.DataOffset + entry.ByteLength}) overlaps tensor '{previous!.Name}' (bytes {previous.DataOffset}..{covered}).");
                if (entry.DataOffset > covered)
                    throw new CheckpointException(
                        $"{path}: data bytes {covered}..{entry.DataOffset} belong to no tensor (tensor '{entry.Name}' starts at {entry.DataOffset}).");
                covered = entry.DataOffset + entry.ByteLength;
                previous = entry;
            }
            if (covered != dataLength)
                throw new CheckpointException(
                    $"{path}: the tensors cover {covered} bytes of the data section but it holds {dataLength} bytes ({dataLength - covered} trailing bytes belong to no tensor).");
        }
    }
}
