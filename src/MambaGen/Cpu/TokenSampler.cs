using MambaGen.Numerics;

namespace MambaGen.Cpu;

/// <summary>
/// Picks the next token from a row of logits: greedy (argmax) when <see cref="Temperature"/> is 0, otherwise a draw
/// from softmax(logits / temperature) restricted, in this order as in Hugging Face's <c>generate</c>, to the
/// <see cref="TopK"/> most likely tokens, then to the smallest set whose probability reaches <see cref="TopP"/>, then
/// to the tokens at least <see cref="MinP"/> times as likely as the most likely one.
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
    /// <summary>Relative probability floor in [0, 1); 0 keeps all.</summary>
    public float MinP { get; }

    public TokenSampler(float temperature = 0f, int topK = 0, float topP = 1f, int seed = 0, float minP = 0f)
    {
        if (!(temperature >= 0) || float.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be finite and ≥ 0 (0 = greedy).");
        if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "topK must be ≥ 0 (0 = no limit).");
        if (!(topP > 0 && topP <= 1)) throw new ArgumentOutOfRangeException(nameof(topP), topP, "topP must be in (0, 1].");
        if (!(minP >= 0 && minP < 1)) throw new ArgumentOutOfRangeException(nameof(minP), minP, "minP must be in [0, 1).");
        Temperature = temperature;
        TopK = topK;
        TopP = topP;
        MinP = minP;
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

    /// <summary>
    /// Hugging Face's repetition penalty, in place: for each id in <paramref name="seen"/> (each counted once, however
    /// often it occurred), a positive logit is divided by <paramref name="penalty"/> and a negative one multiplied by it.
    /// Ids beyond the logits (outside a vocabulary limit) are skipped.
    /// </summary>
    public static void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> seen, float penalty)
    {
        foreach (int id in seen)
            if ((uint)id < (uint)logits.Length)
                logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
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

        // Weight of the i-th most likely token relative to the most likely: exp((logit_i − logit_max) / T).
        double max = -_negatedLogits[0] / Temperature;
        double Weight(int i) => Math.Exp(-_negatedLogits[i] / Temperature - max);

        int kept = TopK > 0 ? Math.Min(TopK, vocab) : vocab;
        if (TopP < 1f)
        {
            double total = 0;
            for (int i = 0; i < kept; i++) total += Weight(i);
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += Weight(i) / total;
                if (cumulative >= TopP) { kept = i + 1; break; }
            }
        }
        if (MinP > 0f)
        {
            // The ratio of two kept probabilities does not depend on what else is kept, so the floor is on Weight.
            int aboveFloor = 1;
            while (aboveFloor < kept && Weight(aboveFloor) >= MinP) aboveFloor++;
            kept = aboveFloor;
        }

        double keptTotal = 0;
        for (int i = 0; i < kept; i++) keptTotal += Weight(i);
        double target = _random.NextDouble() * keptTotal;
        for (int i = 0; i < kept; i++)
        {
            target -= Weight(i);
            if (target < 0) return _order[i];
        }
        return _order[kept - 1];
    }
}
