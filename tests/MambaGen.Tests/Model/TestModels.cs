namespace MambaGen.Tests.Model;

// Small declared variants: the generator runs in this test project, so each one is a real generated model.
// Together they cover odd widths, N ≠ 16, ED not a multiple of the vector width, several channel blocks, both biases
// on and off, tied and untied heads, every selectivity ablation, K = 1 and K = 8, and the three AInit choices.

/// <summary>Odd D, N ≠ 16, ED = 26 (padded to 32), explicit R, K = 3, padded vocabulary.</summary>
[MambaModel(DModel = 13, Layers = 2, Vocab = 37, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 5, Expand = 2, DtRank = 3, ConvKernel = 3)]
public partial class OddWidthModel { }

/// <summary>In/out projection biases, no conv bias, untied head, ED = 80 (five channel blocks).</summary>
[MambaModel(DModel = 40, Layers = 2, Vocab = 29, TieEmbeddings = false)]
[SelectiveSsm(DState = 16, ProjBias = true, ConvBias = false)]
public partial class BiasedUntiedModel { }

/// <summary>Only Δ selective (B, C learned per channel); single-tap convolution; A = −1/2.</summary>
[MambaModel(DModel = 12, Layers = 2, Vocab = 23)]
[SelectiveSsm(DState = 6, Expand = 3, ConvKernel = 1, SelectiveB = false, SelectiveC = false, AInit = AInit.NegativeHalf)]
public partial class DeltaOnlyModel { }

/// <summary>Only B and C selective (Δ = softplus(bias)); random A.</summary>
[MambaModel(DModel = 16, Layers = 2, Vocab = 19)]
[SelectiveSsm(DState = 7, ConvKernel = 8, SelectiveDelta = false, AInit = AInit.Random)]
public partial class BcOnlyModel { }

/// <summary>Nothing selective: an LTI layer without x_proj.</summary>
[MambaModel(DModel = 10, Layers = 3, Vocab = 17)]
[SelectiveSsm(DState = 4, SelectiveDelta = false, SelectiveB = false, SelectiveC = false)]
public partial class LtiModel { }

/// <summary>Only B selective, and only C selective: the remaining mixed cases of the scan's specialisation.</summary>
[MambaModel(DModel = 8, Layers = 1, Vocab = 11)]
[SelectiveSsm(DState = 3, SelectiveC = false)]
public partial class DeltaAndBModel { }

[MambaModel(DModel = 8, Layers = 1, Vocab = 11)]
[SelectiveSsm(DState = 3, SelectiveDelta = false, SelectiveB = false)]
public partial class COnlyModel { }

public static partial class Nested
{
    /// <summary>A model nested in another type, internal: checks the generator honours enclosing types and accessibility.</summary>
    [MambaModel(DModel = 8, Layers = 1, Vocab = 9)]
    [SelectiveSsm(DState = 2)]
    internal partial class InnerModel { }
}
