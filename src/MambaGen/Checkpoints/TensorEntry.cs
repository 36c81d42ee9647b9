namespace MambaGen.Checkpoints;

/// <summary>One tensor listed in a safetensors header, already validated against the file.</summary>
/// <param name="Name">The tensor's key.</param>
/// <param name="DType">Element type as stored.</param>
/// <param name="Shape">Row-major shape (empty for a scalar).</param>
/// <param name="DataOffset">First byte relative to the start of the data section (the header's <c>data_offsets[0]</c>).</param>
/// <param name="ByteLength">Bytes the tensor occupies: element count × dtype size.</param>
public sealed record TensorEntry(string Name, DType DType, int[] Shape, long DataOffset, long ByteLength)
{
    /// <summary>Number of elements (the product of <see cref="Shape"/>).</summary>
    public long ElementCount => ByteLength / DType.SizeInBytes();

    /// <summary>The shape as messages print it, e.g. <c>[768, 16]</c>.</summary>
    public string ShapeText => FormatShape(Shape);

    internal static string FormatShape(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";
}
