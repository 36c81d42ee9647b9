namespace MambaGen;

/// <summary>All of a model's parameters in one flat fp32 vector laid out by <see cref="ParameterLayout"/>.</summary>
public sealed class MambaParameters
{
    public ParameterLayout Layout { get; }
    public float[] Values { get; }

    public MambaParameters(ParameterLayout layout) : this(layout, new float[layout.TotalLength]) { }

    public MambaParameters(ParameterLayout layout, float[] values)
    {
        if (values.Length != layout.TotalLength)
            throw new ArgumentException($"Expected {layout.TotalLength} parameter values, got {values.Length}.", nameof(values));
        Layout = layout;
        Values = values;
    }

    public MambaShape Shape => Layout.Shape;

    public Span<float> this[string key] => Slice(Layout[key]);

    public Span<float> Slice(ParameterTensor tensor) => Values.AsSpan(tensor.Offset, tensor.Length);

    public long Count => Values.Length;
}
