using System.Collections;
using System.Reflection;
using MambaGen.Generators.Tests.Infrastructure;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace MambaGen.Generators.Tests;

/// <summary>
/// The generator's caching, observed through Roslyn's step tracking: edits that do not touch a declaration or its
/// config file must leave the emitted source cached, and edits that do must regenerate it (the control cases,
/// which show these tests can fail).
/// </summary>
public class IncrementalityTests
{
    private const string ModelSource = """
        using MambaGen;
        namespace Demo;

        [MambaModel(DModel = 64, Layers = 2, Vocab = 100)]
        [SelectiveSsm(DState = 8)]
        public partial class Tiny { }

        [MambaModel(ConfigFile = "tiny/config.json")]
        public partial class FromConfig { }
        """;

    private const string OtherSource = """
        namespace Demo;
        public class Helper { public int Twice(int x) => 2 * x; }
        """;

    private const string ConfigPath = "/repo/tiny/config.json";
    private const string ConfigText = """{ "model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 64 }""";

    private static readonly string[] OwnSteps =
        [TrackingNames.Declarations, TrackingNames.ConfigDocuments, TrackingNames.ConfigFiles, TrackingNames.ModelSpecs];

    /// <summary>Runs the driver once on the initial sources, then on the edited compilation; returns the second run.</summary>
    /// <param name="editFiles">Edits the AdditionalFiles; gets the config file's AdditionalText.</param>
    private static GeneratorRunResult RunTwice(Func<CSharpCompilation, CSharpCompilation> edit, Func<GeneratorDriver, AdditionalText, GeneratorDriver>? editFiles = null)
    {
        var compilation = Harness.Compile(("Model.cs", ModelSource), ("Helper.cs", OtherSource));
        var config = new InMemoryAdditionalText(ConfigPath, ConfigText);
        var driver = Harness.CreateDriver([config]).RunGenerators(compilation);
        var first = driver.GetRunResult().Results.Single();
        Assert.Equal(2 * Harness.FileSuffixes.Length, first.GeneratedSources.Length);
        Assert.Null(first.Exception);

        if (editFiles is not null) driver = editFiles(driver, config);
        return driver.RunGenerators(edit(compilation)).GetRunResult().Results.Single();
    }

    private static IEnumerable<IncrementalStepRunReason> OutputReasons(GeneratorRunResult result) =>
        result.TrackedOutputSteps.SelectMany(step => step.Value).SelectMany(run => run.Outputs).Select(output => output.Reason);

    private static IEnumerable<IncrementalStepRunReason> StepReasons(GeneratorRunResult result, string step) =>
        result.TrackedSteps[step].SelectMany(run => run.Outputs).Select(output => output.Reason);

    private static void AssertAllCached(GeneratorRunResult result)
    {
        var reasons = OutputReasons(result).ToList();
        Assert.Equal(2, reasons.Count);
        Assert.All(reasons, reason => Assert.Equal(IncrementalStepRunReason.Cached, reason));
        Assert.All(StepReasons(result, TrackingNames.ModelSpecs), reason => Assert.True(
            reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"ModelSpecs step was {reason}"));
    }

    [Fact]
    public void AddingAnUnrelatedFile_LeavesOutputCached() =>
        AssertAllCached(RunTwice(c => c.AddSyntaxTrees(CSharpSyntaxTree.ParseText("class Unrelated { }", Harness.ParseOptions, "Unrelated.cs"))));

    [Fact]
    public void ChangingAMethodBodyElsewhere_LeavesOutputCached() =>
        AssertAllCached(RunTwice(c =>
        {
            var old = c.SyntaxTrees.Single(t => t.FilePath == "Helper.cs");
            return c.ReplaceSyntaxTree(old, old.WithChangedText(old.GetText().Replace(old.GetText().ToString().IndexOf("2 * x", StringComparison.Ordinal), 5, "x + x")));
        }));

    [Fact]
    public void AddingAnUnrelatedAdditionalFile_LeavesOutputCached() =>
        AssertAllCached(RunTwice(c => c, (d, _) => d.AddAdditionalTexts([new InMemoryAdditionalText("/repo/notes.txt", "hello")])));

    /// <summary>
    /// Text inserted above a declaration moves it, so the declaration (which records positions for diagnostics)
    /// changes, but the spec it resolves to does not, and the emitter does not run again.
    /// </summary>
    [Fact]
    public void MovingADeclaration_ReresolvesButDoesNotReemit()
    {
        var result = RunTwice(c =>
        {
            var old = c.SyntaxTrees.Single(t => t.FilePath == "Model.cs");
            return c.ReplaceSyntaxTree(old, old.WithChangedText(old.GetText().Replace(0, 0, "// a comment that moves everything down\n")));
        });
        Assert.Contains(IncrementalStepRunReason.Modified, StepReasons(result, TrackingNames.Declarations));
        AssertAllCached(result);
    }

    [Fact]
    public void Control_ChangingAnAttributeValue_Regenerates()
    {
        var result = RunTwice(c =>
        {
            var old = c.SyntaxTrees.Single(t => t.FilePath == "Model.cs");
            var text = old.GetText().ToString();
            return c.ReplaceSyntaxTree(old, old.WithChangedText(old.GetText().Replace(text.IndexOf("DState = 8", StringComparison.Ordinal), 10, "DState = 4")));
        });
        Assert.Equal(1, OutputReasons(result).Count(reason => reason == IncrementalStepRunReason.Modified));
    }

    [Fact]
    public void Control_EditingTheConfigFile_Regenerates()
    {
        var result = RunTwice(c => c, (d, config) => d.ReplaceAdditionalText(
            config,
            new InMemoryAdditionalText(ConfigPath, ConfigText.Replace("\"hidden_size\": 32", "\"hidden_size\": 48"))));
        Assert.Contains(IncrementalStepRunReason.Modified, StepReasons(result, TrackingNames.ConfigDocuments));
        Assert.Equal(1, OutputReasons(result).Count(reason => reason == IncrementalStepRunReason.Modified));
    }

    /// <summary>The cookbook's rule: no symbols, syntax, semantic models or compilations in pipeline values.</summary>
    [Fact]
    public void PipelineValues_HoldNoSymbolsSyntaxOrCompilations()
    {
        var result = RunTwice(c => c);
        foreach (var step in OwnSteps)
            foreach (var output in result.TrackedSteps[step].SelectMany(run => run.Outputs))
                AssertSymbolFree(output.Value, step, depth: 0);
    }

    private static void AssertSymbolFree(object? value, string path, int depth)
    {
        if (value is null || value is string || value.GetType().IsPrimitive || value.GetType().IsEnum || depth > 8) return;
        Assert.False(value is ISymbol or SyntaxNode or SyntaxTree or SemanticModel or Compilation or Location,
            $"{path} holds a {value.GetType().Name}");
        if (value is IEnumerable sequence)
        {
            foreach (var item in sequence) AssertSymbolFree(item, path + "[]", depth + 1);
            return;
        }
        var type = value.GetType();
        if (type.Namespace?.StartsWith("MambaGen", StringComparison.Ordinal) != true && !type.Name.StartsWith("ValueTuple", StringComparison.Ordinal))
            return;
        foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            AssertSymbolFree(field.GetValue(value), path + "." + field.Name, depth + 1);
    }
}
