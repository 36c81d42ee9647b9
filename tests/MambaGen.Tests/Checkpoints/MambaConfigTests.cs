using System.Text.Json;
using MambaGen.Checkpoints;

namespace MambaGen.Tests.Checkpoints;

public class MambaConfigTests
{
    /// <summary>The key set transformers' save_pretrained writes for a MambaForCausalLM (plus keys it may add).</summary>
    private const string HuggingFaceSavedConfig = """
        {
          "architectures": ["MambaForCausalLM"],
          "bos_token_id": 0,
          "conv_kernel": 3,
          "dtype": "float32",
          "eos_token_id": 2,
          "expand": 2,
          "hidden_act": "silu",
          "hidden_size": 23,
          "initializer_range": 0.1,
          "intermediate_size": 46,
          "layer_norm_epsilon": 1e-06,
          "model_type": "mamba",
          "num_hidden_layers": 3,
          "pad_token_id": null,
          "rescale_prenorm_residual": false,
          "residual_in_fp32": true,
          "state_size": 5,
          "tie_word_embeddings": false,
          "time_step_floor": 0.0001,
          "time_step_init_scheme": "random",
          "time_step_max": 0.1,
          "time_step_min": 0.001,
          "time_step_rank": 3,
          "time_step_scale": 1.0,
          "torch_dtype": "float32",
          "transformers_version": "5.17.0",
          "use_bias": true,
          "use_cache": true,
          "use_conv_bias": true,
          "use_mambapy": false,
          "use_associative_scan": true,
          "vocab_size": 37
        }
        """;

    [Fact]
    public void ReadsAHuggingFaceSavedConfigIgnoringUnknownKeys()
    {
        var shape = Read(HuggingFaceSavedConfig);

        Assert.Equal(new MambaShape
        {
            DModel = 23, Layers = 3, Vocab = 37, DState = 5, Expand = 2, DInner = 46, DtRank = 3, ConvKernel = 3,
            ProjBias = true, ConvBias = true, TieEmbeddings = false, NormEpsilon = 1e-6f, ResidualInFp32 = true,
            BosTokenId = 0, EosTokenId = 2, PadTokenId = null,
        }, shape);
    }

    [Fact]
    public void AbsentHuggingFaceFieldsTakeHuggingFaceDefaults()
    {
        var shape = Read("""{"model_type": "mamba", "hidden_size": 20, "num_hidden_layers": 2, "vocab_size": 50}""");

        // HF's MambaConfig defaults (transformers 5.17): use_bias false, use_conv_bias true, tie_word_embeddings true, state_size 16,
        // expand 2 (intermediate_size = expand · hidden_size), conv_kernel 4, time_step_rank "auto" = ceil(20/16) = 2.
        Assert.Equal(new MambaShape
        {
            DModel = 20, Layers = 2, Vocab = 50, DState = 16, Expand = 2, DInner = 40, DtRank = 2, ConvKernel = 4,
            ProjBias = false, ConvBias = true, TieEmbeddings = true, NormEpsilon = 1e-5f, ResidualInFp32 = true,
            SelectiveDelta = true, SelectiveB = true, SelectiveC = true, AInit = AInit.S4DReal,
        }, shape);
        Assert.Equal(3, Read("""{"model_type": "mamba", "hidden_size": 33, "num_hidden_layers": 2, "vocab_size": 50, "time_step_rank": "auto"}""").DtRank);
    }

    [Fact]
    public void ReadsMambaSsmConfigsPaddingTheVocabulary()
    {
        // state-spaces/mamba-130m's config.json.
        var shape = Read("""
            {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
             "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8}
            """);
        Assert.Equal(new MambaShape
        {
            DModel = 768, Layers = 24, Vocab = 50280, DState = 16, Expand = 2, DInner = 1536, DtRank = 48, ConvKernel = 4,
            ProjBias = false, ConvBias = true, TieEmbeddings = true, NormEpsilon = 1e-5f, ResidualInFp32 = true,
        }, shape);

        var custom = Read("""
            {"d_model": 10, "n_layer": 2, "vocab_size": 30, "tie_embeddings": false, "residual_in_fp32": false,
             "ssm_cfg": {"layer": "Mamba1", "d_state": 6, "d_conv": 3, "expand": 3, "dt_rank": 4, "conv_bias": false, "bias": true, "dt_min": 0.01}}
            """);
        Assert.Equal(new MambaShape
        {
            DModel = 10, Layers = 2, Vocab = 32, DState = 6, Expand = 3, DInner = 30, DtRank = 4, ConvKernel = 3,
            ProjBias = true, ConvBias = false, TieEmbeddings = false, NormEpsilon = 1e-5f, ResidualInFp32 = false,
        }, custom);
    }

    [Fact]
    public void WrittenConfigsReadBackToTheSameShape()
    {
        using var dir = new ScratchDirectory();
        var ablation = new MambaShape
        {
            DModel = 6, Layers = 2, Vocab = 11, DState = 3, Expand = 2, DInner = 12, DtRank = 2, ConvKernel = 4,
            SelectiveDelta = false, SelectiveB = true, SelectiveC = false, AInit = AInit.Random,
            ConvBias = false, ProjBias = true, TieEmbeddings = false, NormEpsilon = 3e-7f, ResidualInFp32 = false,
            BosTokenId = 1, EosTokenId = 5, PadTokenId = 0,
        };
        var standard = ablation with
        {
            SelectiveDelta = true, SelectiveC = true, AInit = AInit.NegativeHalf, ProjBias = false, ConvBias = true,
            BosTokenId = null, EosTokenId = null, PadTokenId = null, NormEpsilon = 1e-5f,
        };

        foreach (var shape in new[] { ablation, standard })
        {
            string path = dir.File("config.json");
            MambaConfig.WriteHfConfig(path, shape);
            Assert.Equal(shape, MambaConfig.ReadShape(path));
            Assert.Equal(["config.json"], dir.FileNames());
        }
    }

