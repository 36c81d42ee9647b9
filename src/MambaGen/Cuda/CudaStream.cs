using MambaGen.Cuda.Interop;

namespace MambaGen.Cuda;

/// <summary>A CUDA stream: work queued on it runs in order, asynchronously to the host and to other streams.</summary>
public sealed class CudaStream : IDisposable
{
    private IntPtr _stream;

    /// <summary>Creates a stream in <paramref name="context"/>; a non-blocking one does not wait for the legacy default stream.</summary>
    public unsafe CudaStream(CudaContext context, bool nonBlocking = true)
    {
        Context = context;
        context.MakeCurrent();
        IntPtr stream;
        CudaException.CheckDriver(Driver.cuStreamCreate(&stream, nonBlocking ? 1u : 0u), "cuStreamCreate");
        _stream = stream;
    }

    /// <summary>The context the stream belongs to.</summary>
    public CudaContext Context { get; }

    /// <summary>The driver's CUstream handle.</summary>
    public IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_stream == IntPtr.Zero, this);
            return _stream;
        }
    }

    /// <summary>Waits until all work queued on the stream has finished; reports asynchronous errors.</summary>
    public void Synchronize()
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuStreamSynchronize(Handle), "cuStreamSynchronize");
    }

    /// <summary>
    /// Starts recording the work queued on this stream into a graph instead of running it (capture mode
    /// thread-local: other threads' unsafe calls are not affected). End with <see cref="EndCapture"/>.
    /// </summary>
    public void BeginCapture()
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuStreamBeginCapture_v2(Handle, StreamCaptureMode.ThreadLocal), "cuStreamBeginCapture_v2");
    }

    /// <summary>Stops recording and returns the captured graph.</summary>
    public unsafe CudaGraph EndCapture()
    {
        Context.MakeCurrent();
        IntPtr graph;
        CudaException.CheckDriver(Driver.cuStreamEndCapture(Handle, &graph), "cuStreamEndCapture");
        return new CudaGraph(Context, graph);
    }

    /// <summary>
    /// Records the work <paramref name="enqueue"/> queues on this stream into a graph and returns it instantiated, ready to
    /// replay. If <paramref name="enqueue"/> or the driver fails, the capture is ended and its partial graph destroyed, so
    /// the stream is usable again and nothing leaks; the exception propagates.
    /// </summary>
    public CudaGraphExec Capture(Action enqueue)
    {
        ArgumentNullException.ThrowIfNull(enqueue);
        BeginCapture();
        try
        {
            enqueue();
        }
        catch
        {
            AbandonCapture();
            throw;
        }
        using var graph = EndCapture();
        return graph.Instantiate();
    }

    /// <summary>Ends a capture that failed part way, discarding whatever it recorded (its own errors are not the ones to report).</summary>
    private unsafe void AbandonCapture()
    {
        Context.MakeCurrent();
        IntPtr graph;
        if (Driver.cuStreamEndCapture(Handle, &graph) == CudaResult.Success && graph != IntPtr.Zero) Driver.cuGraphDestroy(graph);
    }

    /// <summary>Destroys the stream (work already queued still completes).</summary>
    public void Dispose()
    {
        if (_stream == IntPtr.Zero) return;
        var stream = _stream;
        _stream = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuStreamDestroy_v2(stream), "cuStreamDestroy_v2");
    }
}

/// <summary>A CUDA event: a marker in a stream, used to wait for or time the work before it.</summary>
public sealed class CudaEvent : IDisposable
{
    private IntPtr _event;

    /// <summary>Creates an event with timing enabled (flags 0, CU_EVENT_DEFAULT).</summary>
    public unsafe CudaEvent(CudaContext context)
    {
        Context = context;
        context.MakeCurrent();
        IntPtr e;
        CudaException.CheckDriver(Driver.cuEventCreate(&e, 0), "cuEventCreate");
        _event = e;
    }

    /// <summary>The context the event belongs to.</summary>
    public CudaContext Context { get; }

    private IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_event == IntPtr.Zero, this);
            return _event;
        }
    }

    /// <summary>Records the event on <paramref name="stream"/> (the legacy default stream when null).</summary>
    public void Record(CudaStream? stream = null)
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuEventRecord(Handle, stream?.Handle ?? IntPtr.Zero), "cuEventRecord");
    }

    /// <summary>Waits until the work before the event's last record has finished.</summary>
    public void Synchronize()
    {
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuEventSynchronize(Handle), "cuEventSynchronize");
    }

    /// <summary>Milliseconds between <paramref name="start"/> and this event (both recorded and complete; resolution ≈ 0.5 µs).</summary>
    public unsafe float ElapsedMillisecondsSince(CudaEvent start)
    {
        Context.MakeCurrent();
        float milliseconds;
        CudaException.CheckDriver(Driver.cuEventElapsedTime(&milliseconds, start.Handle, Handle), "cuEventElapsedTime");
        return milliseconds;
    }

    /// <summary>Destroys the event.</summary>
    public void Dispose()
    {
        if (_event == IntPtr.Zero) return;
        var e = _event;
        _event = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuEventDestroy_v2(e), "cuEventDestroy_v2");
    }
}

/// <summary>A graph captured from a stream (<see cref="CudaStream.EndCapture"/>); instantiate it to launch it.</summary>
public sealed class CudaGraph : IDisposable
{
    private IntPtr _graph;

    internal CudaGraph(CudaContext context, IntPtr graph)
    {
        Context = context;
        _graph = graph;
    }

    /// <summary>The context the graph was captured in.</summary>
    public CudaContext Context { get; }

    /// <summary>Makes an executable copy of the graph that can be launched any number of times.</summary>
    public unsafe CudaGraphExec Instantiate()
    {
        ObjectDisposedException.ThrowIf(_graph == IntPtr.Zero, this);
        Context.MakeCurrent();
        IntPtr exec;
        CudaException.CheckDriver(Driver.cuGraphInstantiateWithFlags(&exec, _graph, 0), "cuGraphInstantiateWithFlags");
        return new CudaGraphExec(Context, exec);
    }

    /// <summary>Destroys the graph (executable copies stay valid).</summary>
    public void Dispose()
    {
        if (_graph == IntPtr.Zero) return;
        var graph = _graph;
        _graph = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuGraphDestroy(graph), "cuGraphDestroy");
    }
}

/// <summary>An instantiated graph: replays the captured work with one launch.</summary>
public sealed class CudaGraphExec : IDisposable
{
    private IntPtr _exec;

    internal CudaGraphExec(CudaContext context, IntPtr exec)
    {
        Context = context;
        _exec = exec;
    }

    /// <summary>The context the graph runs in.</summary>
    public CudaContext Context { get; }

    /// <summary>Queues one replay of the graph on <paramref name="stream"/>.</summary>
    public void Launch(CudaStream stream)
    {
        ObjectDisposedException.ThrowIf(_exec == IntPtr.Zero, this);
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuGraphLaunch(_exec, stream.Handle), "cuGraphLaunch");
    }

    /// <summary>Destroys the executable graph.</summary>
    public void Dispose()
    {
        if (_exec == IntPtr.Zero) return;
        var exec = _exec;
        _exec = IntPtr.Zero;
        if (Context.IsDisposed) return;
        Context.MakeCurrent();
        CudaException.CheckDriver(Driver.cuGraphExecDestroy(exec), "cuGraphExecDestroy");
    }
}
