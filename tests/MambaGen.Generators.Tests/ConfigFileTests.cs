using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Parsing;
using MambaGen.Generators.Spec;
using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Tests;

/// <summary>
/// How declarations resolve into a <see cref="ModelSpec"/>, with and without config files. Expected specs are
/// written out by hand from the declaration and the JSON in each test, field by field.
/// </summary>
public class ConfigFileTests
{
    private static readonly TypeLocation Tiny = new("Demo", "Tiny", "public", default);

    /// <summary>Compiles the declaration of <c>Demo.Tiny</c> and resolves it against the given AdditionalFiles.</summary>
    private static SpecResult Resolve(string attributes, (string Path, string? Text)[] files, string? projectDirectory = null)
    {
        var compilation = Harness.Compile($$"""
            using MambaGen;
            namespace Demo;
            {{attributes}}
            public partial class Tiny { }
            """);
        var declaration = DeclarationReader.Read(compilation.GetTypeByMetadataName("Demo.Tiny")!, default)!;
        var configFiles = new ConfigFileSet(
            new EquatableArray<string>(files.Select(f => f.Path)),
            projectDirectory,
            new EquatableArray<ConfigDocument>(files.Select(f => ConfigReader.Read(f.Path, f.Text))));
        return SpecBuilder.Build(declaration, configFiles, default);
    }

    private static ModelSpec ResolveValid(string attributes, params (string Path, string? Text)[] files)
    {
        var result = Resolve(attributes, files);
        Assert.Empty(result.Diagnostics);
        return Assert.IsType<ModelSpec>(result.Spec);
    }

    private static ModelSpec FromConfig(string json, string extraAttributes = "") =>
        ResolveValid($"[MambaModel(ConfigFile = \"ckpt/config.json\")] {extraAttributes}", ("/repo/app/ckpt/config.json", json));

    [Fact]
    public void LiteralDeclaration_HonoursEveryProperty()
    {
        var spec = ResolveValid("""
            [MambaModel(DModel = 100, Layers = 3, Vocab = 1000, PadVocabMultiple = 16, TieEmbeddings = false,
                        NormEpsilon = 1e-6, ResidualInFp32 = false)]
            [SelectiveSsm(DState = 12, Expand = 3, DtRank = 5, ConvKernel = 2, SelectiveDelta = false, SelectiveB = false,
                          SelectiveC = true, AInit = AInit.Random, ConvBias = false, ProjBias = true)]
            """);
        var expected = new ModelSpec(Tiny, DModel: 100, Layers: 3, VocabUnpadded: 1000, PadVocabMultiple: 16,
            TieEmbeddings: false, NormEpsilon: 1e-6, ResidualInFp32: false, DState: 12, Expand: 3, DInner: 300,
            DtRank: 5, ConvKernel: 2, SelectiveDelta: false, SelectiveB: false, SelectiveC: true, AInit: AInitKind.Random,
            ConvBias: false, ProjBias: true, ConfigFile: null, BosTokenId: null, EosTokenId: null, PadTokenId: null);
        Assert.Equal(expected, spec);
        Assert.Equal(1008, spec.Vocab); // 1000 rounded up to a multiple of 16
    }

    [Fact]
    public void LiteralDeclaration_Defaults_And130MShape()
    {
        var spec = ResolveValid("[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)] [SelectiveSsm]");
        var expected = new ModelSpec(Tiny, 768, 24, 50277, 8, TieEmbeddings: true, NormEpsilon: 1e-5, ResidualInFp32: true,
            DState: 16, Expand: 2, DInner: 1536, DtRank: 48, ConvKernel: 4, true, true, true, AInitKind.S4DReal,
            ConvBias: true, ProjBias: false, null, null, null, null);
        Assert.Equal(expected, spec);
        Assert.Equal(50280, spec.Vocab);
        Assert.Equal(48 + 16 + 16, spec.XProjRows);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(16, 1)]
    [InlineData(17, 2)]
    [InlineData(100, 7)]
    public void DtRankZero_IsCeilingOfDModelOver16(int dModel, int rank) =>
        Assert.Equal(rank, ResolveValid($"[MambaModel(DModel = {dModel}, Layers = 1, Vocab = 10)] [SelectiveSsm(DtRank = 0)]").DtRank);

