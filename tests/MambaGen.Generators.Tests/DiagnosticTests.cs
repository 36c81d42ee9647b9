using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Tests;

/// <summary>
/// One test per MAMBA id: the analyzer reports it (message naming the offending values, squiggle where it was
/// written) and the generator quietly emits nothing. <see cref="ValidDeclaration_ReportsNothing_AndGenerates"/>
/// and the in-range boundary cases show each rule stays silent on valid input.
/// </summary>
public class DiagnosticTests
{
    private const string ConfigPath = "/repo/app/checkpoints/tiny/config.json";

    private const string TinyHfConfig = """
        {
          "model_type": "mamba",
          "hidden_size": 64,
          "num_hidden_layers": 2,
          "vocab_size": 128,
          "state_size": 8
        }
        """;

    private static string Declare(string attributes, string type = "public partial class Tiny { }") => $$"""
        using MambaGen;
        namespace Demo;

        {{attributes}}
        {{type}}
        """;

    private static readonly string ValidAttributes = """
        [MambaModel(DModel = 64, Layers = 2, Vocab = 100)]
        [SelectiveSsm(DState = 8)]
        """;

    private static RunOutcome Run(string source, params AdditionalText[] files)
    {
        var outcome = Harness.Run(source, files);
        Assert.Empty(outcome.AnalyzerExceptions);
        Assert.Null(outcome.Generator.Exception);
        return outcome;
    }

    /// <summary>Asserts <paramref name="id"/> is the only MambaGen diagnostic and nothing was generated.</summary>
    private static Diagnostic Single(RunOutcome outcome, string id)
    {
        Assert.Equal([id], outcome.MambaIds);
        Assert.Empty(outcome.Generator.GeneratedSources);
        var diagnostic = outcome.Mamba[0];
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        return diagnostic;
    }

    private static string SourceAt(Diagnostic diagnostic) =>
        diagnostic.Location.SourceTree!.GetText().ToString(diagnostic.Location.SourceSpan);

