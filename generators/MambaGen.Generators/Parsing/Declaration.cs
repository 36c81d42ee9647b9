using System.Linq;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Parsing
{
    /// <summary>
    /// A <c>[MambaModel]</c> and/or <c>[SelectiveSsm]</c> class as written, with no symbols or syntax: what kind of
    /// type it is and where, and the named arguments of both attributes with their source positions. The generator
    /// caches on it; <see cref="SpecBuilder"/> turns it into a <see cref="ModelSpec"/> or diagnostics.
    /// </summary>
    /// <param name="Type">Namespace, name, accessibility and enclosing types.</param>
    /// <param name="NameLocation">The class name in its (first) declaration.</param>
    /// <param name="IsPartial">Every declaration of the class carries <c>partial</c>.</param>
    /// <param name="IsGeneric">The class itself has type parameters.</param>
    /// <param name="GenericContainingType">The innermost generic type that encloses the class, if any.</param>
    /// <param name="NonPartialContainingTypes">Enclosing types that lack <c>partial</c>, outermost first.</param>
    /// <param name="UnsupportedKind">Why the class is not an ordinary class (<c>static</c>, <c>abstract</c>, a record), or null.</param>
    /// <param name="Model">The <c>[MambaModel]</c> attribute, or null when absent.</param>
    /// <param name="Ssm">The <c>[SelectiveSsm]</c> attribute, or null when absent.</param>
    internal sealed record Declaration(
        TypeLocation Type,
        LocationInfo? NameLocation,
        bool IsPartial,
        bool IsGeneric,
        string? GenericContainingType,
        EquatableArray<string> NonPartialContainingTypes,
        string? UnsupportedKind,
        AttributeInfo? Model,
        AttributeInfo? Ssm)
    {
        /// <summary>The name to show in messages: enclosing types and the class, dot-separated.</summary>
        public string DisplayName => Type.DisplayName;
    }

    /// <summary>One applied attribute.</summary>
    /// <param name="Location">The attribute in source.</param>
    /// <param name="HasErrors">The compiler could not bind it or one of its arguments (it reports that itself).</param>
    /// <param name="Arguments">Named arguments as given, in source order.</param>
    internal sealed record AttributeInfo(LocationInfo? Location, bool HasErrors, EquatableArray<AttributeArgument> Arguments)
    {
        public AttributeArgument? Find(string name) => Arguments.FirstOrDefault(a => a.Name == name);
    }

    /// <summary>
    /// One named attribute argument. <paramref name="Value"/> is the constant the compiler bound: a boxed
    /// <see cref="int"/>, <see cref="bool"/>, <see cref="double"/>, the enum's underlying <see cref="int"/>, or a
    /// string (null for <c>ConfigFile = null</c>). Boxed primitives compare by value, so the record stays equatable.
    /// </summary>
    internal sealed record AttributeArgument(string Name, object? Value, LocationInfo? Location);
}
