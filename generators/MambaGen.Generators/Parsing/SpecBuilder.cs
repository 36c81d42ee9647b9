using System.Globalization;
using System.Linq;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Parsing
{
    /// <summary>Resolves a <see cref="Declaration"/> into a <see cref="ModelSpec"/>, or null when it is invalid.</summary>
    internal static class SpecBuilder
    {
        public static ModelSpec? Build(Declaration declaration)
        {
            if (!declaration.IsPartial || !declaration.HasSsmAttribute) return null;
            int Int(EquatableArray<NamedValue> args, string name, int fallback) =>
                args.FirstOrDefault(a => a.Name == name) is { } v ? int.Parse(v.Value, CultureInfo.InvariantCulture) : fallback;
            bool Bool(EquatableArray<NamedValue> args, string name, bool fallback) =>
                args.FirstOrDefault(a => a.Name == name) is { } v ? bool.Parse(v.Value) : fallback;
            double Double(EquatableArray<NamedValue> args, string name, double fallback) =>
                args.FirstOrDefault(a => a.Name == name) is { } v ? double.Parse(v.Value, CultureInfo.InvariantCulture) : fallback;

            var m = declaration.ModelArguments;
            var s = declaration.SsmArguments;
            int dModel = Int(m, "DModel", 0);
            int expand = Int(s, "Expand", 2);
            int dtRank = Int(s, "DtRank", 0);
            return new ModelSpec(
                declaration.Type,
                dModel,
                Int(m, "Layers", 0),
                Int(m, "Vocab", 0),
                Int(m, "PadVocabMultiple", 1),
                Bool(m, "TieEmbeddings", true),
                Double(m, "NormEpsilon", 1e-5),
                Bool(m, "ResidualInFp32", true),
                Int(s, "DState", 16),
                expand,
                expand * dModel,
                dtRank == 0 ? (dModel + 15) / 16 : dtRank,
                Int(s, "ConvKernel", 4),
                Bool(s, "SelectiveDelta", true),
                Bool(s, "SelectiveB", true),
                Bool(s, "SelectiveC", true),
                (AInitKind)Int(s, "AInit", 0),
                Bool(s, "ConvBias", true),
                Bool(s, "ProjBias", false),
                null, null, null, null);
        }
    }
}
