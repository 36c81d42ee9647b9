using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace MambaGen.Cpu;

/// <summary>
/// The one way MambaGen runs work in parallel on the CPU: the indices 0..count−1 of a loop body run on a fixed set of
/// background threads plus the calling thread, without allocating per call (unlike
/// <see cref="Parallel.For(int, int, Action{int})"/>), so a training step can be allocation-free. Indices are handed
/// out one at a time from a shared counter, so bodies should be coarse (a channel block over a whole sequence, a
/// chunk of a matrix product).
/// </summary>
/// <remarks>
/// One loop runs at a time: a call made while another thread's loop is running, or from inside a loop body, runs its
/// indices on the calling thread alone. The body must not block waiting on another index.
/// </remarks>
public static class WorkerPool
{
    /// <summary>The threads of every loop in the process: one per processor, the caller being one of them.</summary>
    internal static WorkerTeam Shared { get; } = new(Math.Max(1, Environment.ProcessorCount));

    /// <summary>Threads that can take part in a loop: the helpers plus the caller (the processor count).</summary>
    public static int Concurrency => Shared.Threads;

    /// <summary>
    /// The most threads any loop uses, the caller included; defaults to <see cref="Concurrency"/>, and values above it
    /// act as it. 1 runs every loop on the calling thread. <see cref="Gemm.MaxDegreeOfParallelism"/> caps matrix
    /// products further.
    /// </summary>
    public static int MaxThreads
    {
        get => Shared.MaxThreads;
        set => Shared.MaxThreads = value;
    }

    /// <summary>Calls <paramref name="body"/> once for each index in [0, <paramref name="count"/>), in parallel.</summary>
    public static void For(int count, Action<int> body) => Shared.For(count, body, Shared.MaxThreads);

    /// <summary>
    /// As <see cref="For(int, Action{int})"/>, on at most <paramref name="threadLimit"/> threads (the caller included)
    /// and never more than <see cref="MaxThreads"/>.
    /// </summary>
    public static void For(int count, Action<int> body, int threadLimit) => Shared.For(count, body, threadLimit);
}

/// <summary>
/// A calling thread and <see cref="Threads"/> − 1 helper threads that run loops together; <see cref="WorkerPool"/>
/// holds the process's one team. Tests build their own, with more threads than this machine has cores, to check
/// that a thread limit holds whatever the core count.
/// </summary>
internal sealed class WorkerTeam : IDisposable
{
    /// <summary>How long a waiting thread polls before it blocks: 100 µs.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 10_000;

    /// <summary>Pause instructions between two polls.</summary>
    private const int SpinIterations = 20;

    [ThreadStatic] private static bool _insideLoop;

    private readonly object _startGate = new();
    private readonly SemaphoreSlim _workAvailable = new(0);
    // Helpers finishing a loop pulse this; waiting on a plain monitor allocates nothing, unlike a lazily built event.
    private readonly object _helpersDone = new();
    // Started with the team, so no later call allocates them (a call that first runs inline, while another thread
    // holds the team, must not leave thread creation to the next call).
    private readonly Thread[] _helpers;
    // The polling conditions as delegates made once: a lambda that reads this team's fields, made per wait, would
    // allocate on every loop.
    private readonly Func<bool> _allHelpersFinished;
    private readonly Func<bool> _tookWork;

    private Action<int>? _body;
    private int _count;
    private int _nextIndex;
    private int _helpersRunning;
    private Exception? _firstError;
    private bool _stopping;
    private int _maxThreads;

    public WorkerTeam(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _maxThreads = threads;
        _allHelpersFinished = () => Volatile.Read(ref _helpersRunning) == 0;
        _tookWork = () => _workAvailable.CurrentCount > 0 && _workAvailable.Wait(0);
        _helpers = new Thread[threads - 1];
        for (int i = 0; i < _helpers.Length; i++)
        {
            _helpers[i] = new Thread(HelperLoop) { IsBackground = true, Name = $"MambaGen worker {i + 1}" };
            _helpers[i].Start();
        }
    }

    /// <summary>The helpers plus the caller.</summary>
    public int Threads => _helpers.Length + 1;

    /// <summary>The most threads a loop of this team uses, the caller included; values above <see cref="Threads"/> act as it.</summary>
    public int MaxThreads
    {
        get => _maxThreads;
        set => _maxThreads = value >= 1
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "MaxThreads must be at least 1 (the calling thread).");
    }

    /// <summary>The threads a loop can use: <see cref="Threads"/> capped by <see cref="MaxThreads"/>.</summary>
    public int UsableThreads => Math.Min(Threads, _maxThreads);

    /// <summary>
    /// Test hook: while set, the thread that calls <see cref="For"/> leaves every index to the helpers, so tests can
    /// make a later call hand the caller indices it never ran before, whatever the machine's scheduling.
    /// </summary>
    internal bool CallerTakesNoIndices { get; set; }

    /// <summary>The most threads one loop has been shared out to so far (the helpers woken plus the caller).</summary>
    public int MostThreadsInOneLoop { get; private set; }

    /// <summary>
    /// Calls <paramref name="body"/> once for each index in [0, <paramref name="count"/>) on at most
    /// <paramref name="threadLimit"/> threads, the caller included, and never more than <see cref="MaxThreads"/>: only
    /// that many helpers are woken.
    /// </summary>
    public void For(int count, Action<int> body, int threadLimit)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentOutOfRangeException.ThrowIfLessThan(threadLimit, 1);
        if (count <= 0) return;
        int helpers = Math.Min(Math.Min(count, threadLimit), UsableThreads) - 1;
        if (helpers == 0 || _insideLoop || !Monitor.TryEnter(_startGate))
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }

        try
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _body = body;
            _count = count;
            _nextIndex = -1;
            _firstError = null;
            _helpersRunning = helpers;
            MostThreadsInOneLoop = Math.Max(MostThreadsInOneLoop, helpers + 1);
            _workAvailable.Release(helpers);

            if (!CallerTakesNoIndices) RunIndices();
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
            Monitor.Exit(_startGate);
        }
    }

    /// <summary>Stops the helper threads once the running loop, if any, is over.</summary>
    public void Dispose()
    {
        lock (_startGate)
        {
            if (_stopping) return;
            _stopping = true;
            _workAvailable.Release(_helpers.Length);
        }

        foreach (var helper in _helpers) helper.Join();
        _workAvailable.Dispose();
    }

    private void RunIndices()
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

    private void WaitForHelpers()
    {
        if (SpinUntil(_allHelpersFinished)) return;
        lock (_helpersDone)
            while (Volatile.Read(ref _helpersRunning) > 0) Monitor.Wait(_helpersDone);
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

    private void HelperLoop()
    {
        // A helper may run any chunk of any matrix product: give it its packing memory before its first loop, so no
        // loop body allocates it later.
        GemmScratch.ReserveForThisThread();
        while (true)
        {
            if (!SpinUntil(_tookWork)) _workAvailable.Wait();
            if (Volatile.Read(ref _stopping)) return;
            RunIndices();
            if (Interlocked.Decrement(ref _helpersRunning) == 0)
                lock (_helpersDone) Monitor.PulseAll(_helpersDone);
        }
    }
}
