namespace MambaGen.Samples;

/// <summary>
/// The architecture every variant of both training samples shares; only which SSM parameters depend on the input
/// differs between variants. Change the sizes here (they are compile-time constants of the generated types).
/// </summary>
internal static class Architecture
{
    public const int DModel = 64;
    public const int Layers = 2;
    public const int DState = 16;
    /// <summary>Logits per position: room for every task vocabulary the samples accept (tasks may use fewer).</summary>
    public const int Vocab = 32;
}

/// <summary>All of Δ, B and C selective: Mamba's S6.</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState)]
internal partial class S6 { }

/// <summary>None selective: a linear time-invariant SSM (S4-like, inside Mamba's block).</summary>
[MambaModel(DModel = Architecture.DModel, Layers = Architecture.Layers, Vocab = Architecture.Vocab)]
[SelectiveSsm(DState = Architecture.DState, SelectiveDelta = false, SelectiveB = false, SelectiveC = false)]
internal partial class Lti { }
