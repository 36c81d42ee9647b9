using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace MambaGen.Cpu;

/// <summary>
/// Runs the indices 0..count−1 of a loop body on a fixed set of background threads plus the calling thread, without
/// allocating per call (unlike <see cref="Parallel.For(int, int, Action{int})"/>), so a training step can be
/// allocation-free. Indices are handed out one at a time from a shared counter, so bodies should be coarse
/// (a channel block over a whole sequence, a block of rows).
/// </summary>
/// <remarks>
/// One loop runs at a time: a call made while another thread's loop is running, or from inside a loop body, runs its
/// indices on the calling thread alone. The body must not block waiting on another index.
/// </remarks>
public static class WorkerPool
{
    /// <summary>Threads that take part in a loop: the helpers plus the caller.</summary>
    public static int Concurrency { get; } = Math.Max(1, Environment.ProcessorCount);

    private static readonly object StartGate = new();
    private static readonly SemaphoreSlim WorkAvailable = new(0);
    // Helpers finishing a loop pulse this; waiting on a plain monitor allocates nothing, unlike a lazily built event.
    private static readonly object HelpersDone = new();
    // Started with the class, so no later call allocates them (a call that first runs inline, while another thread
    // holds the pool, must not leave thread creation to the next call).
    private static readonly Thread[] Helpers = StartHelpers();

    private static Action<int>? _body;
    private static int _count;
    private static int _nextIndex;
    private static int _helpersRunning;
    private static Exception? _firstError;

    [ThreadStatic] private static bool _insideLoop;

    /// <summary>How long a waiting thread polls before it blocks: 100 µs.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 10_000;

    /// <summary>Pause instructions between two polls.</summary>
    private const int SpinIterations = 20;

    /// <summary>Calls <paramref name="body"/> once for each index in [0, <paramref name="count"/>), in parallel.</summary>
    public static void For(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (count <= 0) return;
        if (count == 1 || Concurrency == 1 || _insideLoop || !Monitor.TryEnter(StartGate))
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }

        try
        {
            _body = body;
            _count = count;
            _nextIndex = -1;
            _firstError = null;
            int helpers = Math.Min(Helpers.Length, count - 1);
            _helpersRunning = helpers;
            WorkAvailable.Release(helpers);

            RunIndices();
            WaitForHelpers();

            _body = null;
            if (_firstError is { } error)
            {
                _firstError = null;
                ExceptionDispatchInfo.Throw(error);
            }
        }
        finally
        {
            Monitor.Exit(StartGate);
        }
    }

    private static void RunIndices()
    {
        var body = _body!;
        int count = _count;
        _insideLoop = true;
        try
        {
            int i;
            while ((i = Interlocked.Increment(ref _nextIndex)) < count) body(i);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _firstError, e, null);
            // Stop handing out indices: the loop has failed.
            Volatile.Write(ref _nextIndex, count);
        }
        finally
        {
            _insideLoop = false;
        }
    }

    private static void WaitForHelpers()
    {
        if (SpinUntil(static () => Volatile.Read(ref _helpersRunning) == 0)) return;
        lock (HelpersDone)
            while (Volatile.Read(ref _helpersRunning) > 0) Monitor.Wait(HelpersDone);
    }

    /// <summary>
    /// Polls <paramref name="condition"/> for up to <see cref="SpinTicks"/> before the caller falls back to blocking.
    /// A training step runs dozens of short loops back to back; a thread that blocked between two of them takes tens
    /// of microseconds to be woken, which at small model sizes was as long as the loops themselves.
    /// </summary>
    private static bool SpinUntil(Func<bool> condition)
    {
        long deadline = Stopwatch.GetTimestamp() + SpinTicks;
        do
        {
            if (condition()) return true;
            Thread.SpinWait(SpinIterations);
        }
        while (Stopwatch.GetTimestamp() < deadline);
        return condition();
    }

    private static Thread[] StartHelpers()
    {
        var helpers = new Thread[Concurrency - 1];
        for (int i = 0; i < helpers.Length; i++)
        {
            helpers[i] = new Thread(HelperLoop) { IsBackground = true, Name = $"MambaGen worker {i + 1}" };
            helpers[i].Start();
        }
        return helpers;
    }

    private static void HelperLoop()
    {
        while (true)
        {
            if (!SpinUntil(static () => WorkAvailable.CurrentCount > 0 && WorkAvailable.Wait(0))) WorkAvailable.Wait();
            RunIndices();
            if (Interlocked.Decrement(ref _helpersRunning) == 0)
                lock (HelpersDone) Monitor.PulseAll(HelpersDone);
        }
    }
}
