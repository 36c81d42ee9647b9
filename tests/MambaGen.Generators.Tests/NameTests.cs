using MambaGen.Generators.Spec;
using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace MambaGen.Generators.Tests;

/// <summary>
/// Any class name C# allows either generates code that compiles or is a MAMBA diagnostic: keywords written with
/// <c>@</c>, non-ASCII identifiers, and names the generated class already uses for a member (MAMBA0019).
/// </summary>
public class NameTests
{
    private const string Attributes = """
        [MambaModel(DModel = 32, Layers = 1, Vocab = 16)]
        [SelectiveSsm(DState = 4)]
        """;

    /// <summary>Generates <paramref name="source"/> and compiles it with the generated code: no error of any kind.</summary>
    private static RunOutcome GenerateAndCompile(string source)
    {
        var outcome = Harness.Run(source);
        Assert.Empty(outcome.AnalyzerExceptions);
        Assert.Null(outcome.Generator.Exception);
        Assert.Empty(outcome.MambaIds);
        Assert.Equal(Harness.FileSuffixes.Length, outcome.Generator.GeneratedSources.Length);
        var errors = outcome.CompilerDiagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        Assert.Empty(errors);
        return outcome;
    }

    [Theory]
    [InlineData("event")]
    [InlineData("class")]
    [InlineData("int")]
    public void KeywordClassName_WrittenWithAt_GeneratesCompilingCode(string keyword)
    {
        var outcome = GenerateAndCompile($$"""
            using MambaGen;
            namespace Demo;

            {{Attributes}}
            public partial class @{{keyword}} { }

            public static class Use
            {
                public static float[] Run() => @{{keyword}}.Create(seed: 1).Forward(new int[] { 1, 2, 3 }, batch: 1);
            }
            """);
        // The hint name is a plain file name: the keyword without its escape.
        Assert.Equal($"Demo.{keyword}.g.cs", outcome.Generator.GeneratedSources[0].HintName);
        Assert.Equal("@" + keyword, outcome.Specs.Single().Type.ClassName);
    }

    [Fact]
    public void KeywordNamespaceAndEnclosingType_GenerateCompilingCode()
    {
        var outcome = GenerateAndCompile($$"""
            using MambaGen;
            namespace @namespace.@struct;

            public static partial class @static
            {
                {{Attributes}}
                public partial class @event { }
            }
            """);
        Assert.Equal("namespace.struct.static.event.g.cs", outcome.Generator.GeneratedSources[0].HintName);
    }

    [Fact]
    public void NonAsciiNames_GenerateCompilingCode()
    {
        var outcome = GenerateAndCompile($$"""
            using MambaGen;
            namespace Modèles;

            {{Attributes}}
            public partial class Μάμπα模型 { }

            public static class Use
            {
                public static int[] Run() => Μάμπα模型.Create(seed: 1).Generate(new int[] { 1, 2 }, maxNewTokens: 3);
            }
            """);
        Assert.Equal("Modèles.Μάμπα模型.g.cs", outcome.Generator.GeneratedSources[0].HintName);
    }

    [Theory]
    [InlineData("Layers")]
    [InlineData("DecodeState")]
    [InlineData("Shape")]
    [InlineData("Forward")]
    public void Mamba0019_ClassNamedLikeAGeneratedMember(string name)
    {
        var outcome = Harness.Run($$"""
            using MambaGen;
            namespace Demo;

            {{Attributes}}
            public partial class {{name}} { }
            """);
        Assert.Empty(outcome.AnalyzerExceptions);
        Assert.Equal(["MAMBA0019"], outcome.MambaIds);
        Assert.Empty(outcome.Generator.GeneratedSources);
        var diagnostic = outcome.Mamba[0];
        Assert.Equal(name, diagnostic.Location.SourceTree!.GetText().ToString(diagnostic.Location.SourceSpan));
        Assert.Contains($"'{name}' cannot be a model class's name: the generated model declares a member named '{name}'",
            diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// The list MAMBA0019 checks must hold every member name the emitters declare in a model class, for variants that
    /// between them emit every optional member (selective and not, with and without special token ids).
    /// </summary>
    [Fact]
    public void GeneratedMemberNames_CoverEveryMemberTheEmittersDeclare()
    {
        var config = new InMemoryAdditionalText("/repo/app/tiny/config.json", """
            { "model_type": "mamba", "hidden_size": 40, "num_hidden_layers": 2, "vocab_size": 96, "state_size": 6,
              "use_bias": true, "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2 }
            """);
        var outcome = Harness.Run(Harness.Compile(("Model.cs", """
            using MambaGen;
            namespace Demo;

            [MambaModel(DModel = 64, Layers = 2, Vocab = 32)] [SelectiveSsm(DState = 8)]
            public partial class Selective { }

            [MambaModel(DModel = 64, Layers = 2, Vocab = 32)]
            [SelectiveSsm(DState = 8, SelectiveDelta = false, SelectiveB = false, SelectiveC = false, ConvBias = false)]
            public partial class Lti { }

            [MambaModel(DModel = 64, Layers = 2, Vocab = 32)] [SelectiveSsm(DState = 8, SelectiveB = false)]
            public partial class OnlyC { }

            [MambaModel(ConfigFile = "tiny/config.json")]
            public partial class FromConfig { }
            """)), [config]);
        Assert.Empty(outcome.MambaIds);
        Assert.Equal(4 * Harness.FileSuffixes.Length, outcome.Generator.GeneratedSources.Length);

        var declared = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var source in outcome.Generator.GeneratedSources)
        {
            var root = source.SyntaxTree.GetRoot();
            // The model class is the outermost class of each generated file.
            var model = root.DescendantNodes().OfType<ClassDeclarationSyntax>().First();
            foreach (var member in model.Members) declared.UnionWith(Names(member));
        }
        Assert.NotEmpty(declared);
        var missing = declared.Where(name => !GeneratedMemberNames.All.Contains(name)).ToList();
        Assert.True(missing.Count == 0, "Emitted member names missing from GeneratedMemberNames.All: " + string.Join(", ", missing));
    }

    private static IEnumerable<string> Names(MemberDeclarationSyntax member) => member switch
    {
        BaseFieldDeclarationSyntax field => field.Declaration.Variables.Select(v => v.Identifier.ValueText),
        PropertyDeclarationSyntax property => [property.Identifier.ValueText],
        MethodDeclarationSyntax method => [method.Identifier.ValueText],
        BaseTypeDeclarationSyntax type => [type.Identifier.ValueText],
        DelegateDeclarationSyntax @delegate => [@delegate.Identifier.ValueText],
        EventDeclarationSyntax @event => [@event.Identifier.ValueText],
        // Constructors, operators, indexers and destructors take no name of their own.
        _ => [],
    };
}