    [Fact]
    public void WrittenConfigsAlwaysCarryTheFieldsWithSurprisingDefaults()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("config.json");
        var shape = new MambaShape
        {
            DModel = 6, Layers = 2, Vocab = 11, DState = 3, Expand = 2, DInner = 12, DtRank = 2, ConvKernel = 4,
            SelectiveB = false,
        };
        MambaConfig.WriteHfConfig(path, shape);

        using var json = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = json.RootElement;
        Assert.Equal("mamba", root.GetProperty("model_type").GetString());
        Assert.False(root.GetProperty("use_bias").GetBoolean());
        Assert.True(root.GetProperty("tie_word_embeddings").GetBoolean());
        Assert.Equal(12, root.GetProperty("intermediate_size").GetInt32());
        Assert.Equal(2, root.GetProperty("time_step_rank").GetInt32());
        Assert.Equal(1e-5f, (float)root.GetProperty("layer_norm_epsilon").GetDouble());
        Assert.False(root.TryGetProperty("eos_token_id", out _));
        // HF cannot run a variant with constant B, so it is not advertised as a MambaForCausalLM.
        Assert.False(root.TryGetProperty("architectures", out _));
        var mambagen = root.GetProperty("mambagen");
        Assert.True(mambagen.GetProperty("selective_delta").GetBoolean());
        Assert.False(mambagen.GetProperty("selective_b").GetBoolean());
        Assert.Equal("s4d_real", mambagen.GetProperty("a_init").GetString());
    }

    [Theory]
    [InlineData("""{"model_type": "mamba2", "hidden_size": 6}""", "model_type is \"mamba2\" but only \"mamba\" (Mamba-1) configs are supported")]
    [InlineData("""{"model_type": "mamba", "num_hidden_layers": 2, "vocab_size": 5}""", "required field hidden_size is missing")]
    [InlineData("""{"model_type": "mamba", "hidden_size": "six", "num_hidden_layers": 2, "vocab_size": 5}""", "hidden_size must be an integer but is \"six\"")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6.5, "num_hidden_layers": 2, "vocab_size": 5}""", "hidden_size must be an integer but is 6.5")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "state_size": 300}""",
        "state_size is 300, but DState must be 1..256, was 300.")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 0, "vocab_size": 5}""", "num_hidden_layers is 0, but Layers must be >= 1")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "use_bias": "yes"}""", "use_bias must be true or false but is \"yes\"")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "time_step_rank": "big"}""",
        "time_step_rank must be an integer or \"auto\" but is \"big\"")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "hidden_act": "gelu"}""", "hidden_act is \"gelu\"")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "mambagen": {"a_init": "s4d_lin"}}""",
        "mambagen.a_init must be \"s4d_real\", \"negative_half\" or \"random\" but is \"s4d_lin\"")]
    [InlineData("""{"model_type": "mamba", "hidden_size": 6, "num_hidden_layers": 2, "vocab_size": 5, "mambagen": true}""", "mambagen must be a JSON object but is true")]
    [InlineData("""{"d_model": 6, "n_layer": 2, "vocab_size": 5, "ssm_cfg": {"layer": "Mamba2"}}""", "ssm_cfg.layer is \"Mamba2\" but only \"Mamba1\" is supported")]
    [InlineData("""{"d_model": 6, "n_layer": 2, "vocab_size": 5, "ssm_cfg": {"d_state": 0}}""", "ssm_cfg.d_state is 0, but DState must be 1..256")]
    [InlineData("""{"d_model": 6, "n_layer": 2, "vocab_size": 5, "d_intermediate": 24}""", "d_intermediate is not 0")]
    [InlineData("""{"d_model": 6, "n_layer": 2, "vocab_size": 5, "attn_layer_idx": [1]}""", "attn_layer_idx is not empty")]
    [InlineData("""{"d_model": 6, "n_layer": 2, "vocab_size": 5, "pad_vocab_size_multiple": 0}""", "pad_vocab_size_multiple is 0")]
    [InlineData("""{"hidden_size": 6}""", "neither a Hugging Face Mamba config")]
    [InlineData("""{"hidden_size": 6,""", "not valid JSON")]
    [InlineData("""[]""", "the config must be a JSON object")]
    public void BadConfigsNameTheFileAndField(string json, string expected)
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("config.json");
        File.WriteAllText(path, json);

        var error = Assert.Throws<CheckpointException>(() => MambaConfig.ReadShape(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void InvalidUtf8InAConfigIsRejected()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("config.json");
        File.WriteAllBytes(path, [.. "{\"model_type\": \"mam"u8, 0xC3, .. "\"}"u8]);

        Assert.Equal($"{path}: not valid UTF-8.", Assert.Throws<CheckpointException>(() => MambaConfig.ReadShape(path)).Message);
    }

    [Fact]
    public void AMissingConfigFileIsAClearError()
    {
        using var dir = new ScratchDirectory();
        var error = Assert.Throws<CheckpointException>(() => MambaConfig.ReadShape(dir.File("config.json")));
        Assert.Contains("config.json: the config file does not exist", error.Message);
    }

    private static MambaShape Read(string json)
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("config.json");
        File.WriteAllText(path, json);
        return MambaConfig.ReadShape(path);
    }
}
