using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Parsing;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;

namespace MambaGen.Generators.Analyzers
{
    /// <summary>
    /// Reports why a MambaGen declaration produces no model. It runs the generator's own
    /// <see cref="DeclarationReader"/> and <see cref="SpecBuilder"/>, so the rules exist once and the analyzer
    /// reports exactly the declarations the generator skips.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class MambaModelAnalyzer : DiagnosticAnalyzer
    {
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => DiagnosticDescriptors.All;

        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterCompilationStartAction(start =>
            {
                // Without MambaGen's attributes in reach no type can carry them.
                if (start.Compilation.GetTypeByMetadataName(DeclarationReader.MambaModelAttributeName) is null
                    && start.Compilation.GetTypeByMetadataName(DeclarationReader.SelectiveSsmAttributeName) is null)
                    return;
                start.Options.AnalyzerConfigOptionsProvider.GlobalOptions.TryGetValue("build_property.projectdir", out var projectDirectory);
                var configFiles = new AdditionalFileSource(start.Options.AdditionalFiles, projectDirectory);
                start.RegisterSymbolAction(symbolContext => Analyze(symbolContext, configFiles), SymbolKind.NamedType);
            });
        }

        private static void Analyze(SymbolAnalysisContext context, AdditionalFileSource configFiles)
        {
            var symbol = (INamedTypeSymbol)context.Symbol;
            var declaration = DeclarationReader.Read(symbol, context.CancellationToken);
            if (declaration is null) return;

            var result = SpecBuilder.Build(declaration, configFiles, context.CancellationToken);
            if (result.Diagnostics.Count == 0) return;

            // Positions were stored symbol-free; map them back into this type's syntax trees. Trees are told apart
            // by path; where paths repeat (in-memory sources), a tree too short for the span is never picked.
            var trees = symbol.DeclaringSyntaxReferences
                .Select(reference => reference.SyntaxTree)
                .Concat(symbol.GetAttributes().Select(a => a.ApplicationSyntaxReference?.SyntaxTree).OfType<SyntaxTree>())
                .Distinct()
                .ToList();
            Location ToLocation(LocationInfo info) =>
                trees.FirstOrDefault(tree => tree.FilePath == info.FilePath && tree.Length >= info.Span.End) is { } tree
                    ? Location.Create(tree, info.Span)
                    : Location.Create(info.FilePath, info.Span, info.LineSpan);

            foreach (var diagnostic in result.Diagnostics)
                context.ReportDiagnostic(diagnostic.ToDiagnostic(ToLocation));
        }

        /// <summary>AdditionalFiles read on first use and parsed once per compilation, whichever thread asks first.</summary>
        private sealed class AdditionalFileSource : IConfigFileSource
        {
            private readonly ImmutableArray<AdditionalText> _files;
            private readonly ConcurrentDictionary<string, ConfigDocument> _documents = new ConcurrentDictionary<string, ConfigDocument>();

            public AdditionalFileSource(ImmutableArray<AdditionalText> files, string? projectDirectory)
            {
                _files = files;
                ProjectDirectory = projectDirectory;
                AdditionalFilePaths = files.Select(file => file.Path).ToList();
            }

            public IReadOnlyList<string> AdditionalFilePaths { get; }

            public string? ProjectDirectory { get; }

            public ConfigDocument Read(string path, CancellationToken cancellationToken) =>
                _documents.GetOrAdd(path, p => ConfigReader.Read(p, _files.First(file => file.Path == p).GetText(cancellationToken)?.ToString()));
        }
    }
}
