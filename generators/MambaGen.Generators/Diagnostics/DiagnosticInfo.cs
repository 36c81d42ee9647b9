using System;
using System.Linq;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace MambaGen.Generators.Diagnostics
{
    /// <summary>
    /// A source position that compares by value (a <see cref="Location"/> holds its syntax tree, which would keep
    /// whole compilations alive in the incremental cache).
    /// </summary>
    internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
    {
        public static LocationInfo? From(Location? location) =>
            location is null || !location.IsInSource
                ? null
                : new LocationInfo(location.SourceTree!.FilePath, location.SourceSpan, location.GetLineSpan().Span);

        public static LocationInfo? From(SyntaxNode? node) => node is null ? null : From(node.GetLocation());
    }

    /// <summary>
    /// A diagnostic not yet turned into a <see cref="Diagnostic"/>: descriptor, place and message arguments, all
    /// comparing by value, so the parser's results can be cached and shared by the generator and the analyzer.
    /// </summary>
    internal sealed record DiagnosticInfo(DiagnosticDescriptor Descriptor, LocationInfo? Location, EquatableArray<string> Arguments)
    {
        public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments) =>
            new DiagnosticInfo(descriptor, location, new EquatableArray<string>(arguments.Select(a => Format.Value(a))));

        /// <summary>Builds the diagnostic; <paramref name="toLocation"/> maps a stored position back into a syntax tree.</summary>
        public Diagnostic ToDiagnostic(Func<LocationInfo, Location> toLocation) =>
            Diagnostic.Create(
                Descriptor,
                Location is null ? Microsoft.CodeAnalysis.Location.None : toLocation(Location),
                Arguments.Cast<object>().ToArray());
    }
}