    [Fact]
    public void HuggingFaceConfig_EveryFieldRead()
    {
        var spec = FromConfig("""
            {
              "model_type": "mamba", "hidden_size": 48, "intermediate_size": 120, "expand": 2, "state_size": 12,
              "num_hidden_layers": 3, "vocab_size": 101, "conv_kernel": 3, "time_step_rank": 5, "use_bias": true,
              "use_conv_bias": false, "layer_norm_epsilon": 1e-06, "residual_in_fp32": false,
              "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": null,
              "hidden_act": "silu", "time_step_scale": 1.0, "architectures": ["MambaForCausalLM"]
            }
            """);
        // intermediate_size governs the inner width even where it differs from expand · hidden_size (96).
        var expected = new ModelSpec(Tiny, DModel: 48, Layers: 3, VocabUnpadded: 101, PadVocabMultiple: 1,
            TieEmbeddings: false, NormEpsilon: 1e-6, ResidualInFp32: false, DState: 12, Expand: 2, DInner: 120,
            DtRank: 5, ConvKernel: 3, true, true, true, AInitKind.S4DReal, ConvBias: false, ProjBias: true,
            ConfigFile: "ckpt/config.json", BosTokenId: 1, EosTokenId: 2, PadTokenId: null);
        Assert.Equal(expected, spec);
        Assert.Equal(101, spec.Vocab); // HF vocab sizes are used as they are
    }

    [Fact]
    public void HuggingFaceConfig_MissingFieldsTakeTransformersDefaults()
    {
        var spec = FromConfig("""{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100 }""");
        var expected = new ModelSpec(Tiny, 64, 2, 100, 1, TieEmbeddings: true, NormEpsilon: 1e-5, ResidualInFp32: true,
            DState: 16, Expand: 2, DInner: 128, DtRank: 4, ConvKernel: 4, true, true, true, AInitKind.S4DReal,
            ConvBias: true, ProjBias: false, "ckpt/config.json", null, null, null);
        Assert.Equal(expected, spec);
    }

    /// <summary>
    /// transformers 5.17's <c>MambaConfig</c> declares <c>use_bias: bool = False</c>; loading a config without the
    /// field (checked on the GPU machine with <c>MambaConfig.from_dict</c>) gives <c>use_bias == False</c>. So a
    /// missing use_bias means no projection biases. (The project brief assumed true; see docs/diagnostics.md.)
    /// </summary>
    [Fact]
    public void HuggingFaceConfig_UseBiasMissing_MeansNoProjectionBias()
    {
        Assert.False(FromConfig("""{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100 }""").ProjBias);
        Assert.True(FromConfig("""{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, "use_bias": true }""").ProjBias);
    }

    [Theory]
    [InlineData("\"auto\"", 4)]
    [InlineData("7", 7)]
    [InlineData("7.0", 7)]
    public void HuggingFaceConfig_TimeStepRank(string rank, int expected) =>
        Assert.Equal(expected, FromConfig($$"""{ "model_type": "mamba", "hidden_size": 50, "num_hidden_layers": 2, "vocab_size": 100, "time_step_rank": {{rank}} }""").DtRank);

    [Fact]
    public void MambaSsmConfig_130M_PadsVocabAndUsesMambaSsmDefaults()
    {
        // state-spaces/mamba-130m's config.json.
        var spec = FromConfig("""
            {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
             "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8}
            """);
        var expected = new ModelSpec(Tiny, 768, 24, 50277, 8, TieEmbeddings: true, NormEpsilon: 1e-5, ResidualInFp32: true,
            DState: 16, Expand: 2, DInner: 1536, DtRank: 48, ConvKernel: 4, true, true, true, AInitKind.S4DReal,
            ConvBias: true, ProjBias: false, "ckpt/config.json", null, null, null);
        Assert.Equal(expected, spec);
        Assert.Equal(50280, spec.Vocab);
    }

