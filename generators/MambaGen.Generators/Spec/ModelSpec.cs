using System.Collections.Generic;
using System.Linq;

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
    /// <param name="Namespace">Namespace as C# source spells it (keywords escaped with <c>@</c>), or empty for the global namespace.</param>
    /// <param name="ClassName">Simple name of the declared class as C# source spells it: <c>@event</c> for a class named <c>event</c>.</param>
    /// <param name="Accessibility">C# accessibility keyword(s) of the declared class, e.g. <c>public</c>.</param>
    /// <param name="EnclosingTypes">Declarations of enclosing types, outermost first, e.g. <c>partial class Outer</c>.</param>
    internal sealed record TypeLocation(string Namespace, string ClassName, string Accessibility, EquatableArray<string> EnclosingTypes)
    {
        /// <summary>
        /// File name hint for generated sources: namespace, enclosing types and class joined by dots, without the
        /// <c>@</c> of escaped keywords (not a valid hint-name character, and not part of the name).
        /// </summary>
        public string HintName => string.Join(".", NameParts).Replace("@", "");

        /// <summary>The type's name for messages: enclosing types and the class, dot-separated, without <c>@</c> escapes.</summary>
        public string DisplayName => string.Join(".", TypeNames).Replace("@", "");

        /// <summary>The class's own name without an <c>@</c> escape: the name its members must not share.</summary>
        public string UnescapedClassName => ClassName.TrimStart('@');

        /// <summary>Enclosing types' names (the last word of each declaration), outermost first, then the class.</summary>
        private IEnumerable<string> TypeNames =>
            EnclosingTypes.Select(e => e.Substring(e.LastIndexOf(' ') + 1)).Append(ClassName);

        private IEnumerable<string> NameParts => Namespace.Length == 0 ? TypeNames : TypeNames.Prepend(Namespace);
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
