using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

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
}
