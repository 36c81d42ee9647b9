using MambaGen.Cpu;

namespace MambaGen.Tests.Generation;

/// <summary>
/// Top-k, top-p and min-p against distributions computed here in double from their definitions (Hugging Face's
/// warpers): the set of tokens ever drawn must equal the kept set exactly, and each frequency must lie within
/// 5 standard deviations (binomial) of its expected probability — a false failure about once in 3 million per token.
/// </summary>
public class SamplingDistributionTests
{
    private const int Draws = 60_000;

    private static readonly float[] Logits = [1.2f, -0.3f, 2.5f, 0.4f, 2.1f, -1.7f, 0.9f, 1.8f, 0f, -0.8f];

    /// <summary>softmax(logits / T), then: keep the k largest; keep the most likely until their mass reaches p; keep those ≥ minP·max.</summary>
    private static double[] Expected(float temperature, int topK, double topP, double minP)
    {
        int n = Logits.Length;
        var p = Softmax(Logits.Select(l => (double)l / temperature).ToArray());
        var byLikelihood = Enumerable.Range(0, n).OrderByDescending(i => p[i]).ToArray();
        var keep = new HashSet<int>(byLikelihood.Take(topK == 0 ? n : topK));
        p = Renormalised(p, keep);
        double mass = 0;
        var nucleus = new HashSet<int>();
        foreach (int i in byLikelihood.Where(keep.Contains))
        {
            if (mass >= topP) break;
            nucleus.Add(i);
            mass += p[i];
        }
        p = Renormalised(p, nucleus);
        double top = p.Max();
        return Renormalised(p, Enumerable.Range(0, n).Where(i => p[i] >= minP * top).ToHashSet());
    }

    private static double[] Softmax(double[] x)
    {
        double max = x.Max();
        var e = x.Select(v => Math.Exp(v - max)).ToArray();
        return e.Select(v => v / e.Sum()).ToArray();
    }

    private static double[] Renormalised(double[] p, HashSet<int> keep)
    {
        double total = keep.Sum(i => p[i]);
        return p.Select((v, i) => keep.Contains(i) ? v / total : 0).ToArray();
    }

    private static void AssertDrawsFollow(double[] expected, TokenSampler sampler)
    {
        var counts = new int[Logits.Length];
        for (int i = 0; i < Draws; i++) counts[sampler.Next(Logits)]++;
        for (int i = 0; i < Logits.Length; i++)
        {
            Assert.True((counts[i] > 0) == (expected[i] > 0), $"token {i}: drawn {counts[i]} times, expected probability {expected[i]}");
            double sigma = Math.Sqrt(expected[i] * (1 - expected[i]) / Draws);
            double frequency = counts[i] / (double)Draws;
            Assert.True(Math.Abs(frequency - expected[i]) <= 5 * sigma + 1e-12, $"token {i}: frequency {frequency:F4}, expected {expected[i]:F4} ± 5σ = {5 * sigma:F4}");
        }
    }

    [Theory]
    [InlineData(1.0f, 0, 1.0, 0.0)]
    [InlineData(0.7f, 4, 1.0, 0.0)]
    [InlineData(1.0f, 0, 0.75, 0.0)]
    [InlineData(1.3f, 0, 1.0, 0.3)]
    [InlineData(1.5f, 6, 0.9, 0.1)]
    [InlineData(2.0f, 5, 0.6, 0.5)]
    public void FilteredDistributionMatchesTheDefinition(float temperature, int topK, double topP, double minP)
    {
        var expected = Expected(temperature, topK, topP, minP);
        AssertDrawsFollow(expected, new TokenSampler(temperature, topK, (float)topP, seed: 17, minP: (float)minP));
    }

    [Fact]
    public void TheTestDistributionsAreNotTrivial()
    {
        // Guards the theory above against cases where a filter keeps everything or a single token.
        Assert.Equal(10, Expected(1f, 0, 1, 0).Count(p => p > 0));
        Assert.Equal(4, Expected(0.7f, 4, 1, 0).Count(p => p > 0));
        Assert.InRange(Expected(1f, 0, 0.75, 0).Count(p => p > 0), 2, 5);
        Assert.InRange(Expected(1.3f, 0, 1, 0.3).Count(p => p > 0), 2, 7);
        Assert.InRange(Expected(2f, 5, 0.6, 0.5).Count(p => p > 0), 2, 4);
    }
}
