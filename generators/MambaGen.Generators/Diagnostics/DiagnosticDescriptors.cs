using System.Collections.Immutable;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Diagnostics
{
    /// <summary>
    /// Every diagnostic MambaGen reports. All are errors: the generator emits nothing for a declaration that has
    /// one, so a milder severity would leave the user with a silently missing type. Each id is documented in
    /// <c>docs/diagnostics.md</c>, and <see cref="DiagnosticDescriptor.HelpLinkUri"/> points at its section.
    /// </summary>
    internal static class DiagnosticDescriptors
    {
        private const string Category = "MambaGen";

        /// <summary>Documentation page; each descriptor links to the anchor of its lower-cased id.</summary>
        public const string HelpLinkBase = "docs/diagnostics.md#";

        public static readonly DiagnosticDescriptor ModelClassNotPartial = Create(
            "MAMBA0001",
            "Model class must be partial",
            "'{0}' must be declared partial: the generator adds the model's members to it");

        public static readonly DiagnosticDescriptor ContainingTypeNotPartial = Create(
            "MAMBA0002",
            "Type containing a model class must be partial",
            "'{0}' contains the model class '{1}' and must be declared partial, so the generated members can be nested in it");

        public static readonly DiagnosticDescriptor GenericModelClass = Create(
            "MAMBA0003",
            "Model class must not be generic",
            "'{0}' has type parameters; a model class fixes every constant at compile time and cannot be generic");

        public static readonly DiagnosticDescriptor NestedInGenericType = Create(
            "MAMBA0004",
            "Model class must not be nested in a generic type",
            "'{0}' is nested in the generic type '{1}'; declare the model class outside generic types");

        public static readonly DiagnosticDescriptor UnsupportedClassKind = Create(
            "MAMBA0005",
            "Model class must be an ordinary class",
            "'{0}' is {1}; a model class must be a non-static, non-abstract class, not a record");

        public static readonly DiagnosticDescriptor SelectiveSsmWithoutMambaModel = Create(
            "MAMBA0006",
            "[SelectiveSsm] needs [MambaModel]",
            "'{0}' has [SelectiveSsm] but no [MambaModel]; add [MambaModel] to declare the language model the block belongs to");

        public static readonly DiagnosticDescriptor MissingSelectiveSsm = Create(
            "MAMBA0007",
            "[MambaModel] without ConfigFile needs [SelectiveSsm]",
            "'{0}' has [MambaModel] without ConfigFile and no [SelectiveSsm]; add [SelectiveSsm] to declare the block, or name a config.json in ConfigFile");

        public static readonly DiagnosticDescriptor RequiredPropertyMissing = Create(
            "MAMBA0008",
            "Required model property missing",
            "'{0}' does not set {1}; without ConfigFile, [MambaModel] must set DModel, Layers and Vocab");

        public static readonly DiagnosticDescriptor ValueOutOfRange = Create(
            "MAMBA0009",
            "Value out of range",
            "{0} = {1} is out of range: expected {2}");

        public static readonly DiagnosticDescriptor ModelTooLarge = Create(
            "MAMBA0010",
            "Model too large",
            "'{0}' would have {1} of {2} elements, more than one float[] can hold ({3})");

        public static readonly DiagnosticDescriptor ConfigFileNotFound = Create(
            "MAMBA0011",
            "ConfigFile not among AdditionalFiles",
            "ConfigFile '{0}' is not among the compilation's AdditionalFiles; add <AdditionalFiles Include=\"{0}\" /> to the project");

        public static readonly DiagnosticDescriptor ConfigFileAmbiguous = Create(
            "MAMBA0012",
            "ConfigFile matches several AdditionalFiles",
            "ConfigFile '{0}' matches several AdditionalFiles ({1}); write a longer path, relative to the project directory");

        public static readonly DiagnosticDescriptor ConfigFileUnreadable = Create(
            "MAMBA0013",
            "ConfigFile cannot be read",
            "Config file '{0}' could not be read");

        public static readonly DiagnosticDescriptor ConfigFileInvalidJson = Create(
            "MAMBA0014",
            "ConfigFile is not valid JSON",
            "Config file '{0}' is not valid JSON: {1} at line {2}, column {3}");

        public static readonly DiagnosticDescriptor ConfigFieldMissing = Create(
            "MAMBA0015",
            "ConfigFile lacks a required field",
            "Config file '{0}' lacks the required field '{1}'");

        public static readonly DiagnosticDescriptor ConfigModelTypeUnsupported = Create(
            "MAMBA0016",
            "ConfigFile describes another kind of model",
            "Config file '{0}' has {1}; MambaGen reads Hugging Face configs with model_type \"mamba\" and mamba_ssm Mamba1 configs");

        public static readonly DiagnosticDescriptor ConfigFieldInvalid = Create(
            "MAMBA0017",
            "ConfigFile field has an invalid value",
            "Config file '{0}': field '{1}' must be {2}, but is {3}");

        public static readonly DiagnosticDescriptor LiteralContradictsConfig = Create(
            "MAMBA0018",
            "Attribute value contradicts ConfigFile",
            "{0} = {1} contradicts config file '{2}', where '{3}' gives {4}{5}");

        public static readonly DiagnosticDescriptor ClassNameCollidesWithGeneratedMember = Create(
            "MAMBA0019",
            "Model class name collides with a generated member",
            "'{0}' cannot be a model class's name: the generated model declares a member named '{0}', and a member cannot be named like its type; rename the class");

        public static ImmutableArray<DiagnosticDescriptor> All { get; } = ImmutableArray.Create(
            ModelClassNotPartial, ContainingTypeNotPartial, GenericModelClass, NestedInGenericType,
            UnsupportedClassKind, SelectiveSsmWithoutMambaModel, MissingSelectiveSsm, RequiredPropertyMissing,
            ValueOutOfRange, ModelTooLarge, ConfigFileNotFound, ConfigFileAmbiguous, ConfigFileUnreadable,
            ConfigFileInvalidJson, ConfigFieldMissing, ConfigModelTypeUnsupported, ConfigFieldInvalid,
            LiteralContradictsConfig, ClassNameCollidesWithGeneratedMember);

        private static DiagnosticDescriptor Create(string id, string title, string messageFormat) =>
            new DiagnosticDescriptor(
                id,
                title,
                messageFormat,
                Category,
                DiagnosticSeverity.Error,
                isEnabledByDefault: true,
                helpLinkUri: HelpLinkBase + id.ToLowerInvariant());
    }
}
