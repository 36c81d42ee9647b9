using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

public class TokenSamplerTests
{
    private static int[] Histogram(TokenSampler sampler, float[] logits, int draws)
    {
        var counts = new int[logits.Length];
        for (int i = 0; i < draws; i++) counts[sampler.Next(logits)]++;
        return counts;
    }

    [Fact]
    public void GreedyPicksTheFirstLargest()
    {
        Assert.Equal(2, new TokenSampler().Next([0f, 1f, 3f, 3f, -1f]));
    }

    [Fact]
    public void SamplingFollowsTheTemperedSoftmax()
    {
        float[] logits = [0f, 1f, 2f];
        const float temperature = 2f;
        const int draws = 40_000;
        var counts = Histogram(new TokenSampler(temperature, seed: 1), logits, draws);
        var weights = logits.Select(l => Math.Exp(l / temperature)).ToArray();
        for (int i = 0; i < logits.Length; i++)
        {
            double p = weights[i] / weights.Sum();
            double sigma = Math.Sqrt(p * (1 - p) / draws);
            Assert.True(Math.Abs(counts[i] / (double)draws - p) < 5 * sigma, $"token {i}: {counts[i] / (double)draws} vs {p}");
        }
    }

    [Fact]
    public void TopKAndTopPCutTheTail()
    {
        // Probabilities at temperature 1: ≈ 0.665, 0.245, 0.090.
        float[] logits = [2f, 1f, 0f];
        Assert.Equal(0, Histogram(new TokenSampler(1f, topK: 2, seed: 2), logits, 5000)[2]);
        var nucleus = Histogram(new TokenSampler(1f, topP: 0.8f, seed: 3), logits, 5000);
        Assert.Equal(0, nucleus[2]);
        Assert.True(nucleus[1] > 0);
        Assert.Equal(5000, Histogram(new TokenSampler(1f, topP: 0.5f, seed: 4), logits, 5000)[0]);
    }

    [Fact]
    public void SameSeedSameDraws()
    {
        float[] logits = [0.3f, 0.1f, 0.5f, 0.2f];
        Assert.Equal(Histogram(new TokenSampler(1f, seed: 9), logits, 100), Histogram(new TokenSampler(1f, seed: 9), logits, 100));
    }

    [Fact]
    public void InvalidSettingsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(float.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(float.PositiveInfinity));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(1f, topP: 1.5f));
        Assert.Throws<ArgumentException>(() => new TokenSampler().Next([]));
    }
}

/// <summary>
/// The sampler ranks only as many tokens as its rules read. A straightforward reference — sort the whole vocabulary by
/// descending logit (lower id first on ties), then apply top-k, top-p, min-p and the draw in that order, as the sampler
/// did before it ranked lazily — must pick the same token from the same random number, over random logits of a
/// realistic vocabulary size and every combination of the filters.
/// </summary>
public class TokenSamplerReferenceTests
{
    private static int ReferenceSample(float[] logits, float temperature, int topK, float topP, float minP, double uniform)
    {
        int vocab = logits.Length;
        var order = Enumerable.Range(0, vocab).ToArray();
        Array.Sort(order, (a, b) => logits[a] != logits[b] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b));
        double max = logits[order[0]] / temperature;
        double Weight(int i) => Math.Exp(logits[order[i]] / temperature - max);
        int kept = topK > 0 ? Math.Min(topK, vocab) : vocab;
        if (topP < 1f)
        {
            double total = 0;
            for (int i = 0; i < kept; i++) total += Weight(i);
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += Weight(i) / total;
                if (cumulative >= topP) { kept = i + 1; break; }
            }
        }
        if (minP > 0f)
        {
            int aboveFloor = 1;
            while (aboveFloor < kept && Weight(aboveFloor) >= minP) aboveFloor++;
            kept = aboveFloor;
        }
        double keptTotal = 0;
        for (int i = 0; i < kept; i++) keptTotal += Weight(i);
        double target = uniform * keptTotal;
        for (int i = 0; i < kept; i++)
        {
            target -= Weight(i);
            if (target < 0) return order[i];
        }
        return order[kept - 1];
    }

    public static TheoryData<float, int, float, float> Settings() => new()
    {
        { 1f, 0, 1f, 0f },          // plain temperature: the draw walks the ranking
        { 0.7f, 50, 1f, 0f },
        { 1f, 0, 0.9f, 0f },
        { 1.3f, 0, 0.999f, 0f },    // a nucleus deep into the ranking
        { 1f, 0, 1f, 0.05f },
        { 0.8f, 40, 0.95f, 0.02f },
        { 5f, 0, 1f, 0f },          // flat: the draw reaches far down, the ranking extends many times
        { 1f, 70000, 0.5f, 0f },    // top-k beyond the vocabulary keeps all
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public void SameTokensAsAFullSort(float temperature, int topK, float topP, float minP)
    {
        const int vocab = 50280, draws = 40;
        var random = new Random(11);
        var sampler = new TokenSampler(temperature, topK, topP, seed: 5, minP);
        // The sampler's generator, replayed: the reference takes the same uniform numbers in the same order.
        var uniforms = new MambaGen.Numerics.Xoshiro256(5);
        var logits = new float[vocab];
        for (int draw = 0; draw < draws; draw++)
        {
            // Uniform logits in [−3, 3], one in a thousand 8 higher (standing out as a model's likely tokens do), and exact ties.
            for (int i = 0; i < vocab; i++) logits[i] = (float)(random.NextDouble() * 6 - 3) + (random.Next(1000) == 0 ? 8f : 0f);
            for (int i = 0; i < 50; i++) logits[random.Next(vocab)] = logits[random.Next(vocab)];
            int expected = ReferenceSample(logits, temperature, topK, topP, minP, uniforms.NextDouble());
            Assert.Equal(expected, sampler.Next(logits));
        }
    }
}
