using System.Numerics.Tensors;

namespace MambaGen.Cpu;

/// <summary>Mean next-token cross-entropy over the scored positions, and its gradient with respect to the logits.</summary>
public static class CrossEntropy
{
    /// <summary>The target id of a position that is not scored.</summary>
    public const int Unscored = -1;

    /// <summary>
    /// Returns mean over scored rows of −log softmax(logits)[target] and overwrites <paramref name="logits"/>
    /// (rows × <paramref name="vocab"/>) with the gradient of that mean: (softmax − onehot(target)) / scored for scored
    /// rows, 0 for rows whose target is <see cref="Unscored"/>. With nothing scored the loss and gradient are 0.
    /// Targets must already be validated.
    /// </summary>
    public static float LossAndGradient(Span<float> logits, ReadOnlySpan<int> targets, int vocab)
    {
        int scored = 0;
        foreach (int target in targets)
            if (target != Unscored) scored++;
        double total = 0;
        float scale = scored == 0 ? 0f : 1f / scored;
        for (int row = 0; row < targets.Length; row++)
        {
            var values = logits.Slice(row * vocab, vocab);
            int target = targets[row];
            if (target == Unscored)
            {
                values.Clear();
                continue;
            }
            float max = TensorPrimitives.Max(values);
            float targetLogit = values[target];
            TensorPrimitives.Subtract(values, max, values);
            Simd.Exp(values, values);
            float sum = TensorPrimitives.Sum(values);
            total += Math.Log(sum) - (targetLogit - max);
            TensorPrimitives.Multiply(values, scale / sum, values);
            values[target] -= scale;
        }
        return scored == 0 ? 0f : (float)(total / scored);
    }
}
