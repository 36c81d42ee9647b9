namespace MambaGen.Generators.Spec
{
    /// <summary>Mirror of the runtime's <c>MambaGen.AInit</c> (the generator cannot reference the runtime).</summary>
    internal enum AInitKind
    {
        S4DReal = 0,
        NegativeHalf = 1,
        Random = 2,
    }

    /// <summary>Where the declared type sits: namespace, accessibility and enclosing (non-generic) types.</summary>
    /// <param name="Namespace">Namespace, or empty for the global namespace.</param>
    /// <param name="ClassName">Simple name of the declared class.</param>
    /// <param name="Accessibility">C# accessibility keyword(s) of the declared class, e.g. <c>public</c>.</param>
    /// <param name="EnclosingTypes">Declarations of enclosing types, outermost first, e.g. <c>partial class Outer</c>.</param>
    internal sealed record TypeLocation(string Namespace, string ClassName, string Accessibility, EquatableArray<string> EnclosingTypes)
    {
        /// <summary>File name hint for generated sources: namespace and enclosing types joined by dots.</summary>
        public string HintName
        {
            get
            {
                var prefix = Namespace.Length == 0 ? "" : Namespace + ".";
                foreach (var enclosing in EnclosingTypes)
                    prefix += enclosing.Substring(enclosing.LastIndexOf(' ') + 1) + ".";
                return prefix + ClassName;
            }
        }
    }

    /// <summary>
    /// Everything the emitters need to know about one declared model, resolved and validated: literal attribute
    /// values merged with the config file, defaults applied, "auto" values computed. Value-equatable, holds no
    /// symbols or syntax, so the incremental pipeline can cache on it.
    /// </summary>
    internal sealed record ModelSpec(
        TypeLocation Type,
        int DModel,
        int Layers,
        int VocabUnpadded,
        int PadVocabMultiple,
        bool TieEmbeddings,
        double NormEpsilon,
        bool ResidualInFp32,
        int DState,
        int Expand,
        int DInner,
        int DtRank,
        int ConvKernel,
        bool SelectiveDelta,
        bool SelectiveB,
        bool SelectiveC,
        AInitKind AInit,
        bool ConvBias,
        bool ProjBias,
        string? ConfigFile,
        int? BosTokenId,
        int? EosTokenId,
        int? PadTokenId)
    {
        /// <summary>Vocabulary rounded up to <see cref="PadVocabMultiple"/>: the embedding and logit width.</summary>
        public int Vocab => (VocabUnpadded + PadVocabMultiple - 1) / PadVocabMultiple * PadVocabMultiple;

        /// <summary>Rows of x_proj: the selective parts of (dt_low, B, C).</summary>
        public int XProjRows => (SelectiveDelta ? DtRank : 0) + (SelectiveB ? DState : 0) + (SelectiveC ? DState : 0);
    }
}
