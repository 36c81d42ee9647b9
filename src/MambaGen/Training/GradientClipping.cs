using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace MambaGen.Training;

/// <summary>Gradient clipping by the global L2 norm over all parameters, as <c>torch.nn.utils.clip_grad_norm_</c>.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Computes the L2 norm of <paramref name="gradients"/> and, when it exceeds <paramref name="maxNorm"/>, scales
    /// them in place by maxNorm/(norm + 1e-6) (PyTorch's factor). Returns the norm before clipping. A maxNorm of
    /// +∞ only measures. A non-finite norm leaves the gradients untouched (the caller decides what to do).
    /// </summary>
    public static float ClipByGlobalNorm(Span<float> gradients, float maxNorm)
    {
        double norm = Math.Sqrt(SumOfSquares(gradients));
        float factor = ScaleFor(norm, maxNorm);
        if (factor != 1f) TensorPrimitives.Multiply(gradients, factor, gradients);
        return (float)norm;
    }

    /// <summary>
    /// The factor clipping multiplies a gradient of global norm <paramref name="norm"/> by: maxNorm/(norm + 1e-6)
    /// rounded to float when the norm is finite and exceeds <paramref name="maxNorm"/>, otherwise 1. The device
    /// path hands the same factor to its optimizer, so both clip with the same bits.
    /// </summary>
    public static float ScaleFor(double norm, float maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, $"maxNorm must be > 0 (+∞ disables clipping), was {maxNorm}.");
        return double.IsFinite(norm) && norm > maxNorm ? (float)(maxNorm / (norm + 1e-6)) : 1f;
    }

    /// <summary>Σ g² accumulated in double: a float sum over millions of terms would lose several digits.</summary>
    internal static double SumOfSquares(ReadOnlySpan<float> values)
    {
        int i = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated && values.Length >= Vector<float>.Count)
        {
            var accumulator = Vector<double>.Zero;
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(values);
            foreach (var vector in vectors)
            {
                Vector.Widen(vector, out var low, out var high);
                accumulator += low * low + high * high;
            }
            sum = Vector.Sum(accumulator);
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < values.Length; i++) sum += (double)values[i] * values[i];
        return sum;
    }
}
