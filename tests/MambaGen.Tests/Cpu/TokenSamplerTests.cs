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
