using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using MambaGen.Checkpoints;

namespace MambaGen.Tests.Checkpoints;

/// <summary>A fresh directory under the system temp folder, deleted with everything in it on dispose.</summary>
internal sealed class ScratchDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("mambagen-checkpoints-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string[] FileNames() =>
        Directory.GetFileSystemEntries(Path).Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>
/// Builds safetensors bytes by hand, independently of <see cref="SafeTensorsWriter"/>, so tests can state exact
/// bit patterns, dtypes the writer does not produce, and deliberately broken headers.
/// </summary>
internal static class RawSafeTensors
{
    public static byte[] File(string headerJson, byte[] data) => File((ulong)Encoding.UTF8.GetByteCount(headerJson), Encoding.UTF8.GetBytes(headerJson), data);

    public static byte[] File(ulong declaredHeaderLength, byte[] header, byte[] data)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    /// <summary>A valid file holding the given tensors back to back, in order.</summary>
    public static byte[] File(params (string Name, string DType, int[] Shape, byte[] Bytes)[] tensors)
    {
        var header = new StringBuilder("{");
        var data = new List<byte>();
        foreach (var (name, dtype, shape, bytes) in tensors)
        {
            if (header.Length > 1) header.Append(',');
            header.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{data.Count},{data.Count + bytes.Length}]}}");
            data.AddRange(bytes);
        }
        header.Append('}');
        return File(header.ToString(), data.ToArray());
    }

    public static byte[] LittleEndian(params ushort[] values) => values.SelectMany(v => new[] { (byte)v, (byte)(v >> 8) }).ToArray();

    public static byte[] LittleEndian(params long[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), values[i]);
        return bytes;
    }

    public static byte[] LittleEndian(params double[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), values[i]);
        return bytes;
    }

    public static byte[] LittleEndian(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }
}

/// <summary>Memory whose contents cannot be produced: touching its span throws, as a failing data source would mid-write.</summary>
internal sealed class FailingMemory : MemoryManager<float>
{
    public static ReadOnlyMemory<float> OfLength(int length) => new FailingMemory().CreateMemory(length);

    public override Span<float> GetSpan() => throw new IOException("simulated failure while producing tensor data");

    public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
