namespace MambaGen.Samples.SelectiveCopying;

/// <summary>The compared variants, in table order: the paper's Table 7 ablation with the LTI baseline.</summary>
internal static class Variants
{
    public static readonly Variant[] All =
    [
        new("S6", S6.ModelShape, seed => S6.Create(seed)),
        new("LTI", Lti.ModelShape, seed => Lti.Create(seed)),
        new("Delta", DeltaOnly.ModelShape, seed => DeltaOnly.Create(seed)),
        new("BC", BAndC.ModelShape, seed => BAndC.Create(seed)),
    ];
}

/// <summary>Only the step size Δ depends on the input.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveB = false, SelectiveC = false)]
internal partial class DeltaOnly { }

/// <summary>B and C depend on the input, Δ does not.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveDelta = false)]
internal partial class BAndC { }
