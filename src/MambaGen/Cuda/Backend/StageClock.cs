namespace MambaGen.Cuda.Backend;

/// <summary>The parts of a GPU forward, backward and optimizer step whose time <see cref="CudaMambaModel.TakeStageTimes"/> reports.</summary>
public enum GpuStage
{
    /// <summary>cuBLAS matrix products (in_proj, x_proj, dt_proj, out_proj, the head; forward and backward).</summary>
    MatrixProducts,

    /// <summary>The selective scan, forward and backward (softplus, D skip and the SiLU gate fused in).</summary>
    Scan,

    /// <summary>The causal depthwise convolution + SiLU, forward and backward.</summary>
    Convolution,

    /// <summary>The residual add + RMSNorm, forward and backward (with the weight gradient's partial sums).</summary>
    Norms,

    /// <summary>The embedding gather and its scatter-add backward.</summary>
    Embedding,

    /// <summary>Cross-entropy over the vocabulary with its gradient.</summary>
    CrossEntropy,

    /// <summary>Fixed-order sums of per-sequence and per-block partial gradients, and type conversions between products.</summary>
    Reductions,

    /// <summary>AdamW and the refresh of what follows from the weights (A·log2 e, the bf16 copy).</summary>
    Optimizer,
}

/// <summary>
/// Times stages on one stream with CUDA events: <see cref="Mark"/> records an event that opens a stage, which lasts
/// until the next mark or <see cref="End"/>; the GPU time between two events is charged to the stage the first one
/// opened. Off by default, when marks cost nothing.
/// </summary>
internal sealed class StageClock : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly List<CudaEvent> _events = new();
    private readonly List<GpuStage?> _stages = new();
    private readonly double[] _milliseconds = new double[Enum.GetValues<GpuStage>().Length];
    private int _recorded;

    public StageClock(CudaContext context, CudaStream stream)
    {
        _context = context;
        _stream = stream;
    }

    /// <summary>Whether marks record events; switching discards marks not yet ended.</summary>
    public bool Enabled
    {
        get => _enabled;
        set
        {
            _enabled = value;
            _recorded = 0;
        }
    }

    private bool _enabled;

    /// <summary>Opens <paramref name="stage"/> at this point of the stream.</summary>
    public void Mark(GpuStage stage) => Record(stage);

    /// <summary>Closes the open stage, waits for the stream to reach this point and adds the stages' times up.</summary>
    public void End()
    {
        if (!Enabled || _recorded == 0) return;
        Record(null);
        _events[_recorded - 1].Synchronize();
        for (int i = 0; i + 1 < _recorded; i++)
            if (_stages[i] is { } stage)
                _milliseconds[(int)stage] += _events[i + 1].ElapsedMillisecondsSince(_events[i]);
        _recorded = 0;
    }

    /// <summary>The milliseconds per stage since the last call, then zero.</summary>
    public IReadOnlyDictionary<GpuStage, double> Take()
    {
        var times = Enum.GetValues<GpuStage>().ToDictionary(stage => stage, stage => _milliseconds[(int)stage]);
        Array.Clear(_milliseconds);
        return times;
    }

    private void Record(GpuStage? stage)
    {
        if (!Enabled) return;
        if (_recorded == _events.Count)
        {
            _events.Add(new CudaEvent(_context));
            _stages.Add(null);
        }
        _events[_recorded].Record(_stream);
        _stages[_recorded] = stage;
        _recorded++;
    }

    public void Dispose()
    {
        foreach (var e in _events) e.Dispose();
        _events.Clear();
    }
}
