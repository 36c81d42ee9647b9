using System.Linq;
using MambaGen.Generators.Emitters;
using MambaGen.Generators.Parsing;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace MambaGen.Generators
{
    /// <summary>
    /// Turns each <c>[MambaModel]</c> partial class into a specialised model. Invalid declarations are skipped
    /// here; <see cref="Analyzers.MambaModelAnalyzer"/> reports why, from the same <see cref="SpecBuilder"/>.
    /// </summary>
    /// <remarks>
    /// Every value flowing between steps compares by value (no symbols, syntax or compilations), so an edit that
    /// does not touch a declaration or its config file leaves the emitted source cached. Config files are read
    /// only when a declaration names them, and each once, however many declarations share it.
    /// </remarks>
    [Generator(LanguageNames.CSharp)]
    public sealed class MambaModelGenerator : IIncrementalGenerator
    {
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var declarations = context.SyntaxProvider
                .ForAttributeWithMetadataName(
                    DeclarationReader.MambaModelAttributeName,
                    static (node, _) => node is ClassDeclarationSyntax,
                    static (ctx, ct) => DeclarationReader.Read(ctx, ct))
                .Where(static declaration => declaration is not null)
                .Select(static (declaration, _) => declaration!)
                .WithTrackingName(TrackingNames.Declarations);

            var projectDirectory = context.AnalyzerConfigOptionsProvider.Select(static (options, _) =>
                options.GlobalOptions.TryGetValue("build_property.projectdir", out var directory) ? directory : null);

            var additionalPaths = context.AdditionalTextsProvider
                .Select(static (text, _) => text.Path)
                .Collect()
                .Select(static (paths, _) => new EquatableArray<string>(paths));

            var requestedConfigFiles = declarations
                .Select(static (declaration, _) => declaration.Model?.Find("ConfigFile")?.Value as string)
                .Where(static configFile => configFile is not null)
                .Collect()
                .Select(static (configFiles, _) => new EquatableArray<string>(configFiles.Distinct().OrderBy(f => f, System.StringComparer.Ordinal)!));

            // The paths that requested config files resolve to; only those files get read.
            var selectedPaths = requestedConfigFiles
                .Combine(additionalPaths)
                .Combine(projectDirectory)
                .Select(static (input, ct) =>
                {
                    var ((requests, paths), directory) = input;
                    var selected = requests
                        .Select(request =>
                        {
                            ct.ThrowIfCancellationRequested();
                            return ConfigFileResolver.Resolve(request, paths.AsImmutableArray(), directory).Path;
                        })
                        .Where(path => path is not null)
                        .Distinct();
                    return new EquatableArray<string>(selected!);
                });

            var documents = context.AdditionalTextsProvider
                .Combine(selectedPaths)
                .Where(static input => input.Right.Contains(input.Left.Path))
                .Select(static (input, ct) => ConfigReader.Read(input.Left.Path, input.Left.GetText(ct)?.ToString()))
                .WithTrackingName(TrackingNames.ConfigDocuments)
                .Collect();

            var configFiles = additionalPaths
                .Combine(projectDirectory)
                .Combine(documents)
                .Select(static (input, _) => new ConfigFileSet(input.Left.Left, input.Left.Right, new EquatableArray<ConfigDocument>(input.Right)))
                .WithTrackingName(TrackingNames.ConfigFiles);

            var specs = declarations
                .Combine(configFiles)
                .Select(static (input, ct) => SpecBuilder.Build(input.Left, input.Right, ct).Spec)
                .Where(static spec => spec is not null)
                .WithTrackingName(TrackingNames.ModelSpecs);

            context.RegisterSourceOutput(specs, static (spc, spec) =>
            {
                spc.AddSource(spec!.Type.HintName + ".g.cs", ModelEmitter.Emit(spec, spc.CancellationToken));
                spc.AddSource(spec.Type.HintName + ".Cpu.g.cs", ModelEmitter.EmitCpu(spec, spc.CancellationToken));
                spc.AddSource(spec.Type.HintName + ".Cuda.g.cs", CudaEmitter.Emit(spec, spc.CancellationToken));
            });
        }
    }

    /// <summary>Names of the pipeline steps, so tests can check what was cached.</summary>
    internal static class TrackingNames
    {
        public const string Declarations = nameof(Declarations);
        public const string ConfigDocuments = nameof(ConfigDocuments);
        public const string ConfigFiles = nameof(ConfigFiles);
        public const string ModelSpecs = nameof(ModelSpecs);
    }
}
