namespace MambaGen;

/// <summary>All of a model's parameters in one flat fp32 vector laid out by <see cref="ParameterLayout"/>.</summary>
public sealed class MambaParameters
{
    /// <summary>Where each named tensor lies in <see cref="Values"/>.</summary>
    public ParameterLayout Layout { get; }
    /// <summary>Every parameter, in layout order.</summary>
    public float[] Values { get; }

    /// <summary>Zero-filled parameters for <paramref name="layout"/>.</summary>
    public MambaParameters(ParameterLayout layout) : this(layout, new float[layout.TotalLength]) { }

    /// <summary>Wraps <paramref name="values"/> (not copied), which must have the layout's total length.</summary>
    public MambaParameters(ParameterLayout layout, float[] values)
    {
        if (values.Length != layout.TotalLength)
            throw new ArgumentException($"Expected {layout.TotalLength} parameter values, got {values.Length}.", nameof(values));
        Layout = layout;
        Values = values;
    }

    /// <summary>The architecture these parameters belong to.</summary>
    public MambaShape Shape => Layout.Shape;

    /// <summary>The tensor with checkpoint key <paramref name="key"/>.</summary>
    public Span<float> this[string key] => Slice(Layout[key]);

    /// <summary>The elements of <paramref name="tensor"/>.</summary>
    public Span<float> Slice(ParameterTensor tensor) => Values.AsSpan(tensor.Offset, tensor.Length);

    /// <summary>Number of parameters.</summary>
    public long Count => Values.Length;

    /// <summary>
    /// Grows by one at each <see cref="MarkChanged"/>. A backend that keeps its own copy (a GPU) compares it with the
    /// version it copied and copies again only when the host values have changed since.
    /// </summary>
    public long Version { get; private set; }

    /// <summary>
    /// Says that <see cref="Values"/> were changed in place (the optimizers and the trainer call it after each update);
    /// call it after writing to <see cref="Values"/> yourself, so device copies are refreshed before their next use.
    /// </summary>
    public void MarkChanged() => Version++;
}
