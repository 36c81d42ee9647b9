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
    // Scratch of Sample, reused across tokens: the logits, the ids ranked so far, their count, the ranking and its heap.
    private float[] _logits = [];
    private int[] _order = [];
    private int _ranked;
    private RankComparer _rank = new([]);
    private PriorityQueue<int, int>? _heap;

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

    /// <summary>Tokens ranked at the first extension of the sorted prefix: the whole draw usually lands among them.</summary>
    private const int InitialRanked = 64;

    /// <summary>
    /// Draws from the tempered softmax restricted by top-k, top-p and min-p. Every rule reads the tokens in descending
    /// order of logit from the most likely one, and usually stops after a few dozen, so the order is built lazily: a
    /// prefix of ranked tokens, extended (at least fourfold) by one pass over the vocabulary that keeps the best of the
    /// rest in a heap, only when a rule reaches its end. A step costs one pass over the logits (and one exp per token
    /// where a total over the whole vocabulary is needed) instead of a sort of all of them; a flat distribution that
    /// needs most of the vocabulary costs about a full sort, as before. Ties rank the lower id first.
    /// </summary>
    private int Sample(ReadOnlySpan<float> logits)
    {
        int vocab = logits.Length;
        if (_order.Length != vocab)
        {
            _logits = new float[vocab];
            _order = new int[vocab];
            _rank = new RankComparer(_logits);
            _heap = null;
        }
        // NaN ranks last (as −∞), so it is never drawn while any other token has weight.
        for (int i = 0; i < vocab; i++) _logits[i] = float.IsNaN(logits[i]) ? float.NegativeInfinity : logits[i];
        _ranked = 0;
        Rank(1);

        // Weight of the i-th most likely token relative to the most likely: exp((logit_i − logit_max) / T).
        double max = _logits[_order[0]] / Temperature;
        double Weight(int i) => Math.Exp(_logits[_order[i]] / Temperature - max);
        // Σ of the weights of the `count` most likely tokens: in rank order over a ranked prefix; over the whole
        // vocabulary in id order, which needs no ranking.
        double Total(int count)
        {
            double total = 0;
            if (count == vocab)
                foreach (float logit in _logits) total += Math.Exp(logit / Temperature - max);
            else
            {
                Rank(count);
                for (int i = 0; i < count; i++) total += Weight(i);
            }
            return total;
        }

        int kept = TopK > 0 ? Math.Min(TopK, vocab) : vocab;
        if (TopP < 1f)
        {
            double total = Total(kept);
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                Rank(i + 1);
                cumulative += Weight(i) / total;
                if (cumulative >= TopP) { kept = i + 1; break; }
            }
        }
        if (MinP > 0f)
        {
            // The ratio of two kept probabilities does not depend on what else is kept, so the floor is on Weight.
            int aboveFloor = 1;
            while (aboveFloor < kept && Rank(aboveFloor + 1) && Weight(aboveFloor) >= MinP) aboveFloor++;
            kept = aboveFloor;
        }

        double target = _random.NextDouble() * Total(kept);
        for (int i = 0; i < kept; i++)
        {
            Rank(i + 1);
            target -= Weight(i);
            if (target < 0) return _order[i];
        }
        Rank(kept);
        return _order[kept - 1];
    }

    /// <summary>
    /// Makes at least <paramref name="count"/> tokens ranked: _order[0, _ranked) holds the most likely tokens in
    /// descending order. Each extension at least quadruples the prefix, and one past an eighth of the vocabulary sorts
    /// the rest, so a draw that walks far down costs at most five passes and a sort.
    /// Returns true (so it can sit in a loop condition).
    /// </summary>
    private bool Rank(int count)
    {
        if (count <= _ranked) return true;
        int vocab = _logits.Length;
        int target = Math.Min(vocab, Math.Max(count, Math.Max(4 * _ranked, InitialRanked)));
        int last = _ranked > 0 ? _order[_ranked - 1] : -1;
        // Past an eighth of the vocabulary, heap passes would cost more than sorting what is left.
        if (target > vocab / 8) target = vocab;
        if (target == vocab)
        {
            // The rest of the vocabulary: collect and sort it.
            int next = _ranked;
            for (int id = 0; id < vocab; id++)
                if (last < 0 || _rank.Ranks(last, id)) _order[next++] = id;
            Array.Sort(_order, _ranked, vocab - _ranked, _rank);
        }
        else
        {
            // The best (target − _ranked) tokens ranked after `last`, in a heap whose top is the worst of them.
            int take = target - _ranked;
            var heap = _heap ??= new PriorityQueue<int, int>(_rank.Worse);
            heap.Clear();
            // Once the heap is full, a logit below its worst one cannot enter: most ids stop at that one comparison.
            float floor = float.NegativeInfinity;
            var logits = _logits;
            for (int id = 0; id < logits.Length; id++)
            {
                if (logits[id] < floor) continue;
                if (last >= 0 && !_rank.Ranks(last, id)) continue;   // already ranked
                if (heap.Count < take)
                {
                    heap.Enqueue(id, id);
                    if (heap.Count == take) floor = logits[heap.Peek()];
                }
                else if (_rank.Ranks(id, heap.Peek()))
                {
                    heap.DequeueEnqueue(id, id);
                    floor = logits[heap.Peek()];
                }
            }
            for (int i = target - 1; i >= _ranked; i--) _order[i] = heap.Dequeue();
        }
        _ranked = target;
        return true;
    }

    /// <summary>
    /// The ranking of token ids: a higher logit first, the lower id first on equal logits (a total order, so the result
    /// does not depend on how the ids were visited).
    /// </summary>
    private sealed class RankComparer(float[] logits) : IComparer<int>
    {
        /// <summary>Whether <paramref name="a"/> ranks before <paramref name="b"/>.</summary>
        public bool Ranks(int a, int b) => logits[a] > logits[b] || (logits[a] == logits[b] && a < b);

        /// <summary>Rank order, for sorting.</summary>
        public int Compare(int a, int b) => a == b ? 0 : Ranks(a, b) ? -1 : 1;

        /// <summary>Reverse rank order: the heap's minimum is the worst-ranked token.</summary>
        public IComparer<int> Worse => Comparer<int>.Create((a, b) => -Compare(a, b));
    }
}
