namespace MambaGen.Cpu;

/// <summary>Embedding lookups: one table row per token.</summary>
public static class Embedding
{
    /// <summary>Copies row <c>tokens[i]</c> of the row-major <paramref name="table"/> into row i of <paramref name="output"/>. Ids must already be validated.</summary>
    public static void Gather(ReadOnlySpan<float> table, int width, ReadOnlySpan<int> tokens, Span<float> output)
    {
        for (int i = 0; i < tokens.Length; i++)
            table.Slice(tokens[i] * width, width).CopyTo(output.Slice(i * width, width));
    }

    /// <summary>Backward of <see cref="Gather"/>: adds row i of <paramref name="rowGradients"/> to row <c>tokens[i]</c> of <paramref name="tableGradient"/>.</summary>
    public static void ScatterAdd(ReadOnlySpan<float> rowGradients, int width, ReadOnlySpan<int> tokens, Span<float> tableGradient)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            var target = tableGradient.Slice(tokens[i] * width, width);
            System.Numerics.Tensors.TensorPrimitives.Add(target, rowGradients.Slice(i * width, width), target);
        }
    }
}
