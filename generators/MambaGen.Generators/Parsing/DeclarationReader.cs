using System.Collections.Generic;
using System.Linq;
using System.Threading;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace MambaGen.Generators.Parsing
{
    /// <summary>
    /// Reads a class carrying MambaGen's attributes into a symbol-free <see cref="Declaration"/>. Shared by the
    /// generator and the analyzer, so both see the same facts. Judges nothing: <see cref="SpecBuilder"/> does.
    /// </summary>
    internal static class DeclarationReader
    {
        public const string MambaModelAttributeName = "MambaGen.MambaModelAttribute";
        public const string SelectiveSsmAttributeName = "MambaGen.SelectiveSsmAttribute";

        /// <summary>
        /// Generator entry point, called for each class declaration that carries <c>[MambaModel]</c>. Returns null
        /// for all but one of a class's partial declarations, so each model is generated once even when
        /// <c>[MambaModel]</c> is (wrongly, CS0579) repeated on several parts.
        /// </summary>
        public static Declaration? Read(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
        {
            if (context.TargetSymbol is not INamedTypeSymbol symbol) return null;
            var first = symbol.GetAttributes().FirstOrDefault(a => IsAttribute(a, MambaModelAttributeName))?.ApplicationSyntaxReference;
            bool ownsFirstAttribute = first is not null
                && first.SyntaxTree == context.TargetNode.SyntaxTree
                && context.TargetNode.Span.Contains(first.Span);
            return ownsFirstAttribute ? Read(symbol, cancellationToken) : null;
        }

        /// <summary>Reads <paramref name="symbol"/>, or returns null when it carries neither attribute.</summary>
        public static Declaration? Read(INamedTypeSymbol symbol, CancellationToken cancellationToken)
        {
            AttributeData? model = null, ssm = null;
            foreach (var attribute in symbol.GetAttributes())
            {
                // Only the first of each counts: a repeated attribute is the compiler's error CS0579.
                if (model is null && IsAttribute(attribute, MambaModelAttributeName)) model = attribute;
                else if (ssm is null && IsAttribute(attribute, SelectiveSsmAttributeName)) ssm = attribute;
            }
            if (model is null && ssm is null) return null;

            var enclosing = new List<string>();
            var nonPartialContainers = new List<string>();
            string? genericContainer = null;
            for (var outer = symbol.ContainingType; outer is not null; outer = outer.ContainingType)
            {
                cancellationToken.ThrowIfCancellationRequested();
                enclosing.Insert(0, PartialDeclarationKeywords(outer) + EscapedIdentifier(outer.Name));
                if (!IsPartial(outer, cancellationToken)) nonPartialContainers.Insert(0, outer.ToDisplayString());
                if (outer.Arity > 0 && genericContainer is null) genericContainer = outer.ToDisplayString();
            }

            var ns = symbol.ContainingNamespace is { IsGlobalNamespace: false } containing
                ? string.Join(".", containing.ToDisplayString().Split('.').Select(EscapedIdentifier))
                : "";
            var location = new TypeLocation(ns, EscapedIdentifier(symbol.Name), SyntaxFacts.GetText(symbol.DeclaredAccessibility), new EquatableArray<string>(enclosing));

            return new Declaration(
                location,
                LocationInfo.From(symbol.Locations.FirstOrDefault()),
                IsPartial(symbol, cancellationToken),
                symbol.Arity > 0, // IsGenericType would also be true for a class nested in a generic type
                genericContainer,
                new EquatableArray<string>(nonPartialContainers),
                UnsupportedKind(symbol),
                model is null ? null : ReadAttribute(model, cancellationToken),
                ssm is null ? null : ReadAttribute(ssm, cancellationToken));
        }

        /// <summary>
        /// A name as generated code must spell it: a reserved keyword (<c>class @event</c>) keeps its <c>@</c>, so the
        /// emitted <c>partial class @event</c> declares the same type. Contextual keywords need no escape.
        /// </summary>
        public static string EscapedIdentifier(string name) =>
            SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None ? "@" + name : name;

        /// <summary>Matches by full name, so the same check serves compilations with and without the runtime referenced.</summary>
        public static bool IsAttribute(AttributeData attribute, string fullName) =>
            attribute.AttributeClass is { } type && type.ToDisplayString() == fullName;

        private static AttributeInfo ReadAttribute(AttributeData attribute, CancellationToken cancellationToken)
        {
            var syntax = attribute.ApplicationSyntaxReference?.GetSyntax(cancellationToken) as AttributeSyntax;
            bool hasErrors = attribute.AttributeClass is null or IErrorTypeSymbol
                || attribute.AttributeConstructor is null
                || syntax?.ContainsDiagnostics == true;

            var arguments = new List<AttributeArgument>();
            foreach (var argument in attribute.NamedArguments)
            {
                if (argument.Value.Kind is TypedConstantKind.Error or TypedConstantKind.Array)
                {
                    hasErrors = true;
                    continue;
                }
                var argumentSyntax = syntax?.ArgumentList?.Arguments.FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == argument.Key);
                arguments.Add(new AttributeArgument(argument.Key, argument.Value.Value, LocationInfo.From(argumentSyntax)));
            }

            // The compiler drops arguments it cannot bind (a misspelled name, say); they show only in the syntax.
            int written = syntax?.ArgumentList?.Arguments.Count ?? 0;
            if (written != attribute.NamedArguments.Length + attribute.ConstructorArguments.Length) hasErrors = true;

            return new AttributeInfo(LocationInfo.From(syntax), hasErrors, new EquatableArray<AttributeArgument>(arguments));
        }

        private static bool IsPartial(INamedTypeSymbol type, CancellationToken cancellationToken)
        {
            var declarations = type.DeclaringSyntaxReferences;
            return declarations.Length > 0 && declarations.All(reference =>
                reference.GetSyntax(cancellationToken) is TypeDeclarationSyntax declaration
                && declaration.Modifiers.Any(SyntaxKind.PartialKeyword));
        }

        /// <summary>How a generated partial declaration of an enclosing type must start.</summary>
        private static string PartialDeclarationKeywords(INamedTypeSymbol type) => type.TypeKind switch
        {
            TypeKind.Struct => type.IsRecord ? "partial record struct " : "partial struct ",
            TypeKind.Interface => "partial interface ",
            _ => type.IsRecord ? "partial record " : "partial class ",
        };

        private static string? UnsupportedKind(INamedTypeSymbol symbol)
        {
            if (symbol.IsRecord) return "a record";
            if (symbol.TypeKind != TypeKind.Class) return "a " + symbol.TypeKind.ToString().ToLowerInvariant();
            if (symbol.IsStatic) return "static";
            if (symbol.IsAbstract) return "abstract";
            return null;
        }
    }
}
