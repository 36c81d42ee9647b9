using MambaGen.Numerics;

namespace MambaGen.Tests.Model;

internal static class ModelTestSupport
{
    /// <summary>
    /// Adds 𝒩(0, scale²) noise to every parameter so nothing sits at a special value (zero biases, unit norms, D = 1):
    /// every path of the forward pass then shows in the logits.
    /// </summary>
    public static void Perturb(MambaParameters parameters, int seed, double scale = 0.1)
    {
        var random = new Xoshiro256((ulong)seed + 1000);
        var values = parameters.Values;
        for (int i = 0; i < values.Length; i++) values[i] += (float)(scale * random.NextNormal());
    }

    public static int[] RandomTokens(int count, int vocab, int seed)
    {
        var random = new Xoshiro256((ulong)seed + 77);
        var tokens = new int[count];
        for (int i = 0; i < count; i++) tokens[i] = random.NextInt(vocab);
        return tokens;
    }

    public static double MaxAbsDifference(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        for (int i = 0; i < actual.Length; i++) max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        return max;
    }

    public static double MaxAbsDifference(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        for (int i = 0; i < actual.Length; i++) max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        return max;
    }
}