    private static string Message(Diagnostic diagnostic) => diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void ValidDeclaration_ReportsNothing_AndGenerates()
    {
        var outcome = Run(Declare(ValidAttributes));
        Assert.Empty(outcome.MambaIds);
        Assert.NotNull(outcome.GeneratedSource("Demo.Tiny.g.cs"));
        Assert.DoesNotContain(outcome.CompilerDiagnostics, d => d.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void Mamba0001_ClassNotPartial()
    {
        var diagnostic = Single(Run(Declare(ValidAttributes, "public class Tiny { }")), "MAMBA0001");
        Assert.Equal("Tiny", SourceAt(diagnostic));
        Assert.Contains("'Tiny' must be declared partial", Message(diagnostic));
    }

    [Fact]
    public void Mamba0002_ContainingTypeNotPartial()
    {
        var diagnostic = Single(Run(Declare("", $"public class Outer {{ {ValidAttributes} public partial class Inner {{ }} }}")), "MAMBA0002");
        Assert.Contains("'Demo.Outer' contains the model class 'Outer.Inner'", Message(diagnostic));
    }

    [Fact]
    public void Mamba0003_GenericClass()
    {
        var diagnostic = Single(Run(Declare(ValidAttributes, "public partial class Tiny<T> { }")), "MAMBA0003");
        Assert.Equal("Tiny", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0004_NestedInGenericType()
    {
        var diagnostic = Single(Run(Declare("", $"public partial class Outer<T> {{ {ValidAttributes} public partial class Inner {{ }} }}")), "MAMBA0004");
        Assert.Contains("nested in the generic type 'Demo.Outer<T>'", Message(diagnostic));
    }

    [Theory]
    [InlineData("public static partial class Tiny { }", "static")]
    [InlineData("public abstract partial class Tiny { }", "abstract")]
    [InlineData("public partial record Tiny;", "a record")]
    public void Mamba0005_UnsupportedClassKind(string type, string kind)
    {
        var diagnostic = Single(Run(Declare(ValidAttributes, type)), "MAMBA0005");
        Assert.Contains($"'Tiny' is {kind}", Message(diagnostic));
    }

    [Fact]
    public void Mamba0006_SelectiveSsmWithoutMambaModel()
    {
        var diagnostic = Single(Run(Declare("[SelectiveSsm(DState = 8)]")), "MAMBA0006");
        Assert.Equal("SelectiveSsm(DState = 8)", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0007_MambaModelWithoutSelectiveSsmOrConfigFile()
    {
        var diagnostic = Single(Run(Declare("[MambaModel(DModel = 64, Layers = 2, Vocab = 100)]")), "MAMBA0007");
        Assert.Equal("MambaModel(DModel = 64, Layers = 2, Vocab = 100)", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0008_RequiredPropertyMissing_NamesEachOne()
    {
        var outcome = Run(Declare("[MambaModel(Layers = 2)] [SelectiveSsm]"));
        Assert.Equal(["MAMBA0008", "MAMBA0008"], outcome.MambaIds);
        Assert.Contains("does not set DModel", Message(outcome.Mamba[0]));
        Assert.Contains("does not set Vocab", Message(outcome.Mamba[1]));
        Assert.Empty(outcome.Generator.GeneratedSources);
    }

    [Theory]
    [InlineData("DModel = 0, Layers = 2, Vocab = 100", "", "DModel = 0", "DModel = 0 is out of range: expected >= 1")]
    [InlineData("DModel = 64, Layers = -3, Vocab = 100", "", "Layers = -3", "Layers = -3 is out of range: expected >= 1")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 0", "", "Vocab = 0", "Vocab = 0 is out of range: expected >= 1")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, PadVocabMultiple = 0", "", "PadVocabMultiple = 0", "PadVocabMultiple = 0 is out of range: expected >= 1")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = 0", "", "NormEpsilon = 0", "NormEpsilon = 0 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = -1e-5", "", "NormEpsilon = -1e-5", "NormEpsilon = -1E-05 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = double.NaN", "", "NormEpsilon = double.NaN", "NormEpsilon = NaN is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = double.PositiveInfinity", "", "NormEpsilon = double.PositiveInfinity", "NormEpsilon = Infinity is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    // Finite in double but not as the float the generated code holds: 1e300 overflows, 1e-300 rounds to 0.
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = 1e300", "", "NormEpsilon = 1e300", "NormEpsilon = 1E+300 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = 1e-300", "", "NormEpsilon = 1e-300", "NormEpsilon = 1E-300 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100, NormEpsilon = double.Epsilon", "", "NormEpsilon = double.Epsilon", "NormEpsilon = 5E-324 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "DState = 0", "DState = 0", "DState = 0 is out of range: expected 1..256")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "DState = 257", "DState = 257", "DState = 257 is out of range: expected 1..256")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "Expand = 0", "Expand = 0", "Expand = 0 is out of range: expected >= 1")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "DtRank = -1", "DtRank = -1", "DtRank = -1 is out of range: expected >= 0 (0 = auto: ceil(DModel / 16))")]
    // ED = Expand · DModel = 128 here.
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "DtRank = 129", "DtRank = 129", "DtRank = 129 is out of range: expected 1..128 (at most the inner width ED = 128)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "DtRank = 100000", "DtRank = 100000", "DtRank = 100000 is out of range: expected 1..128 (at most the inner width ED = 128)")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "ConvKernel = 0", "ConvKernel = 0", "ConvKernel = 0 is out of range: expected 1..8")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "ConvKernel = 9", "ConvKernel = 9", "ConvKernel = 9 is out of range: expected 1..8")]
    [InlineData("DModel = 64, Layers = 2, Vocab = 100", "AInit = (AInit)7", "AInit = (AInit)7", "AInit = 7 is out of range: expected S4DReal, NegativeHalf or Random")]
    public void Mamba0009_ValueOutOfRange_NamesPropertyValueAndRange(string model, string ssm, string argument, string message)
    {
        var diagnostic = Single(Run(Declare($"[MambaModel({model})] [SelectiveSsm({ssm})]")), "MAMBA0009");
        Assert.Equal(message, Message(diagnostic));
        Assert.Equal(argument, SourceAt(diagnostic));
    }

    [Theory]
    [InlineData("DState = 1, ConvKernel = 1, Expand = 1, DtRank = 0")]
    [InlineData("DState = 256, ConvKernel = 8, DtRank = 1, AInit = AInit.Random")]
    [InlineData("DtRank = 2, Expand = 2")]
    public void Mamba0009_BoundaryValuesAreAccepted(string ssm)
    {
        // The smallest and largest ε a float holds; DtRank = ED = Expand · DModel is the widest rank.
        var outcome = Run(Declare($"[MambaModel(DModel = 1, Layers = 1, Vocab = 1, PadVocabMultiple = 1, NormEpsilon = 1.401298464324817E-45)] [SelectiveSsm({ssm})]"));
        Assert.Empty(outcome.MambaIds);
        Assert.Equal(Harness.FileSuffixes.Length, outcome.Generator.GeneratedSources.Length);
        outcome = Run(Declare($"[MambaModel(DModel = 1, Layers = 1, Vocab = 1, NormEpsilon = 3.4028234663852886E+38)] [SelectiveSsm({ssm})]"));
        Assert.Empty(outcome.MambaIds);
        Assert.Equal(Harness.FileSuffixes.Length, outcome.Generator.GeneratedSources.Length);
    }

    [Fact]
    public void Mamba0009_ConfigValueOutOfRange_NamesTheField()
    {
        var config = TinyHfConfig.Replace("\"state_size\": 8", "\"state_size\": 300");
        var diagnostic = Single(Run(Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"), new InMemoryAdditionalText(ConfigPath, config)), "MAMBA0009");
        Assert.Contains("'state_size' in 'checkpoints/tiny/config.json' = 300 is out of range: expected 1..256", Message(diagnostic));
        Assert.Equal("ConfigFile = \"checkpoints/tiny/config.json\"", SourceAt(diagnostic));
    }

    [Theory]
    [InlineData("\"time_step_rank\": 200", "'time_step_rank' in 'checkpoints/tiny/config.json' = 200 is out of range: expected 1..128 (at most the inner width ED = 128)")]
    [InlineData("\"eos_token_id\": 128", "'eos_token_id' in 'checkpoints/tiny/config.json' = 128 is out of range: expected 0..127 (a token id inside the vocabulary)")]
    [InlineData("\"bos_token_id\": -1", "'bos_token_id' in 'checkpoints/tiny/config.json' = -1 is out of range: expected 0..127 (a token id inside the vocabulary)")]
    [InlineData("\"pad_token_id\": 1000", "'pad_token_id' in 'checkpoints/tiny/config.json' = 1000 is out of range: expected 0..127 (a token id inside the vocabulary)")]
    [InlineData("\"layer_norm_epsilon\": 1e-60", "'layer_norm_epsilon' in 'checkpoints/tiny/config.json' = 1E-60 is out of range: expected > 0 and finite as a float (1.4E-45 .. 3.4E+38)")]
    public void Mamba0009_ConfigValueOutOfRange_ChecksRankTokenIdsAndEpsilon(string field, string message)
    {
        var config = TinyHfConfig.Replace("\"state_size\": 8", "\"state_size\": 8, " + field);
        var diagnostic = Single(Run(Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"), new InMemoryAdditionalText(ConfigPath, config)), "MAMBA0009");
        Assert.Contains(message, Message(diagnostic));
        Assert.Equal("ConfigFile = \"checkpoints/tiny/config.json\"", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0009_PartialClassOverTwoFiles_ReportsInTheFileHoldingTheArgument()
    {
        var outcome = Harness.Run(Harness.Compile(
            ("A.cs", "namespace Demo; public partial class Tiny { public int Extra; }"),
            ("B.cs", Declare("[MambaModel(DModel = 64, Layers = 2, Vocab = 100)] [SelectiveSsm(DState = 0)]"))));
        var diagnostic = Single(outcome, "MAMBA0009");
        Assert.Equal("B.cs", diagnostic.Location.SourceTree!.FilePath);
        Assert.Equal("DState = 0", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0010_ModelTooLarge()
    {
        // in_proj is 2·ED × D = 2·65,536 × 32,768 = 4,294,967,296 elements: one tensor beyond one float[] of 2,147,483,591.
        var diagnostic = Single(Run(Declare("[MambaModel(DModel = 32768, Layers = 2, Vocab = 100)] [SelectiveSsm]")), "MAMBA0010");
        Assert.Contains("in_proj of 4,294,967,296 elements, more than one float[] can hold (2,147,483,591)", Message(diagnostic));
        // The whole model may pass one array (mamba-2.8b has 2.77 billion parameters) as long as each tensor fits one.
        Assert.Empty(Run(Declare("[MambaModel(DModel = 8192, Layers = 64, Vocab = 50000)] [SelectiveSsm]")).MambaIds);
    }

    [Fact]
    public void Mamba0011_ConfigFileNotAmongAdditionalFiles()
    {
        var diagnostic = Single(Run(Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]")), "MAMBA0011");
        Assert.Contains("<AdditionalFiles Include=\"checkpoints/tiny/config.json\" />", Message(diagnostic));
        Assert.Equal("ConfigFile = \"checkpoints/tiny/config.json\"", SourceAt(diagnostic));
    }

    [Fact]
    public void Mamba0012_ConfigFileAmbiguous_ListsCandidates()
    {
        var diagnostic = Single(Run(
            Declare("[MambaModel(ConfigFile = \"tiny/config.json\")]"),
            new InMemoryAdditionalText("/repo/a/tiny/config.json", TinyHfConfig),
            new InMemoryAdditionalText("/repo/b/tiny/config.json", TinyHfConfig)), "MAMBA0012");
        Assert.Contains("(/repo/a/tiny/config.json, /repo/b/tiny/config.json)", Message(diagnostic));
    }

    [Fact]
    public void Mamba0013_ConfigFileUnreadable()
    {
        var diagnostic = Single(Run(Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"), new InMemoryAdditionalText(ConfigPath, null)), "MAMBA0013");
        Assert.Contains("'checkpoints/tiny/config.json' could not be read", Message(diagnostic));
    }

    [Fact]
    public void Mamba0014_ConfigFileNotJson_GivesPosition()
    {
        var diagnostic = Single(Run(
            Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"),
            new InMemoryAdditionalText(ConfigPath, "{\n  \"hidden_size\": 64,\n}")), "MAMBA0014");
        Assert.Contains("expected a property name in double quotes, found '}' at line 3, column 1", Message(diagnostic));
    }

    [Fact]
    public void Mamba0015_ConfigFieldMissing_NamesTheField()
    {
        var diagnostic = Single(Run(
            Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"),
            new InMemoryAdditionalText(ConfigPath, TinyHfConfig.Replace("\"num_hidden_layers\": 2,", ""))), "MAMBA0015");
        Assert.Contains("lacks the required field 'num_hidden_layers'", Message(diagnostic));
    }

    [Theory]
    [InlineData("""{ "model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 128 }""", "model_type \"mamba2\"")]
    [InlineData("""{ "d_model": 64, "n_layer": 2, "vocab_size": 128, "ssm_cfg": { "layer": "Mamba2" } }""", "ssm_cfg.layer \"Mamba2\"")]
    [InlineData("""{ "model_type": "llama", "hidden_size": 64 }""", "model_type \"llama\"")]
    public void Mamba0016_ConfigOfAnotherModelType(string config, string described)
    {
        var diagnostic = Single(Run(Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"), new InMemoryAdditionalText(ConfigPath, config)), "MAMBA0016");
        Assert.Contains("has " + described, Message(diagnostic));
    }

    [Theory]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": \"64\"", "field 'hidden_size' must be an integer, but is the string \"64\"")]
    [InlineData("\"state_size\": 8", "\"state_size\": 8.5", "field 'state_size' must be an integer, but is the number 8.5")]
    [InlineData("\"state_size\": 8", "\"state_size\": 8, \"use_bias\": 1", "field 'use_bias' must be true or false, but is the number 1")]
    [InlineData("\"state_size\": 8", "\"state_size\": 8, \"mambagen\": { \"a_init\": \"Zero\" }", "field 'mambagen.a_init' must be \"s4d_real\", \"negative_half\" or \"random\", but is the string \"Zero\"")]
    [InlineData("\"state_size\": 8", "\"state_size\": 8, \"hidden_act\": \"gelu\"", "field 'hidden_act' must be \"silu\"")]
    public void Mamba0017_ConfigFieldInvalid(string field, string replacement, string message)
    {
        var diagnostic = Single(Run(
            Declare("[MambaModel(ConfigFile = \"checkpoints/tiny/config.json\")]"),
            new InMemoryAdditionalText(ConfigPath, TinyHfConfig.Replace(field, replacement))), "MAMBA0017");
        Assert.Contains(message, Message(diagnostic));
    }

    [Theory]
    [InlineData("[MambaModel(ConfigFile = F, DModel = 32)]", "DModel = 32", "DModel = 32 contradicts config file 'checkpoints/tiny/config.json', where 'hidden_size' gives 64")]
    [InlineData("[MambaModel(ConfigFile = F)] [SelectiveSsm(ProjBias = true)]", "ProjBias = true", "where 'use_bias' gives false (absent: the Hugging Face default)")]
    [InlineData("[MambaModel(ConfigFile = F, PadVocabMultiple = 8)]", "PadVocabMultiple = 8", "'vocab_size' gives 1 (Hugging Face configs store the vocabulary already padded)")]
    [InlineData("[MambaModel(ConfigFile = F)] [SelectiveSsm(DtRank = 0, DState = 8, Expand = 3)]", "Expand = 3", "'expand' gives 2 (absent: the Hugging Face default)")]
    [InlineData("[MambaModel(ConfigFile = F)] [SelectiveSsm(DtRank = 5)]", "DtRank = 5", "DtRank = 5 contradicts config file 'checkpoints/tiny/config.json', where 'time_step_rank' gives 4 (absent: ceil(hidden_size / 16))")]
    public void Mamba0018_LiteralContradictsConfig_NamesBothValues(string attributes, string argument, string message)
    {
        var source = Declare(attributes.Replace("ConfigFile = F", "ConfigFile = \"checkpoints/tiny/config.json\""));
        var diagnostic = Single(Run(source, new InMemoryAdditionalText(ConfigPath, TinyHfConfig)), "MAMBA0018");
        Assert.Contains(message, Message(diagnostic));
        Assert.Equal(argument, SourceAt(diagnostic));
    }

    [Fact]
    public void ConfigFile_WithAgreeingLiterals_IsAccepted()
    {
        var source = Declare("""
            [MambaModel(ConfigFile = "checkpoints/tiny/config.json", DModel = 64, Vocab = 128, TieEmbeddings = true)]
            [SelectiveSsm(DState = 8, DtRank = 0, ProjBias = false, SelectiveB = false)]
            """);
        var outcome = Run(source, new InMemoryAdditionalText(ConfigPath, TinyHfConfig));
        Assert.Empty(outcome.MambaIds);
        Assert.NotNull(outcome.GeneratedSource("Demo.Tiny.g.cs"));
    }

    /// <summary>
    /// AllowMultiple = false makes a repeated attribute the compiler's CS0579, on one declaration or spread over
    /// partial parts. MambaGen adds no diagnostic of its own, generates the model once from the first
    /// application, and does not crash on the duplicate hint name.
    /// </summary>
    [Theory]
    [InlineData("[MambaModel(DModel = 64, Layers = 2, Vocab = 100)] [MambaModel(DModel = 32, Layers = 2, Vocab = 100)] [SelectiveSsm] public partial class Tiny { }")]
    [InlineData("[MambaModel(DModel = 64, Layers = 2, Vocab = 100)] [SelectiveSsm] public partial class Tiny { } [MambaModel(DModel = 32, Layers = 2, Vocab = 100)] public partial class Tiny { }")]
    [InlineData("[MambaModel(DModel = 64, Layers = 2, Vocab = 100)] [SelectiveSsm] [SelectiveSsm(DState = 4)] public partial class Tiny { }")]
    public void DuplicatedAttributes_AreLeftToTheCompiler(string declaration)
    {
        var outcome = Run(Declare("", declaration));
        Assert.Contains(outcome.CompilerDiagnostics, d => d.Id == "CS0579");
        Assert.Empty(outcome.MambaIds);
        Assert.Equal(Harness.FileSuffixes.Length, outcome.Generator.GeneratedSources.Length);
        var spec = Assert.Single(outcome.Specs);
        Assert.Equal(64, spec.DModel);
    }

    [Fact]
    public void EveryDescriptor_LinksToItsSectionOfTheDocs()
    {
        var docs = File.ReadAllText(RepositoryFile("docs/diagnostics.md"));
        Assert.Equal(19, DiagnosticDescriptors.All.Length);
        foreach (var descriptor in DiagnosticDescriptors.All)
        {
            var anchor = descriptor.Id.ToLowerInvariant();
            Assert.Equal("docs/diagnostics.md#" + anchor, descriptor.HelpLinkUri);
            // A level-2 heading "## MAMBA0001: title" gets the anchor "mamba0001-title" on GitHub, so each section also
            // carries an explicit <a id> for the short anchor.
            Assert.Contains($"<a id=\"{anchor}\"></a>", docs);
            Assert.Contains($"## {descriptor.Id}: {descriptor.Title}", docs);
        }
    }

    private static string RepositoryFile(string relative, [System.Runtime.CompilerServices.CallerFilePath] string thisFile = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(thisFile)!, "../..", relative));
}
