using System.Diagnostics;
using System.Runtime.InteropServices;
using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda.Nccl;

/// <summary>
/// One rank's NCCL communicator on one GPU: sums and broadcasts of device buffers across the ranks, queued on a
/// CUDA stream. Waiting (<see cref="Wait"/>) polls both the stream and NCCL's asynchronous error, with a timeout, so
/// a rank whose peer died aborts the communicator and throws instead of hanging in a collective forever.
/// </summary>
public sealed class NcclCommunicator : IDisposable
{
    private readonly CudaContext _context;
    private IntPtr _communicator;
    private bool _aborted;

    /// <summary>
    /// Joins the communicator <paramref name="uniqueId"/> names (made by <see cref="CreateUniqueId"/> on rank 0 and
    /// handed to every rank) as <paramref name="rank"/> of <paramref name="worldSize"/>, on <paramref name="context"/>'s
    /// device. Blocks until every rank has joined. <paramref name="timeout"/> bounds each later <see cref="Wait"/>.
    /// </summary>
    public unsafe NcclCommunicator(CudaContext context, ReadOnlySpan<byte> uniqueId, int worldSize, int rank, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (uniqueId.Length != NcclUniqueId.Size)
            throw new ArgumentException($"An NCCL unique id is {NcclUniqueId.Size} bytes, got {uniqueId.Length}.", nameof(uniqueId));
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"worldSize must be >= 1, was {worldSize}.");
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in 0..{worldSize - 1}, was {rank}.");
        if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), timeout, $"timeout must be positive, was {timeout}.");
        _context = context;
        Rank = rank;
        WorldSize = worldSize;
        Timeout = timeout;
        NcclUniqueId id;
        uniqueId.CopyTo(new Span<byte>(id.Bytes, NcclUniqueId.Size));
        context.MakeCurrent();
        IntPtr communicator;
        Check(Interop.Nccl.ncclCommInitRank(&communicator, worldSize, id, rank), "ncclCommInitRank", $"(rank {rank} of {worldSize})");
        _communicator = communicator;
    }

    /// <summary>This communicator's rank.</summary>
    public int Rank { get; }

    /// <summary>Ranks in the communicator.</summary>
    public int WorldSize { get; }

    /// <summary>How long <see cref="Wait"/> lets queued collectives run before it declares a peer dead.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The NCCL library's version (loads it; throws <see cref="CudaLibraryNotFoundException"/> when it is missing).</summary>
    public static unsafe Version LibraryVersion
    {
        get
        {
            int code;
            Check(Interop.Nccl.ncclGetVersion(&code), "ncclGetVersion");
            // Since NCCL 2.9 the code is major·10000 + minor·100 + patch.
            return new Version(code / 10000, code / 100 % 100, code % 100);
        }
    }

    /// <summary>A fresh communicator id (rank 0 makes it and shares it, e.g. through <see cref="Training.TcpRendezvous"/>).</summary>
    public static unsafe byte[] CreateUniqueId()
    {
        NcclUniqueId id;
        Check(Interop.Nccl.ncclGetUniqueId(&id), "ncclGetUniqueId");
        return new ReadOnlySpan<byte>(id.Bytes, NcclUniqueId.Size).ToArray();
    }

    /// <summary>Queues buffer ← Σ over ranks of buffer (in place) for <paramref name="count"/> floats at <paramref name="buffer"/>.</summary>
    public void AllReduceSum(ulong buffer, long count, CudaStream stream)
    {
        ThrowIfUnusable();
        Check(Interop.Nccl.ncclAllReduce(buffer, buffer, (nuint)count, NcclDataType.Float32, NcclReduction.Sum, _communicator, stream.Handle),
            "ncclAllReduce", $"({count} floats, rank {Rank} of {WorldSize})");
    }

    /// <summary>Queues a copy of <paramref name="root"/>'s <paramref name="count"/> floats at <paramref name="buffer"/> into every rank's.</summary>
    public void Broadcast(ulong buffer, long count, int root, CudaStream stream)
    {
        ThrowIfUnusable();
        Check(Interop.Nccl.ncclBroadcast(buffer, buffer, (nuint)count, NcclDataType.Float32, root, _communicator, stream.Handle),
            "ncclBroadcast", $"({count} floats from rank {root}, rank {Rank} of {WorldSize})");
    }

    /// <summary>Collectives queued until the scope is disposed are launched together (ncclGroupStart / ncclGroupEnd).</summary>
    public GroupScope Group()
    {
        ThrowIfUnusable();
        Check(Interop.Nccl.ncclGroupStart(), "ncclGroupStart");
        return new GroupScope();
    }

    /// <summary>Ends a group of collectives: they are launched when it is disposed.</summary>
    public readonly struct GroupScope : IDisposable
    {
        /// <summary>ncclGroupEnd.</summary>
        public void Dispose() => Check(Interop.Nccl.ncclGroupEnd(), "ncclGroupEnd");
    }

    /// <summary>
    /// Waits until everything queued on <paramref name="stream"/> has finished, checking NCCL's asynchronous error as
    /// it waits. A failed peer (an NCCL error) or no completion within <see cref="Timeout"/> aborts the communicator
    /// (its collectives stop) and throws: <see cref="NcclException"/> or <see cref="TimeoutException"/>, naming
    /// <paramref name="what"/>. The communicator is unusable afterwards.
    /// </summary>
    public unsafe void Wait(CudaStream stream, string what)
    {
        ThrowIfUnusable();
        var started = Stopwatch.GetTimestamp();
        var spinner = new SpinWait();
        while (true)
        {
            int status = Driver.cuStreamQuery(stream.Handle);
            if (status == CudaResult.Success) return;
            if (status != CudaResult.NotReady) throw CudaException.FromDriver(status, "cuStreamQuery", $"(waiting for {what})");
            int asyncError;
            Check(Interop.Nccl.ncclCommGetAsyncError(_communicator, &asyncError), "ncclCommGetAsyncError");
            if (asyncError != NcclResult.Success && asyncError != NcclResult.InProgress)
            {
                Abort();
                throw new NcclException("ncclCommGetAsyncError", asyncError,
                    $"Rank {Rank} of {WorldSize} stopped during {what}: NCCL reported an asynchronous error, most likely a peer rank died or lost its connection. The communicator was aborted.");
            }
            if (Stopwatch.GetElapsedTime(started) > Timeout)
            {
                Abort();
                throw new TimeoutException(
                    $"Rank {Rank} of {WorldSize}: {what} did not finish within {Timeout.TotalSeconds:0.#} s, so a peer rank has probably died or hung. " +
                    "The communicator was aborted.");
            }
            spinner.SpinOnce(sleep1Threshold: -1); // yields the core but never sleeps a whole millisecond per step
        }
    }

    /// <summary>Tears the communicator down without waiting for peers (ncclCommAbort); used when a peer has failed.</summary>
    public void Abort()
    {
        if (_communicator == IntPtr.Zero || _aborted) return;
        _aborted = true;
        _context.MakeCurrent();
        Interop.Nccl.ncclCommAbort(_communicator); // its status cannot help: the communicator is gone either way
    }

    /// <summary>Destroys the communicator (after finishing its work), or only forgets it when it was aborted.</summary>
    public void Dispose()
    {
        if (_communicator == IntPtr.Zero) return;
        if (!_aborted)
        {
            _context.MakeCurrent();
            Interop.Nccl.ncclCommDestroy(_communicator);
        }
        _communicator = IntPtr.Zero;
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_communicator == IntPtr.Zero, this);
        if (_aborted) throw new InvalidOperationException($"The NCCL communicator of rank {Rank} was aborted after a failure; start a new run.");
    }

    internal static void Check(int result, string call, string? detail = null)
    {
        if (result != NcclResult.Success) throw new NcclException(call, result, detail);
    }
}

/// <summary>An NCCL call failed: carries the call, the ncclResult_t name and NCCL's description.</summary>
public sealed class NcclException : CudaException
{
    internal NcclException(string call, int result, string? detail)
        : base(call, result, NcclResult.Name(result), Describe(result), detail)
    {
    }

    private static unsafe string Describe(int result)
    {
        byte* text = Interop.Nccl.ncclGetErrorString(result);
        return text != null ? Marshal.PtrToStringUTF8((IntPtr)text)! : "unknown NCCL error";
    }
}