    [Fact]
    public void MambaSsmConfig_SsmCfgFieldsRead()
    {
        var spec = FromConfig("""
            {"d_model": 40, "n_layer": 2, "vocab_size": 30, "tie_embeddings": false, "residual_in_fp32": false,
             "ssm_cfg": {"layer": "Mamba1", "d_state": 4, "d_conv": 2, "expand": 3, "dt_rank": 7, "conv_bias": false, "bias": true, "dt_min": 0.001}}
            """);
        var expected = new ModelSpec(Tiny, 40, 2, 30, 8, TieEmbeddings: false, NormEpsilon: 1e-5, ResidualInFp32: false,
            DState: 4, Expand: 3, DInner: 120, DtRank: 7, ConvKernel: 2, true, true, true, AInitKind.S4DReal,
            ConvBias: false, ProjBias: true, "ckpt/config.json", null, null, null);
        Assert.Equal(expected, spec);
        Assert.Equal(32, spec.Vocab);
    }

    [Fact]
    public void MambaGenObject_SetsSelectivityAndAInit()
    {
        var spec = FromConfig("""
            { "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
              "mambagen": { "selective_delta": false, "selective_b": true, "selective_c": false, "a_init": "negative_half" } }
            """);
        Assert.Equal((false, true, false, AInitKind.NegativeHalf), (spec.SelectiveDelta, spec.SelectiveB, spec.SelectiveC, spec.AInit));
        Assert.Equal(16, spec.XProjRows); // only B is projected from x: N = 16 rows
    }

    [Fact]
    public void WithoutMambaGenObject_SelectivityComesFromSelectiveSsm()
    {
        var spec = FromConfig(
            """{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100 }""",
            "[SelectiveSsm(SelectiveB = false, SelectiveC = false, AInit = AInit.Random)]");
        Assert.Equal((true, false, false, AInitKind.Random), (spec.SelectiveDelta, spec.SelectiveB, spec.SelectiveC, spec.AInit));
    }

