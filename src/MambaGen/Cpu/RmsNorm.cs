using System.Numerics.Tensors;

namespace MambaGen.Cpu;

/// <summary>Root-mean-square normalisation of each row, as Hugging Face's <c>MambaRMSNorm</c>: y = x·rsqrt(mean(x²) + eps)·w.</summary>
public static class RmsNorm
{
    /// <summary>
    /// Normalises <paramref name="rows"/> rows of <paramref name="width"/> values. When <paramref name="inverseRms"/>
    /// is not empty it receives rsqrt(mean(x²) + eps) per row (kept for the backward pass).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> weight, float epsilon, Span<float> output,
        Span<float> inverseRms, int rows, int width)
    {
        if (weight.Length != width) throw new ArgumentException($"RMSNorm weight has {weight.Length} values, expected {width}.", nameof(weight));
        if (input.Length < rows * width || output.Length < rows * width)
            throw new ArgumentException($"RMSNorm of {rows}×{width} needs {rows * width} values (input {input.Length}, output {output.Length}).");
        for (int row = 0; row < rows; row++)
        {
            var x = input.Slice(row * width, width);
            var y = output.Slice(row * width, width);
            float scale = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / width + epsilon);
            if (!inverseRms.IsEmpty) inverseRms[row] = scale;
            TensorPrimitives.Multiply(x, scale, y);
            TensorPrimitives.Multiply(y, weight, y);
        }
    }
}
