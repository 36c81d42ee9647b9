using System.Numerics.Tensors;

namespace MambaGen.Cpu;

/// <summary>Row-wise operations on row-major matrices.</summary>
public static class Rows
{
    /// <summary>Adds <paramref name="bias"/> to the first bias.Length columns of each of <paramref name="rows"/> rows of <paramref name="matrix"/>.</summary>
    public static void AddBias(Span<float> matrix, int rows, int stride, ReadOnlySpan<float> bias)
    {
        for (int row = 0; row < rows; row++)
        {
            var values = matrix.Slice(row * stride, bias.Length);
            TensorPrimitives.Add(values, bias, values);
        }
    }

    /// <summary>Adds the sum over <paramref name="rows"/> rows of each of the first sums.Length columns to <paramref name="sums"/> (a bias gradient).</summary>
    public static void AddColumnSums(ReadOnlySpan<float> matrix, int rows, int stride, Span<float> sums)
    {
        for (int row = 0; row < rows; row++)
            TensorPrimitives.Add(sums, matrix.Slice(row * stride, sums.Length), sums);
    }
}
