// This file is compiled into two assemblies: the runtime (Checkpoints/MambaConfig reads and writes config.json when
// a checkpoint is loaded or saved) and the source generator (Parsing/ConfigReader reads the same file when a type
// is declared with ConfigFile). Keeping the field names and the defaults for absent fields here, once, is what makes
// a model generated from a config and a checkpoint loaded with it agree. It must stay plain C# that netstandard2.0
// compiles: constants only.

namespace MambaGen.Checkpoints;

/// <summary>The field names of the config.json formats MambaGen reads, and the value each absent field stands for.</summary>
internal static class ConfigSchema
{
    /// <summary>
    /// Hugging Face transformers' <c>MambaConfig</c> (<c>"model_type": "mamba"</c>). The defaults are transformers
    /// 5.17's, checked on the GPU machine; note <see cref="DefaultUseBias"/> is false there.
    /// </summary>
    internal static class HuggingFace
    {
        public const string ModelTypeField = "model_type";
        public const string ModelType = "mamba";
        public const string Architectures = "architectures";
        public const string HiddenSize = "hidden_size";
        public const string IntermediateSize = "intermediate_size";
        public const string StateSize = "state_size";
        public const string Layers = "num_hidden_layers";
        public const string VocabSize = "vocab_size";
        public const string Expand = "expand";
        public const string ConvKernel = "conv_kernel";
        public const string TimeStepRank = "time_step_rank";
        public const string UseBias = "use_bias";
        public const string UseConvBias = "use_conv_bias";
        public const string HiddenAct = "hidden_act";
        public const string LayerNormEpsilon = "layer_norm_epsilon";
        public const string ResidualInFp32 = "residual_in_fp32";
        public const string TieWordEmbeddings = "tie_word_embeddings";
        public const string BosTokenId = "bos_token_id";
        public const string EosTokenId = "eos_token_id";
        public const string PadTokenId = "pad_token_id";

        public const int DefaultStateSize = 16;
        public const int DefaultExpand = 2;
        public const int DefaultConvKernel = 4;
        public const bool DefaultUseBias = false;
        public const bool DefaultUseConvBias = true;
        public const double DefaultLayerNormEpsilon = 1e-5;
        public const bool DefaultResidualInFp32 = true;
        public const bool DefaultTieWordEmbeddings = true;

        /// <summary>The only activation a Mamba block here has.</summary>
        public const string Activation = "silu";

        /// <summary><c>time_step_rank</c>'s "derive it" value: ⌈hidden_size / 16⌉.</summary>
        public const string AutoRank = "auto";
    }

    /// <summary>mamba_ssm's <c>MambaConfig</c> (top level) and its <c>ssm_cfg</c> (arguments of the Mamba mixer).</summary>
    internal static class MambaSsm
    {
        public const string DModel = "d_model";
        public const string Layers = "n_layer";
        public const string VocabSize = "vocab_size";
        public const string PadVocabSizeMultiple = "pad_vocab_size_multiple";
        public const string TieEmbeddings = "tie_embeddings";
        public const string ResidualInFp32 = "residual_in_fp32";
        public const string RmsNorm = "rms_norm";
        public const string DIntermediate = "d_intermediate";
        public const string AttentionLayers = "attn_layer_idx";
        public const string SsmConfig = "ssm_cfg";
        public const string Layer = "layer";
        public const string DState = "d_state";
        public const string DConv = "d_conv";
        public const string Expand = "expand";
        public const string ConvBias = "conv_bias";
        public const string Bias = "bias";
        public const string DtRank = "dt_rank";

        public const int DefaultPadVocabSizeMultiple = 8;
        public const bool DefaultTieEmbeddings = true;
        public const bool DefaultResidualInFp32 = true;
        public const int DefaultDState = 16;
        public const int DefaultDConv = 4;
        public const int DefaultExpand = 2;
        public const bool DefaultConvBias = true;
        public const bool DefaultBias = false;

        /// <summary>The only mixer supported (<c>ssm_cfg.layer</c>).</summary>
        public const string Mamba1 = "Mamba1";

        /// <summary>mamba_ssm builds its RMSNorms with this epsilon and has no config field for it.</summary>
        public const double NormEpsilon = 1e-5;
    }

    /// <summary>
    /// MambaGen's own <c>"mambagen"</c> object, which Save writes into the Hugging Face config so variants HF cannot
    /// express survive a round trip; other readers ignore it. Absent flags mean selective; absent <c>a_init</c> means
    /// S4D-Real.
    /// </summary>
    internal static class MambaGenObject
    {
        public const string Name = "mambagen";
        public const string SelectiveDelta = "selective_delta";
        public const string SelectiveB = "selective_b";
        public const string SelectiveC = "selective_c";
        public const string AInit = "a_init";

        public const bool DefaultSelective = true;

        public const string AInitS4DReal = "s4d_real";
        public const string AInitNegativeHalf = "negative_half";
        public const string AInitRandom = "random";
    }
}