    [Fact]
    public void MambaGenObject_ContradictedBySelectiveSsm_IsReported()
    {
        var result = Resolve("[MambaModel(ConfigFile = \"ckpt/config.json\")] [SelectiveSsm(SelectiveB = true)]",
            [("/repo/app/ckpt/config.json", """{ "model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, "mambagen": { "selective_b": false } }""")]);
        Assert.Null(result.Spec);
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticDescriptors.LiteralContradictsConfig, diagnostic.Descriptor);
        Assert.Equal(["SelectiveB", "true", "ckpt/config.json", "mambagen.selective_b", "false", ""], diagnostic.Arguments);
    }

    [Fact]
    public void NestedClass_KeepsEnclosingTypesForTheEmitter()
    {
        var compilation = Harness.Compile("""
            using MambaGen;
            namespace Demo.Models;
            public static partial class Zoo
            {
                internal partial struct Pen
                {
                    [MambaModel(DModel = 64, Layers = 2, Vocab = 100)] [SelectiveSsm]
                    private partial class Tiny { }
                }
            }
            """);
        var declaration = DeclarationReader.Read(compilation.GetTypeByMetadataName("Demo.Models.Zoo+Pen+Tiny")!, default)!;
        var spec = SpecBuilder.Build(declaration, new ConfigFileSet(default, null, default), default).Spec!;
        Assert.Equal(new TypeLocation("Demo.Models", "Tiny", "private", new EquatableArray<string>(["partial class Zoo", "partial struct Pen"])), spec.Type);
        Assert.Equal("Demo.Models.Zoo.Pen.Tiny", spec.Type.HintName);
    }

    [Theory]
    [InlineData("ckpt/config.json", "/repo/app/", "/repo/app/ckpt/config.json")]
    [InlineData("ckpt/config.json", "/repo/lib/", "/repo/lib/ckpt/config.json")]
    [InlineData("./ckpt/../ckpt/config.json", "/repo/app/", "/repo/app/ckpt/config.json")]
    [InlineData("ckpt\\config.json", "C:\\repo\\app\\", "C:\\repo\\app\\ckpt\\config.json")]
    [InlineData("CKPT/Config.json", "C:\\repo\\app\\", "C:\\repo\\app\\ckpt\\config.json")]
    [InlineData("/repo/lib/ckpt/config.json", null, "/repo/lib/ckpt/config.json")]
    [InlineData("../lib/ckpt/config.json", "/repo/app/", "/repo/lib/ckpt/config.json")]
    public void ConfigFileResolution_PrefersTheProjectDirectory(string configFile, string? projectDirectory, string expected)
    {
        string[] files = ["/repo/app/ckpt/config.json", "/repo/lib/ckpt/config.json", "C:\\repo\\app\\ckpt\\config.json"];
        Assert.Equal(expected, ConfigFileResolver.Resolve(configFile, files, projectDirectory).Path);
    }

    [Fact]
    public void ConfigFileResolution_SuffixMatchesOnlyAtDirectoryBoundaries_AndReportsAmbiguity()
    {
        string[] files = ["/repo/a/tiny/config.json", "/repo/b/tiny/config.json", "/repo/c/mytiny/config.json"];
        Assert.Equal(["/repo/a/tiny/config.json", "/repo/b/tiny/config.json"], ConfigFileResolver.Resolve("tiny/config.json", files, null).Candidates);
        Assert.Null(ConfigFileResolver.Resolve("tiny/config.json", files, null).Path);
        Assert.Equal("/repo/c/mytiny/config.json", ConfigFileResolver.Resolve("mytiny/config.json", files, null).Path);
        Assert.Equal("/repo/a/tiny/config.json", ConfigFileResolver.Resolve("a/tiny/config.json", files, "/elsewhere/").Path);
        Assert.Empty(ConfigFileResolver.Resolve("", files, null).Candidates);
        Assert.Empty(ConfigFileResolver.Resolve("iny/config.json", files, null).Candidates);
    }

    [Fact]
    public void ConfigFileResolution_SameFileListedTwice_IsNotAmbiguous() =>
        Assert.Equal("/repo/app/ckpt/config.json",
            ConfigFileResolver.Resolve("ckpt/config.json", ["/repo/app/ckpt/config.json", "/repo/app/./ckpt/config.json"], null).Path);

    [Theory]
    [InlineData("a\\b/./c//d", "a/b/c/d")]
    [InlineData("/x/y/../z", "/x/z")]
    [InlineData("../../a", "../../a")]
    [InlineData("C:\\x\\..\\..\\y", "C:/y")]
    [InlineData("/../y", "/y")]
    public void PathNormalization(string path, string normalized) => Assert.Equal(normalized, ConfigFileResolver.Normalize(path));

    /// <summary>Every prefix of a valid config is malformed JSON: each must give MAMBA0014, never an exception.</summary>
    [Fact]
    public void EveryTruncationOfAConfig_IsReportedAsInvalidJson()
    {
        const string config = """{"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 1e2, "eos_token_id": [0, 1], "mambagen": {"a_init": "s4d_\u0072eal", "selective_b": false}, "x": null}""";
        Assert.NotNull(ConfigReader.Read("c.json", config).Config);
        for (int length = 0; length < config.Length; length++)
        {
            var document = ConfigReader.Read("c.json", config.Substring(0, length));
            Assert.Null(document.Config);
            Assert.Equal(DiagnosticDescriptors.ConfigFileInvalidJson, Assert.Single(document.Problems).Descriptor);
        }
    }
}
