using System.Collections.Immutable;
using MambaGen.Generators.Analyzers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace MambaGen.Generators.Tests.Infrastructure;

/// <summary>An AdditionalFiles item held in memory; a null text stands for a file the compiler cannot read.</summary>
public sealed class InMemoryAdditionalText(string path, string? text) : AdditionalText
{
    public override string Path { get; } = path;

    public override SourceText? GetText(CancellationToken cancellationToken = default) =>
        text is null ? null : SourceText.From(text);
}

/// <summary>Global analyzer options as MSBuild would pass them (only <c>build_property.projectdir</c> matters here).</summary>
public sealed class TestOptionsProvider(string? projectDirectory) : AnalyzerConfigOptionsProvider
{
    public override AnalyzerConfigOptions GlobalOptions { get; } = new Options(projectDirectory is null
        ? new Dictionary<string, string>()
        : new Dictionary<string, string> { ["build_property.projectdir"] = projectDirectory });

    public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => Options.Empty;

    public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => Options.Empty;

    private sealed class Options(Dictionary<string, string> values) : AnalyzerConfigOptions
    {
        public static readonly Options Empty = new(new Dictionary<string, string>());

        public override bool TryGetValue(string key, out string value) => values.TryGetValue(key, out value!);
    }
}

/// <summary>What one run of generator and analyzer over a compilation produced.</summary>
/// <param name="GeneratorDiagnostics">What the driver reported, including CS8784/CS8785 when the generator fails.</param>
/// <param name="Output">The compilation with the generated sources added.</param>
internal sealed record RunOutcome(
    GeneratorRunResult Generator,
    ImmutableArray<Diagnostic> GeneratorDiagnostics,
    ImmutableArray<Diagnostic> AnalyzerDiagnostics,
    IReadOnlyList<Exception> AnalyzerExceptions,
    Compilation Output)
{
    /// <summary>The compiler's diagnostics for the user code plus generated code (binds everything: costly).</summary>
    public ImmutableArray<Diagnostic> CompilerDiagnostics => Output.GetDiagnostics();

    /// <summary>MambaGen's own diagnostics, in source order.</summary>
    public IReadOnlyList<Diagnostic> Mamba => AnalyzerDiagnostics.Where(d => d.Id.StartsWith("MAMBA", StringComparison.Ordinal)).ToList();

    public IReadOnlyList<string> MambaIds => Mamba.Select(d => d.Id).ToList();

    /// <summary>The specs the generator resolved (the tracked <see cref="TrackingNames.ModelSpecs"/> step).</summary>
    public IReadOnlyList<Spec.ModelSpec> Specs =>
        Generator.TrackedSteps.TryGetValue(TrackingNames.ModelSpecs, out var steps)
            ? steps.SelectMany(step => step.Outputs).Select(output => (Spec.ModelSpec)output.Value).ToList()
            : [];

    public string? GeneratedSource(string hintName) =>
        Generator.GeneratedSources.FirstOrDefault(s => s.HintName == hintName).SourceText?.ToString();
}

/// <summary>Builds compilations against the real runtime attributes and runs MambaGen's generator and analyzer on them.</summary>
internal static class Harness
{
    /// <summary>Files the generator writes per model: the backend-neutral {Type}.g.cs, {Type}.Cpu.g.cs and {Type}.Cuda.g.cs.</summary>
    public static readonly string[] FileSuffixes = [".g.cs", ".Cpu.g.cs", ".Cuda.g.cs"];

    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    private static readonly Lazy<ImmutableArray<MetadataReference>> References = new(() =>
    {
        var framework = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator)
            .Where(path => Path.GetFileName(path).StartsWith("System.", StringComparison.Ordinal)
                || Path.GetFileName(path) is "mscorlib.dll" or "netstandard.dll");
        return framework
            .Append(typeof(MambaModelAttribute).Assembly.Location)
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))
            .ToImmutableArray();
    });

    /// <summary>Sources as (path, text); paths matter because diagnostics are mapped back by file path.</summary>
    public static CSharpCompilation Compile(params (string Path, string Text)[] sources) =>
        CSharpCompilation.Create(
            "TestAssembly",
            sources.Select(s => CSharpSyntaxTree.ParseText(s.Text, ParseOptions, s.Path)),
            References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static CSharpCompilation Compile(string source) => Compile(("Model.cs", source));

    public static GeneratorDriver CreateDriver(IEnumerable<AdditionalText>? additionalFiles = null, string? projectDirectory = null) =>
        CSharpGeneratorDriver.Create(
            new[] { new MambaModelGenerator().AsSourceGenerator() },
            additionalFiles ?? [],
            ParseOptions,
            new TestOptionsProvider(projectDirectory),
            new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator and, on the original compilation, the analyzer, recording any exception either throws.</summary>
    public static RunOutcome Run(Compilation compilation, IEnumerable<AdditionalText>? additionalFiles = null, string? projectDirectory = null)
    {
        var files = (additionalFiles ?? []).ToImmutableArray();
        var driver = CreateDriver(files, projectDirectory).RunGeneratorsAndUpdateCompilation(compilation, out var output, out var generatorDiagnostics);
        var generator = driver.GetRunResult().Results.Single();

        var exceptions = new List<Exception>();
        var options = new CompilationWithAnalyzersOptions(
            new AnalyzerOptions(files, new TestOptionsProvider(projectDirectory)),
            onAnalyzerException: (exception, _, _) => { lock (exceptions) exceptions.Add(exception); },
            concurrentAnalysis: false,
            logAnalyzerExecutionTime: false);
        var analyzed = compilation.WithAnalyzers([new MambaModelAnalyzer()], options);
        var analyzerDiagnostics = analyzed.GetAnalyzerDiagnosticsAsync().GetAwaiter().GetResult();
        return new RunOutcome(generator, generatorDiagnostics, analyzerDiagnostics, exceptions, output);
    }

    public static RunOutcome Run(string source, params AdditionalText[] additionalFiles) => Run(Compile(source), additionalFiles);
}
