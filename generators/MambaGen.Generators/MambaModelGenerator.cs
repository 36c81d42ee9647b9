using MambaGen.Generators.Emitters;
using MambaGen.Generators.Parsing;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators
{
    /// <summary>
    /// Turns each <c>[MambaModel]</c> partial class into a specialised model. Invalid declarations are skipped
    /// here; the analyzers report why.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class MambaModelGenerator : IIncrementalGenerator
    {
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var declarations = context.SyntaxProvider.ForAttributeWithMetadataName(
                DeclarationReader.MambaModelAttributeName,
                static (node, _) => node is Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax,
                static (ctx, ct) => DeclarationReader.Read(ctx, ct));

            context.RegisterSourceOutput(declarations, static (spc, declaration) =>
            {
                var spec = SpecBuilder.Build(declaration);
                if (spec is null) return;
                spc.AddSource(spec.Type.HintName + ".g.cs", ModelEmitter.Emit(spec, spc.CancellationToken));
            });
        }
    }
}
