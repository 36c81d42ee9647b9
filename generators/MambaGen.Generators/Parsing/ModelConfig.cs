using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Parsing
{
    /// <summary>One architecture value as a config file determines it.</summary>
    /// <param name="Key">The field as spelled in the file, e.g. <c>state_size</c> or <c>ssm_cfg.d_state</c>.</param>
    /// <param name="Value">The value: stated, the format's default when absent, or computed from other fields.</param>
    /// <param name="Note">Explains a value the file does not state literally, e.g. <c> (absent: the Hugging Face default)</c>; empty when stated.</param>
    /// <param name="Derived">Computed from other fields ("auto" rank, expand × width), so it is in range whenever they are.</param>
    internal sealed record ConfigValue<T>(string Key, T Value, string Note = "", bool Derived = false);

    /// <summary>
    /// A model config file read into MambaGen's terms, whichever format it came in. Every architecture value is
    /// determined (stated, or the format's own default), because the file alone must describe the checkpoint
    /// next to it. The selectivity flags and A's initialisation are null unless the file has a <c>mambagen</c>
    /// object: Hugging Face and mamba_ssm cannot express them.
    /// </summary>
    internal sealed record ModelConfig(
        string Format,
        ConfigValue<int> DModel,
        ConfigValue<int> Layers,
        ConfigValue<int> Vocab,
        ConfigValue<int> PadVocabMultiple,
        ConfigValue<bool> TieEmbeddings,
        ConfigValue<double> NormEpsilon,
        ConfigValue<bool> ResidualInFp32,
        ConfigValue<int> DState,
        ConfigValue<int> Expand,
        ConfigValue<int> DInner,
        ConfigValue<int> DtRank,
        ConfigValue<int> ConvKernel,
        ConfigValue<bool> ConvBias,
        ConfigValue<bool> ProjBias,
        ConfigValue<bool>? SelectiveDelta,
        ConfigValue<bool>? SelectiveB,
        ConfigValue<bool>? SelectiveC,
        ConfigValue<AInitKind>? AInit,
        int? BosTokenId,
        int? EosTokenId,
        int? PadTokenId);

    /// <summary>What is wrong with a config file; the file's name is added when it becomes a diagnostic.</summary>
    internal sealed record ConfigProblem(DiagnosticDescriptor Descriptor, EquatableArray<string> Arguments);

    /// <summary>A config file read once: its model config, or the problems that kept it from being read.</summary>
    /// <param name="Path">The AdditionalText's path, as the compiler gave it.</param>
    internal sealed record ConfigDocument(string Path, ModelConfig? Config, EquatableArray<ConfigProblem> Problems);
}
