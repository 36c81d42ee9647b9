namespace MambaGen;

/// <summary>
/// Every constant that fixes a model's architecture and parameter set. Generated types build one from their
/// baked constants; the runtime uses it to lay out, initialise, load, validate and save parameters.
/// </summary>
public sealed record MambaShape
{
    /// <summary>Model width D (HF <c>hidden_size</c>).</summary>
    public required int DModel { get; init; }
    /// <summary>Number of Mamba blocks (HF <c>num_hidden_layers</c>).</summary>
    public required int Layers { get; init; }
    /// <summary>Vocabulary size after padding: the width of the embedding and of the logits.</summary>
    public required int Vocab { get; init; }
    /// <summary>SSM state size N per channel (HF <c>state_size</c>).</summary>
    public required int DState { get; init; }
    /// <summary>Expansion factor E as declared (HF <c>expand</c>).</summary>
    public required int Expand { get; init; }
    /// <summary>Inner width ED (HF <c>intermediate_size</c>).</summary>
    public required int DInner { get; init; }
    /// <summary>Δ rank R after resolving "auto".</summary>
    public required int DtRank { get; init; }
    /// <summary>Width K of the causal depthwise convolution (HF <c>conv_kernel</c>).</summary>
    public required int ConvKernel { get; init; }
    /// <summary>Whether Δ depends on the input (through x_proj) or is a learned bias only.</summary>
    public bool SelectiveDelta { get; init; } = true;
    /// <summary>Whether B depends on the input or is a learned ED×N parameter.</summary>
    public bool SelectiveB { get; init; } = true;
    /// <summary>Whether C depends on the input or is a learned ED×N parameter.</summary>
    public bool SelectiveC { get; init; } = true;
    /// <summary>How A_log is initialised.</summary>
    public AInit AInit { get; init; } = AInit.S4DReal;
    /// <summary>Whether the convolution has a bias (HF <c>use_conv_bias</c>).</summary>
    public bool ConvBias { get; init; } = true;
    /// <summary>Whether in_proj and out_proj have biases (HF <c>use_bias</c>).</summary>
    public bool ProjBias { get; init; }
    /// <summary>Whether the output head shares the embedding matrix (HF <c>tie_word_embeddings</c>).</summary>
    public bool TieEmbeddings { get; init; } = true;
    /// <summary>ε added inside RMSNorm's square root (HF <c>layer_norm_epsilon</c>).</summary>
    public float NormEpsilon { get; init; } = 1e-5f;
    /// <summary>Whether the residual stream is kept in fp32 (HF <c>residual_in_fp32</c>).</summary>
    public bool ResidualInFp32 { get; init; } = true;
    /// <summary>Special token ids carried through config.json (null when the config has none).</summary>
    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence token id, or null.</summary>
    public int? EosTokenId { get; init; }
    /// <summary>Padding token id, or null.</summary>
    public int? PadTokenId { get; init; }

    /// <summary>Rows of x_proj: the selective parts of (dt_low, B, C), in that order. Zero means there is no x_proj.</summary>
    public int XProjRows => (SelectiveDelta ? DtRank : 0) + (SelectiveB ? DState : 0) + (SelectiveC ? DState : 0);

    /// <summary>True when Hugging Face's <c>MambaForCausalLM</c> can express this variant (every part selective, S4D-Real A).</summary>
    public bool IsHuggingFaceCompatible => SelectiveDelta && SelectiveB && SelectiveC;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first constant out of range.</summary>
    public void Validate()
    {
        Check(DModel >= 1, nameof(DModel), DModel, ">= 1");
        Check(Layers >= 1, nameof(Layers), Layers, ">= 1");
        Check(Vocab >= 1, nameof(Vocab), Vocab, ">= 1");
        Check(DState is >= 1 and <= 256, nameof(DState), DState, "1..256");
        Check(Expand >= 1, nameof(Expand), Expand, ">= 1");
        Check(DInner >= 1, nameof(DInner), DInner, ">= 1");
        Check(DtRank >= 1, nameof(DtRank), DtRank, ">= 1");
        Check(ConvKernel is >= 1 and <= 8, nameof(ConvKernel), ConvKernel, "1..8");
        Check(NormEpsilon > 0, nameof(NormEpsilon), NormEpsilon, "> 0");
    }

    private static void Check(bool ok, string name, object value, string expected)
    {
        if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be {expected}, was {value}.");
    }
}
