namespace MambaGen;

/// <summary>
/// Declares a Mamba language model on a <c>partial class</c>. The source generator fills the class with a
/// forward pass, initialisation and checkpoint IO specialised to these constants.
/// Pair it with <see cref="SelectiveSsmAttribute"/>, or name a Hugging Face <c>config.json</c> in
/// <see cref="ConfigFile"/> (passed to the compiler as an <c>AdditionalFiles</c> item).
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class MambaModelAttribute : Attribute
{
    /// <summary>Model width D (HF <c>hidden_size</c>).</summary>
    public int DModel { get; set; }

    /// <summary>Number of residual Mamba blocks (HF <c>num_hidden_layers</c>).</summary>
    public int Layers { get; set; }

    /// <summary>Vocabulary size before padding (HF configs are already padded).</summary>
    public int Vocab { get; set; }

    /// <summary>The vocabulary is padded up to a multiple of this (mamba_ssm uses 8).</summary>
    public int PadVocabMultiple { get; set; } = 1;

    /// <summary>Whether the output head reuses the embedding matrix.</summary>
    public bool TieEmbeddings { get; set; } = true;

    /// <summary>RMSNorm epsilon.</summary>
    public double NormEpsilon { get; set; } = 1e-5;

    /// <summary>Keep the residual stream in fp32 (always true on the CPU, recorded for the config).</summary>
    public bool ResidualInFp32 { get; set; } = true;

    /// <summary>Path of a Hugging Face <c>config.json</c> among the compilation's AdditionalFiles.</summary>
    public string? ConfigFile { get; set; }
}
