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
}
