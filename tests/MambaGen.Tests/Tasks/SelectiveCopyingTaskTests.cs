using MambaGen.Numerics;
using MambaGen.Tasks;

namespace MambaGen.Tests.Tasks;

[Collection(AllocationMeasurements.Name)]
public class SelectiveCopyingTaskTests
{
    private static (int[] Tokens, int[] Targets) Make(SelectiveCopyingTask task, int batch, ulong seed)
    {
        var tokens = new int[batch * task.SequenceLength];
        var targets = new int[tokens.Length];
        task.Fill(new Xoshiro256(seed), tokens, targets, batch);
        return (tokens, targets);
    }

    [Fact]
    public void SequencesHoldTheDataAmongNoiseThenMarkersWhoseTargetsAreTheDataInOrder()
    {
        var task = new SelectiveCopyingTask(sequenceLength: 64, count: 8, dataVocab: 10);
        Assert.Equal(12, task.VocabSize);
        Assert.Equal(11, task.MarkerToken);
        var (tokens, targets) = Make(task, batch: 50, seed: 1);
        for (int b = 0; b < 50; b++)
        {
            var sequence = tokens.AsSpan(b * 64, 64);
            var answers = targets.AsSpan(b * 64, 64);
            var context = sequence[..56].ToArray();
            var data = context.Where(t => t != SelectiveCopyingTask.NoiseToken).ToArray();
            Assert.Equal(8, data.Length);
            Assert.All(data, t => Assert.InRange(t, 1, 10));
            Assert.All(sequence[56..].ToArray(), t => Assert.Equal(11, t));
            Assert.All(answers[..56].ToArray(), t => Assert.Equal(-1, t));
            Assert.Equal(data, answers[56..].ToArray());
        }
    }

    [Fact]
    public void IsDeterministicPerSeed()
    {
        var task = new SelectiveCopyingTask(128, 16, 14);
        Assert.Equal(Make(task, 4, 7).Tokens, Make(task, 4, 7).Tokens);
        Assert.Equal(Make(task, 4, 7).Targets, Make(task, 4, 7).Targets);
        Assert.NotEqual(Make(task, 4, 7).Tokens, Make(task, 4, 8).Tokens);
    }

    [Fact]
    public void EveryPlacementOfTheDataIsEquallyLikely()
    {
        // Context of 4 positions holding 2 data tokens: C(4,2) = 6 placements, each expected 1/6 of the time.
        // With 60,000 samples the count per placement has standard deviation √(60000·(1/6)(5/6)) ≈ 91; ±500 is
        // more than 5σ, so a fair sampler passes and a biased one (e.g. favouring early positions) fails.
        var task = new SelectiveCopyingTask(sequenceLength: 6, count: 2, dataVocab: 3);
        var (tokens, _) = Make(task, batch: 60_000, seed: 5);
        var counts = new Dictionary<int, int>();
        for (int b = 0; b < 60_000; b++)
        {
            int mask = 0;
            for (int i = 0; i < 4; i++) if (tokens[b * 6 + i] != 0) mask |= 1 << i;
            counts[mask] = counts.GetValueOrDefault(mask) + 1;
        }
        Assert.Equal(6, counts.Count);
        Assert.All(counts.Values, c => Assert.InRange(c, 10_000 - 500, 10_000 + 500));
        // Data tokens are uniform over 1..3 as well (120,000 draws, ±1,500 ≈ 9σ).
        var data = tokens.Where((t, i) => i % 6 < 4 && t != 0).GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal([1, 2, 3], data.Keys.Order());
        Assert.All(data.Values, c => Assert.InRange(c, 40_000 - 1_500, 40_000 + 1_500));
    }

    [Fact]
    public void FillingAllocatesNothing()
    {
        var task = new SelectiveCopyingTask(256, 16, 14);
        var tokens = new int[8 * 256];
        var targets = new int[tokens.Length];
        var random = new Xoshiro256(1);
        task.Fill(random, tokens, targets, 8);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) task.Fill(random, tokens, targets, 8);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData(1, 1, 4, "sequenceLength", "2..16777216")]
    [InlineData(10, 6, 4, "count", "1..5")]
    [InlineData(10, 0, 4, "count", "1..5")]
    [InlineData(10, 2, 1, "dataVocab", "2..65536")]
    public void RejectsBadParametersNamingParameterValueAndRange(int length, int count, int dataVocab, string name, string range)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new SelectiveCopyingTask(length, count, dataVocab));
        Assert.Equal(name, error.ParamName);
        Assert.Contains(range, error.Message);
        Assert.Contains($"was {error.ActualValue}", error.Message);
    }

    [Fact]
    public void RejectsBuffersOfTheWrongSize()
    {
        var task = new SelectiveCopyingTask(16, 2, 4);
        var random = new Xoshiro256(1);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => task.Fill(random, new int[31], new int[32], 2)).ParamName);
        Assert.Equal("targets", Assert.Throws<ArgumentException>(() => task.Fill(random, new int[32], new int[16], 2)).ParamName);
        Assert.Equal("batch", Assert.Throws<ArgumentOutOfRangeException>(() => task.Fill(random, [], [], 0)).ParamName);
    }
}
