using System.Buffers;
using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace MambaGen.Checkpoints;

/// <summary>A tensor to write: fp32 values, stored in the file as <paramref name="DType"/> (F32, F16 or BF16).</summary>
/// <param name="Name">The tensor's key.</param>
/// <param name="Shape">Row-major shape; the product must equal <paramref name="Data"/>'s length.</param>
/// <param name="Data">The values, row-major.</param>
/// <param name="DType">Stored element type; F16 and BF16 round to nearest, ties to even.</param>
public sealed record SafeTensor(string Name, int[] Shape, ReadOnlyMemory<float> Data, DType DType = DType.F32);

/// <summary>Writes safetensors files atomically (see <see cref="AtomicFile"/>).</summary>
public static class SafeTensorsWriter
{
    private const int ConversionChunkElements = 1 << 16;

    /// <summary>
    /// Writes <paramref name="tensors"/> in the given order, contiguous in the data section, with an optional
    /// <c>__metadata__</c> map (Hugging Face's loader wants <c>{"format": "pt"}</c>). Arguments are validated before
    /// anything is written; if writing fails, an existing file at <paramref name="path"/> is left as it was.
    /// </summary>
    public static void Write(string path, IReadOnlyList<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; this writer needs a little-endian machine.");
        Validate(tensors);
        byte[] header = BuildHeader(tensors, metadata);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var tensor in tensors) WriteData(stream, tensor);
        });
    }

    private static void Validate(IReadOnlyList<SafeTensor> tensors)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tensor in tensors)
        {
            if (string.IsNullOrEmpty(tensor.Name) || tensor.Name == "__metadata__")
                throw new ArgumentException($"'{tensor.Name}' cannot be a tensor name.", nameof(tensors));
            if (!names.Add(tensor.Name))
                throw new ArgumentException($"Tensor '{tensor.Name}' appears twice.", nameof(tensors));
            if (tensor.DType is not (DType.F32 or DType.F16 or DType.BF16))
                throw new ArgumentException(
                    $"Tensor '{tensor.Name}': fp32 data can be stored as F32, F16 or BF16, not {tensor.DType.HeaderName()}.", nameof(tensors));
            long elements = 1;
            foreach (int dim in tensor.Shape)
            {
                if (dim < 0)
                    throw new ArgumentException($"Tensor '{tensor.Name}' has negative dimension in shape {TensorEntry.FormatShape(tensor.Shape)}.", nameof(tensors));
                elements = checked(elements * dim);
            }
            if (elements != tensor.Data.Length)
                throw new ArgumentException(
                    $"Tensor '{tensor.Name}' has shape {TensorEntry.FormatShape(tensor.Shape)} ({elements} elements) but {tensor.Data.Length} values.",
                    nameof(tensors));
        }
    }

    private static byte[] BuildHeader(IReadOnlyList<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var tensor in tensors)
            {
                long end = offset + (long)tensor.Data.Length * tensor.DType.SizeInBytes();
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.DType.HeaderName());
                json.WriteStartArray("shape");
                foreach (int dim in tensor.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(end);
                json.WriteEndArray();
                json.WriteEndObject();
                offset = end;
            }
            json.WriteEndObject();
        }
        // Pad with spaces (the format allows trailing whitespace) so the data section starts 8-byte aligned,
        // which lets a memory-mapping reader view it as typed elements in place.
        int paddedLength = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[paddedLength];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteData(Stream stream, SafeTensor tensor)
    {
        if (tensor.DType == DType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(tensor.Data.Span));
            return;
        }
        ushort[] buffer = ArrayPool<ushort>.Shared.Rent(Math.Min(tensor.Data.Length, ConversionChunkElements));
        try
        {
            for (int start = 0; start < tensor.Data.Length; start += ConversionChunkElements)
            {
                var source = tensor.Data.Span.Slice(start, Math.Min(ConversionChunkElements, tensor.Data.Length - start));
                var converted = buffer.AsSpan(0, source.Length);
                if (tensor.DType == DType.F16)
                    TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, Half>(converted));
                else
                    BFloat16.FromSingle(source, converted);
                stream.Write(MemoryMarshal.AsBytes(converted));
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(buffer);
        }
    }
}
