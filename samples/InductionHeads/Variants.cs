using MambaGen.Samples;

namespace MambaGen.Samples.InductionHeads;

/// <summary>The architecture both variants share (compile-time constants of the generated types).</summary>
internal static class Architecture
{
    public const int DModel = 64;
    public const int Layers = 2;
    public const int DState = 16;
    /// <summary>The paper's induction-heads vocabulary; --vocab may use less of it.</summary>
    public const int Vocab = 16;

    /// <summary>Mamba (S6) and, for contrast, the same block with a time-invariant SSM.</summary>
    public static readonly Variant[] Variants =
    [
        new("S6", S6.ModelShape, seed => S6.Create(seed)),
        new("LTI", Lti.ModelShape, seed => Lti.Create(seed)),
    ];
}

/// <summary>All of Δ, B and C selective: Mamba's S6.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState)]
internal partial class S6 { }

/// <summary>None selective: a linear time-invariant SSM.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveDelta = false, SelectiveB = false, SelectiveC = false)]
internal partial class Lti { }
