namespace MambaGen;

/// <summary>Compares the parts of two <see cref="MambaShape"/>s that decide the parameter layout.</summary>
public static class ShapeCheck
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming the first constant in which <paramref name="actual"/> differs from
    /// <paramref name="expected"/> among those that decide which tensors exist and their sizes. Initialisation
    /// choices, epsilon and special token ids do not count: they leave the parameter vector's meaning unchanged.
    /// </summary>
    public static void RequireSameLayout(MambaShape expected, MambaShape actual, string what)
    {
        void Check<T>(string name, T want, T got)
        {
            if (!EqualityComparer<T>.Default.Equals(want, got))
                throw new ArgumentException($"{what}: {name} is {got}, but the model was generated with {name} = {want}.");
        }
        Check(nameof(MambaShape.DModel), expected.DModel, actual.DModel);
        Check(nameof(MambaShape.Layers), expected.Layers, actual.Layers);
        Check(nameof(MambaShape.Vocab), expected.Vocab, actual.Vocab);
        Check(nameof(MambaShape.DState), expected.DState, actual.DState);
        Check(nameof(MambaShape.DInner), expected.DInner, actual.DInner);
        Check(nameof(MambaShape.DtRank), expected.DtRank, actual.DtRank);
        Check(nameof(MambaShape.ConvKernel), expected.ConvKernel, actual.ConvKernel);
        Check(nameof(MambaShape.SelectiveDelta), expected.SelectiveDelta, actual.SelectiveDelta);
        Check(nameof(MambaShape.SelectiveB), expected.SelectiveB, actual.SelectiveB);
        Check(nameof(MambaShape.SelectiveC), expected.SelectiveC, actual.SelectiveC);
        Check(nameof(MambaShape.ConvBias), expected.ConvBias, actual.ConvBias);
        Check(nameof(MambaShape.ProjBias), expected.ProjBias, actual.ProjBias);
        Check(nameof(MambaShape.TieEmbeddings), expected.TieEmbeddings, actual.TieEmbeddings);
    }
}
