namespace MambaGen;

/// <summary>The selective state space block (the paper's S6) used by every layer of a <see cref="MambaModelAttribute"/> model.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class SelectiveSsmAttribute : Attribute
{
    /// <summary>State size N per channel (1..256).</summary>
    public int DState { get; set; } = 16;

    /// <summary>Expansion E: the inner width is E·D.</summary>
    public int Expand { get; set; } = 2;

    /// <summary>Rank R of the Δ projection; 0 means ceil(D/16).</summary>
    public int DtRank { get; set; }

    /// <summary>Width K of the causal depthwise convolution (1..8).</summary>
    public int ConvKernel { get; set; } = 4;

    /// <summary>Δ depends on the input (otherwise Δ = softplus(bias) per channel).</summary>
    public bool SelectiveDelta { get; set; } = true;

    /// <summary>B depends on the input (otherwise a learned (ED, N) parameter).</summary>
    public bool SelectiveB { get; set; } = true;

    /// <summary>C depends on the input (otherwise a learned (ED, N) parameter).</summary>
    public bool SelectiveC { get; set; } = true;

    /// <summary>Initialisation of A (the paper's Table 8).</summary>
    public AInit AInit { get; set; } = AInit.S4DReal;

    /// <summary>The causal convolution has a bias.</summary>
    public bool ConvBias { get; set; } = true;

    /// <summary>The in and out projections have biases (HF <c>use_bias</c>).</summary>
    public bool ProjBias { get; set; }
}
