namespace MambaGen.Tests;

/// <summary>
/// Test classes that assert "allocates nothing" with <see cref="GC.GetAllocatedBytesForCurrentThread"/> run in this
/// collection, which xunit runs alone after the parallel ones. The per-thread counter is only a clean measurement on
/// a quiet process: with other test classes allocating on every core at once it was seen to grow by up to one
/// allocation block (≈ 8 KB) without any allocation of ours and without a GC.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationMeasurements
{
    public const string Name = "Allocation measurements";
}

/// <summary>Allocation measured on the calling thread, robust to the counter's occasional jump.</summary>
internal static class Allocations
{
    /// <summary>Tries per measurement.</summary>
    public const int Trials = 3;

    /// <summary>
    /// The least of <see cref="Trials"/> runs of <paramref name="trial"/>, each returning the bytes it saw allocated.
    /// On a loaded machine the per-thread counter was seen to jump by up to one allocation block (≈ 8 KB) with no
    /// allocation of ours and no GC, in one window out of several; an allocation of ours on every call shows in every
    /// trial, and a trial that starts a fresh thread shows any per-thread first-use allocation every time too.
    /// </summary>
    public static long LeastOf(Func<long> trial)
    {
        long least = long.MaxValue;
        for (int i = 0; i < Trials && least != 0; i++) least = Math.Min(least, trial());
        return least;
    }

    /// <summary>Bytes the calling thread allocates while <paramref name="action"/> runs.</summary>
    public static long During(Action action)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}
