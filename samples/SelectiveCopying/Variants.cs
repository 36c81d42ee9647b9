using MambaGen.Samples;

namespace MambaGen.Samples.SelectiveCopying;

/// <summary>
/// The architecture every variant shares; only which SSM parameters depend on the input differs. Change the
/// sizes here (they are compile-time constants of the generated types).
/// </summary>
internal static class Architecture
{
    public const int DModel = 64;
    public const int Layers = 2;
    public const int DState = 16;
    /// <summary>Room for --data-vocab up to Vocab − 2 (the task adds a noise and a marker token).</summary>
    public const int Vocab = 32;

    /// <summary>The compared variants, in table order: the paper's Table 7 ablation plus the LTI baseline.</summary>
    public static readonly Variant[] Variants =
    [
        new("S6", S6.ModelShape, seed => S6.Create(seed)),
        new("LTI", Lti.ModelShape, seed => Lti.Create(seed)),
        new("Delta", DeltaOnly.ModelShape, seed => DeltaOnly.Create(seed)),
        new("BC", BAndC.ModelShape, seed => BAndC.Create(seed)),
    ];
}

/// <summary>All of Δ, B and C selective: Mamba's S6.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState)]
internal partial class S6 { }

/// <summary>None selective: a linear time-invariant SSM (S4-like, with Mamba's block around it).</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveDelta = false, SelectiveB = false, SelectiveC = false)]
internal partial class Lti { }

/// <summary>Only the step size Δ depends on the input.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveB = false, SelectiveC = false)]
internal partial class DeltaOnly { }

/// <summary>B and C depend on the input, Δ does not.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveDelta = false)]
internal partial class BAndC { }
