using MambaGen;

/// <summary>A model in the global namespace: the generator must emit it without a namespace block.</summary>
[MambaModel(DModel = 8, Layers = 1, Vocab = 7)]
[SelectiveSsm(DState = 2, ConvKernel = 2)]
public partial class GlobalNamespaceModel { }
