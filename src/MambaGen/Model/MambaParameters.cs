using MambaGen.Cpu;

namespace MambaGen;

/// <summary>
/// All of a model's parameters, laid out by <see cref="ParameterLayout"/>: fp32 values in the layout's
/// <see cref="ParameterLayout.Segments"/> (one array for any model under 2³¹ parameters), reached a tensor at a time
/// through <see cref="Slice"/> or the indexer. A model loaded 16-bit only
/// (<see cref="Checkpoints.CheckpointLoadOptions.KeepSixteenBitWeights"/>) holds its weights in
/// <see cref="SixteenBitWeights"/> as the checkpoint stored them, plus fp32 copies of the tensors that are not
/// <see cref="ParameterTensor.ProductOnly"/>; it runs inference only.
/// </summary>
public sealed class MambaParameters
{
    private readonly SegmentedArray<float> _values;

    /// <summary>Where each named tensor lies in the flat vector.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>Zero-filled parameters for <paramref name="layout"/>.</summary>
    public MambaParameters(ParameterLayout layout) : this(layout, SegmentedArray<float>.ForSegments(layout), null) { }

    /// <summary>Wraps <paramref name="values"/> (not copied), which must have the layout's total length (a one-segment layout).</summary>
    public MambaParameters(ParameterLayout layout, float[] values)
        : this(layout, new SegmentedArray<float>([0], [values]), null)
    {
        if (values.Length != layout.TotalLength)
            throw new ArgumentException($"Expected {layout.TotalLength} parameter values, got {values.Length}.", nameof(values));
    }

    private MambaParameters(ParameterLayout layout, SegmentedArray<float> values, HalfWeights? sixteenBit)
    {
        Layout = layout;
        _values = values;
        SixteenBitWeights = sixteenBit;
    }

    /// <summary>
    /// 16-bit-only parameters: every weight in <paramref name="weights"/> (the layout's segments), and zero-filled fp32
    /// arrays for the tensors that are not <see cref="ParameterTensor.ProductOnly"/>, which the caller fills.
    /// </summary>
    internal static MambaParameters SixteenBitOnly(ParameterLayout layout, HalfWeights weights)
    {
        var kept = layout.Tensors.Where(t => !t.ProductOnly).ToArray();
        return new MambaParameters(layout,
            new SegmentedArray<float>(kept.Select(t => t.Offset).ToArray(), kept.Select(t => new float[t.Length]).ToArray()), weights);
    }

    /// <summary>The architecture these parameters belong to.</summary>
    public MambaShape Shape => Layout.Shape;

    /// <summary>
    /// The weights as a 16-bit-only load kept them (every tensor, in the layout's order), or null for fp32 parameters.
    /// The products (CPU and GPU) read these; the fp32 values of <see cref="ParameterTensor.ProductOnly"/> tensors do not exist.
    /// </summary>
    public HalfWeights? SixteenBitWeights { get; }

    /// <summary>The tensor with checkpoint key <paramref name="key"/>.</summary>
    public Span<float> this[string key] => Slice(Layout[key]);

    /// <summary>The fp32 elements of <paramref name="tensor"/>.</summary>
    public Span<float> Slice(ParameterTensor tensor) => Span(tensor.Offset, tensor.Length);

    /// <summary>The fp32 elements [<paramref name="offset"/>, + <paramref name="length"/>) of the flat vector, which lie in one tensor's segment.</summary>
    public Span<float> Span(long offset, int length)
    {
        if (_values.TryGetSpan(offset, length, out var span)) return span;
        throw new ArgumentOutOfRangeException(nameof(offset), offset, SixteenBitWeights is null
            ? $"Elements [{offset}, {offset} + {length}) are not inside one segment of the {Layout.TotalLength} parameters."
            : $"Elements [{offset}, {offset} + {length}) have no fp32 copy: this model was loaded 16-bit only, which keeps the projection weights in {SixteenBitWeights.Format} alone.");
    }

    /// <summary>The fp32 elements of <paramref name="tensor"/> as memory, for writers; fp32 parameters only.</summary>
    internal ReadOnlyMemory<float> TensorMemory(ParameterTensor tensor)
    {
        if (SixteenBitWeights is not null) throw SixteenBitOnlyError("saving");
        return _values.TryGetMemory(tensor.Offset, tensor.Length, out var memory) ? memory
            : throw new ArgumentException($"Tensor '{tensor.Key}' is not inside one segment.", nameof(tensor));
    }

    /// <summary>
    /// The fp32 arrays of the layout's <see cref="ParameterLayout.Segments"/>, in order: the whole vector, for operations
    /// that go over all parameters. Not available for 16-bit-only parameters.
    /// </summary>
    public IReadOnlyList<float[]> Segments => SixteenBitWeights is null ? _values.Blocks : throw SixteenBitOnlyError("whole-vector access");

    /// <summary>
    /// Every parameter in one array, for models whose layout is one segment (every model under 2³¹ parameters) and whose
    /// parameters are fp32: training, optimizers and whole-vector copies use it. Throws a clear error otherwise.
    /// </summary>
    public float[] Values
    {
        get
        {
            if (SixteenBitWeights is not null) throw SixteenBitOnlyError("training and whole-vector access");
            _ = Layout.SingleSegmentLength;
            return _values.Blocks[0];
        }
    }

    /// <summary>
    /// The length of the gradient and moment vectors training keeps (one array each): the parameter count, for fp32
    /// parameters in one segment. Throws a clear error for 16-bit-only parameters or a layout of several segments.
    /// </summary>
    public int TrainableLength => Values.Length;

    /// <summary>Number of parameters.</summary>
    public long Count => Layout.TotalLength;

    /// <summary>
    /// Grows by one at each <see cref="MarkChanged"/>. A backend that keeps its own copy (a GPU) compares it with the
    /// version it copied and copies again only when the host values have changed since.
    /// </summary>
    public long Version { get; private set; }

    /// <summary>
    /// Says that the values were changed in place (the optimizers and the trainer call it after each update);
    /// call it after writing to them yourself, so device copies are refreshed before their next use.
    /// </summary>
    public void MarkChanged() => Version++;

    /// <summary>The error for an operation that needs fp32 values of every tensor.</summary>
    internal InvalidOperationException SixteenBitOnlyError(string operation) => new(
        $"These parameters were loaded 16-bit only ({SixteenBitWeights!.Format}, CheckpointLoadOptions.KeepSixteenBitWeights), so they serve " +
        $"inference alone; {operation} needs fp32 parameters. Load the checkpoint without KeepSixteenBitWeights to train or save it.");
}
