using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

[Collection(AllocationMeasurements.Name)]
public class WorkerPoolTests
{
    [Fact]
    public void EveryIndexRunsExactlyOnce()
    {
        var counts = new int[1000];
        WorkerPool.For(counts.Length, i => Interlocked.Increment(ref counts[i]));
        Assert.All(counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void NestedLoopsRunInline()
    {
        var counts = new int[8 * 8];
        WorkerPool.For(8, outer => WorkerPool.For(8, inner => Interlocked.Increment(ref counts[outer * 8 + inner])));
        Assert.All(counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void ConcurrentCallersBothComplete()
    {
        var counts = new int[2, 500];
        Parallel.For(0, 2, caller => WorkerPool.For(500, i => Interlocked.Increment(ref counts[caller, i])));
        foreach (var c in counts) Assert.Equal(1, c);
    }

    [Fact]
    public void AnExceptionInTheBodyReachesTheCaller()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            WorkerPool.For(100, i => { if (i == 37) throw new InvalidOperationException("index 37"); }));
        Assert.Equal("index 37", error.Message);
        // The pool still works afterwards.
        int sum = 0;
        WorkerPool.For(10, i => Interlocked.Add(ref sum, i));
        Assert.Equal(45, sum);
    }

    [Fact]
    public void ALoopDoesNotAllocateOnTheCallingThread()
    {
        var counts = new int[64];
        Action<int> body = i => counts[i]++;
        WorkerPool.For(counts.Length, body); // warm-up: starts the helper threads
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int repeat = 0; repeat < 100; repeat++) WorkerPool.For(counts.Length, body);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>
    /// Runs a loop of sleeping bodies (so every woken thread gets indices, even on a machine with fewer cores than
    /// threads) and returns the distinct threads that ran them.
    /// </summary>
    private static int ThreadsThatRanIndices(WorkerTeam team, int threadLimit)
    {
        var threadOfIndex = new int[64];
        team.For(threadOfIndex.Length, i =>
        {
            threadOfIndex[i] = Environment.CurrentManagedThreadId;
            Thread.Sleep(2);
        }, threadLimit);
        return threadOfIndex.Distinct().Count();
    }

    [Fact]
    public void AThreadLimitHoldsWithMoreThreadsThanCores()
    {
        using var team = new WorkerTeam(16);
        // Unlimited, the sleeping bodies spread over more than a few threads: the count below can see a broken limit.
        Assert.True(ThreadsThatRanIndices(team, threadLimit: 16) > 3, "an unlimited loop ran on 3 threads or fewer");
        Assert.InRange(ThreadsThatRanIndices(team, threadLimit: 2), 1, 2);
        Assert.InRange(ThreadsThatRanIndices(team, threadLimit: 3), 1, 3);
        Assert.Equal(1, ThreadsThatRanIndices(team, threadLimit: 1));
    }

    [Fact]
    public void TheTeamCapHoldsForEveryLoop()
    {
        using var team = new WorkerTeam(8) { MaxThreads = 2 };
        Assert.Equal(2, team.UsableThreads);
        Assert.InRange(ThreadsThatRanIndices(team, threadLimit: 8), 1, 2);
        Assert.Equal(2, team.MostThreadsInOneLoop);
    }

    [Fact]
    public void LimitsBelowOneAreRejected()
    {
        using var team = new WorkerTeam(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => team.For(4, _ => { }, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => team.MaxThreads = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkerPool.MaxThreads = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkerPool.For(4, _ => { }, 0));
    }

    [Fact]
    public void ADisposedTeamRefusesLoops()
    {
        var team = new WorkerTeam(3);
        team.For(10, _ => { }, 3);
        team.Dispose();
        Assert.Throws<ObjectDisposedException>(() => team.For(10, _ => { }, 3));
    }
}
