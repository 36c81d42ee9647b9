using System.Numerics;

namespace MambaGen.Cpu;

/// <summary>
/// Root-mean-square normalisation of each row, as Hugging Face's <c>MambaRMSNorm</c>: y = x·rsqrt(mean(x²) + eps)·w.
/// Rows are short (D), so each is done in one or two fused vector passes rather than several library calls.
/// </summary>
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
        if (input.Length < rows * width || output.Length < rows * width || (!inverseRms.IsEmpty && inverseRms.Length < rows))
            throw new ArgumentException($"RMSNorm of {rows}×{width} needs {rows * width} values (input {input.Length}, output {output.Length}) and {rows} inverse RMS values.");
        for (int row = 0; row < rows; row++)
        {
            var x = input.Slice(row * width, width);
            var y = output.Slice(row * width, width);
            float scale = 1f / MathF.Sqrt(Dot(x, x) / width + epsilon);
            if (!inverseRms.IsEmpty) inverseRms[row] = scale;
            int i = 0;
            for (; i + Vector<float>.Count <= width; i += Vector<float>.Count)
                (new Vector<float>(x.Slice(i)) * scale * new Vector<float>(weight.Slice(i))).CopyTo(y.Slice(i));
            for (; i < width; i++) y[i] = x[i] * scale * weight[i];
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/> given its saved <paramref name="inverseRms"/> r: with g = dy ⊙ w, adds
    /// r·(g − x·r²·mean(g ⊙ x)) to <paramref name="inputGradient"/> and Σ_rows dy ⊙ x·r to
    /// <paramref name="weightGradient"/>.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> input, ReadOnlySpan<float> weight, ReadOnlySpan<float> inverseRms,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient, Span<float> weightGradient, int rows, int width)
    {
        if (weight.Length != width || weightGradient.Length != width)
            throw new ArgumentException($"RMSNorm weight and its gradient need {width} values (have {weight.Length}, {weightGradient.Length}).");
        if (input.Length < rows * width || outputGradient.Length < rows * width || inputGradient.Length < rows * width || inverseRms.Length < rows)
            throw new ArgumentException($"RMSNorm backward of {rows}×{width} needs {rows * width} values per buffer and {rows} inverse RMS values.");
        int lanes = Vector<float>.Count;
        for (int row = 0; row < rows; row++)
        {
            var x = input.Slice(row * width, width);
            var dy = outputGradient.Slice(row * width, width);
            var dx = inputGradient.Slice(row * width, width);
            float r = inverseRms[row];
            // Pass 1: Σ g ⊙ x with g = dy ⊙ w, and dw += dy ⊙ x·r.
            var dotLanes = Vector<float>.Zero;
            int i = 0;
            for (; i + lanes <= width; i += lanes)
            {
                var xv = new Vector<float>(x.Slice(i));
                var dyx = new Vector<float>(dy.Slice(i)) * xv;
                dotLanes += dyx * new Vector<float>(weight.Slice(i));
                (new Vector<float>(weightGradient.Slice(i)) + dyx * r).CopyTo(weightGradient.Slice(i));
            }
            float dot = Vector.Sum(dotLanes);
            for (int j = i; j < width; j++)
            {
                dot += dy[j] * weight[j] * x[j];
                weightGradient[j] += dy[j] * x[j] * r;
            }
            // Pass 2: dx += r·g − (r³·dot / width)·x.
            float coefficient = r * r * r * dot / width;
            for (i = 0; i + lanes <= width; i += lanes)
            {
                var g = new Vector<float>(dy.Slice(i)) * new Vector<float>(weight.Slice(i));
                (new Vector<float>(dx.Slice(i)) + g * r - new Vector<float>(x.Slice(i)) * coefficient).CopyTo(dx.Slice(i));
            }
            for (; i < width; i++) dx[i] += dy[i] * weight[i] * r - x[i] * coefficient;
        }
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var lanes = Vector<float>.Zero;
        int i = 0;
        for (; i + Vector<float>.Count <= a.Length; i += Vector<float>.Count)
            lanes += new Vector<float>(a.Slice(i)) * new Vector<float>(b.Slice(i));
        float sum = Vector.Sum(lanes);
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }
}
