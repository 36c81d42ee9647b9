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

    /// <summary>
    /// Backward of <see cref="Forward"/> given its saved <paramref name="inverseRms"/> r: with g = dy ⊙ w, adds
    /// r·(g − x·r²·mean(g ⊙ x)) to <paramref name="inputGradient"/> and Σ_rows dy ⊙ x·r to
    /// <paramref name="weightGradient"/>. <paramref name="scratch"/> holds at least <paramref name="width"/> values.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> input, ReadOnlySpan<float> weight, ReadOnlySpan<float> inverseRms,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient, Span<float> weightGradient, Span<float> scratch, int rows, int width)
    {
        if (weight.Length != width || weightGradient.Length != width)
            throw new ArgumentException($"RMSNorm weight and its gradient need {width} values (have {weight.Length}, {weightGradient.Length}).");
        if (input.Length < rows * width || outputGradient.Length < rows * width || inputGradient.Length < rows * width || inverseRms.Length < rows)
            throw new ArgumentException($"RMSNorm backward of {rows}×{width} needs {rows * width} values per buffer and {rows} inverse RMS values.");
        var g = scratch.Slice(0, width);
        for (int row = 0; row < rows; row++)
        {
            var x = input.Slice(row * width, width);
            var dy = outputGradient.Slice(row * width, width);
            var dx = inputGradient.Slice(row * width, width);
            float r = inverseRms[row];
            // Weight gradient first, while g is free: dw += (dy ⊙ x)·r.
            TensorPrimitives.Multiply(dy, x, g);
            TensorPrimitives.MultiplyAdd(g, r, weightGradient, weightGradient);
            TensorPrimitives.Multiply(dy, weight, g);
            float coefficient = r * r * r * TensorPrimitives.Dot(g, x) / width;
            // dx += r·g − coefficient·x
            TensorPrimitives.MultiplyAdd(g, r, dx, dx);
            TensorPrimitives.MultiplyAdd(x, -coefficient, dx, dx);
        }
    }
}
