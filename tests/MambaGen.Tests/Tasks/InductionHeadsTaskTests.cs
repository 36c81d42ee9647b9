using System.Diagnostics;
using MambaGen.Numerics;
using MambaGen.Tasks;

namespace MambaGen.Tests.Tasks;

[Collection(AllocationMeasurements.Name)]
public class InductionHeadsTaskTests
{
    private static (int[] Tokens, int[] Targets) Make(InductionHeadsTask task, int batch, ulong seed)
    {
        var tokens = new int[batch * task.SequenceLength];
        var targets = new int[tokens.Length];
        task.Fill(new Xoshiro256(seed), tokens, targets, batch);
        return (tokens, targets);
    }

    [Fact]
    public void TheTriggerAppearsOnceInsideAndAtTheEndAndOnlyTheEndIsScoredWithItsFollower()
    {
        var task = new InductionHeadsTask(sequenceLength: 40, vocabSize: 16);
        Assert.Equal(15, task.TriggerToken);
        var (tokens, targets) = Make(task, batch: 200, seed: 3);
        var triggerPositions = new HashSet<int>();
        for (int b = 0; b < 200; b++)
        {
            var sequence = tokens.AsSpan(b * 40, 40).ToArray();
            var answers = targets.AsSpan(b * 40, 40).ToArray();
            Assert.All(sequence, t => Assert.InRange(t, 0, 15));
            var triggers = Enumerable.Range(0, 40).Where(i => sequence[i] == 15).ToArray();
            Assert.Equal(2, triggers.Length);
            Assert.Equal(39, triggers[1]);
            Assert.InRange(triggers[0], 0, 37);
            triggerPositions.Add(triggers[0]);
            Assert.Equal(sequence[triggers[0] + 1], answers[39]);
            Assert.All(answers[..39], t => Assert.Equal(-1, t));
        }
        // 200 uniform draws over 38 positions leave a given position unused with probability (37/38)^200 ≈ 0.5 %,
        // so nearly all 38 appear; fewer than 31 would mean the placement is far from uniform.
        Assert.True(triggerPositions.Count > 30, $"trigger positions used: {triggerPositions.Count}");
    }

    [Fact]
    public void ShortestSequenceIsTriggerFollowerTrigger()
    {
        var (tokens, targets) = Make(new InductionHeadsTask(3, 3), batch: 20, seed: 1);
        for (int b = 0; b < 20; b++)
        {
            Assert.Equal(2, tokens[b * 3]);
            Assert.InRange(tokens[b * 3 + 1], 0, 1);
            Assert.Equal(2, tokens[b * 3 + 2]);
            Assert.Equal(tokens[b * 3 + 1], targets[b * 3 + 2]);
        }
    }

    [Fact]
    public void IsDeterministicPerSeed()
    {
        var task = new InductionHeadsTask(256, 16);
        Assert.Equal(Make(task, 4, 9).Tokens, Make(task, 4, 9).Tokens);
        Assert.Equal(Make(task, 4, 9).Targets, Make(task, 4, 9).Targets);
        Assert.NotEqual(Make(task, 4, 9).Tokens, Make(task, 4, 10).Tokens);
    }

    [Fact]
    public void LongEvaluationSequencesAreCheapAndAllocationFree()
    {
        // 2^20 positions (the paper's longest test length): linear cost is a few milliseconds; a quadratic
        // generator would take minutes. The 2 s bound is loose for a slow shared CI core.
        var task = new InductionHeadsTask(1 << 20, 16).WithSequenceLength(1 << 20);
        var tokens = new int[1 << 20];
        var targets = new int[1 << 20];
        var random = new Xoshiro256(1);
        task.Fill(random, tokens, targets, 1);
        long started = Stopwatch.GetTimestamp();
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        task.Fill(random, tokens, targets, 1);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        var elapsed = Stopwatch.GetElapsedTime(started);
        Assert.True(elapsed < TimeSpan.FromSeconds(2), $"took {elapsed}");
        Assert.Equal(0, allocated);
        Assert.Equal(2, tokens.Count(t => t == 15));
    }

    [Theory]
    [InlineData(2, 16, "sequenceLength", "3..16777216")]
    [InlineData(256, 2, "vocabSize", "3..65536")]
    public void RejectsBadParametersNamingParameterValueAndRange(int length, int vocab, string name, string range)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new InductionHeadsTask(length, vocab));
        Assert.Equal(name, error.ParamName);
        Assert.Contains(range, error.Message);
        Assert.Contains($"was {error.ActualValue}", error.Message);
    }
}
