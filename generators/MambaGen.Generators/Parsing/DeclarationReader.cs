using System.Collections.Generic;
using System.Linq;
using System.Threading;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace MambaGen.Generators.Parsing
{
    /// <summary>A declaration as written: where it is and the literal named arguments of both attributes.</summary>
    internal sealed record Declaration(
        TypeLocation Type,
        bool IsPartial,
        EquatableArray<NamedValue> ModelArguments,
        EquatableArray<NamedValue> SsmArguments,
        bool HasSsmAttribute);

    /// <summary>One named attribute argument, with its value as a culture-invariant string.</summary>
    internal sealed record NamedValue(string Name, string Value);

    /// <summary>Reads a <c>[MambaModel]</c> class into a symbol-free <see cref="Declaration"/>.</summary>
    internal static class DeclarationReader
    {
        public const string MambaModelAttributeName = "MambaGen.MambaModelAttribute";
        public const string SelectiveSsmAttributeName = "MambaGen.SelectiveSsmAttribute";

        public static Declaration Read(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
        {
            var symbol = (INamedTypeSymbol)context.TargetSymbol;
            var syntax = (ClassDeclarationSyntax)context.TargetNode;
            cancellationToken.ThrowIfCancellationRequested();

            var enclosing = new List<string>();
            for (var outer = symbol.ContainingType; outer is not null; outer = outer.ContainingType)
                enclosing.Insert(0, (outer.IsRecord ? "partial record " : outer.TypeKind == TypeKind.Struct ? "partial struct " : "partial class ") + outer.Name);
            var ns = symbol.ContainingNamespace.IsGlobalNamespace ? "" : symbol.ContainingNamespace.ToDisplayString();
            var location = new TypeLocation(ns, symbol.Name, SyntaxFacts.GetText(symbol.DeclaredAccessibility), new EquatableArray<string>(enclosing));

            var ssm = symbol.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == SelectiveSsmAttributeName);
            return new Declaration(
                location,
                syntax.Modifiers.Any(SyntaxKind.PartialKeyword),
                NamedArguments(context.Attributes[0]),
                ssm is null ? default : NamedArguments(ssm),
                ssm is not null);
        }

        private static EquatableArray<NamedValue> NamedArguments(AttributeData attribute) =>
            new(attribute.NamedArguments.Select(a => new NamedValue(a.Key, System.Convert.ToString(a.Value.Value, System.Globalization.CultureInfo.InvariantCulture) ?? "")));
    }
}
