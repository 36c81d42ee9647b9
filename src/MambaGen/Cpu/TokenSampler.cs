using MambaGen.Numerics;

namespace MambaGen.Cpu;

/// <summary>
/// Picks the next token from a row of logits: greedy (argmax) when <see cref="Temperature"/> is 0, otherwise a draw
/// from softmax(logits / temperature) restricted, in this order as in Hugging Face's <c>generate</c>, to the
/// <see cref="TopK"/> most likely tokens and then to the smallest set whose probability reaches <see cref="TopP"/>.
/// </summary>
public sealed class TokenSampler
{
    private readonly Xoshiro256 _random;
    private float[] _negatedLogits = [];
    private int[] _order = [];

    public float Temperature { get; }
    /// <summary>Keep only this many most likely tokens; 0 keeps all.</summary>
    public int TopK { get; }
    /// <summary>Nucleus threshold in (0, 1]; 1 keeps all.</summary>
    public float TopP { get; }

    public TokenSampler(float temperature = 0f, int topK = 0, float topP = 1f, int seed = 0)
    {
        if (!(temperature >= 0) || float.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be finite and ≥ 0 (0 = greedy).");
        if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "topK must be ≥ 0 (0 = no limit).");
        if (!(topP > 0 && topP <= 1)) throw new ArgumentOutOfRangeException(nameof(topP), topP, "topP must be in (0, 1].");
        Temperature = temperature;
        TopK = topK;
        TopP = topP;
        _random = new Xoshiro256(unchecked((ulong)seed));
    }

    public bool IsGreedy => Temperature == 0f;

    public int Next(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("No logits to sample from.", nameof(logits));
        return IsGreedy ? ArgMax(logits) : Sample(logits);
    }

    /// <summary>Index of the largest logit (the first one on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    private int Sample(ReadOnlySpan<float> logits)
    {
        int vocab = logits.Length;
        if (_order.Length != vocab)
        {
            _negatedLogits = new float[vocab];
            _order = new int[vocab];
        }
        // Sort ids by descending logit (ascending negated logit); ties keep no particular order.
        for (int i = 0; i < vocab; i++)
        {
            _negatedLogits[i] = -logits[i];
            _order[i] = i;
        }
        Array.Sort(_negatedLogits, _order);

        int kept = TopK > 0 ? Math.Min(TopK, vocab) : vocab;
        // Softmax of the kept logits divided by the temperature, shifted by the maximum for stability.
        double max = -_negatedLogits[0] / Temperature, total = 0;
        for (int i = 0; i < kept; i++)
            total += Math.Exp(-_negatedLogits[i] / Temperature - max);
        if (TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += Math.Exp(-_negatedLogits[i] / Temperature - max) / total;
                if (cumulative >= TopP) { kept = i + 1; break; }
            }
            total = 0;
            for (int i = 0; i < kept; i++)
                total += Math.Exp(-_negatedLogits[i] / Temperature - max);
        }

        double target = _random.NextDouble() * total;
        for (int i = 0; i < kept; i++)
        {
            target -= Math.Exp(-_negatedLogits[i] / Temperature - max);
            if (target < 0) return _order[i];
        }
        return _order[kept - 1];
    }
}
