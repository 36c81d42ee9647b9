using System;
using System.Collections.Generic;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// Opens the namespace and enclosing types of a declared model and its <c>partial class</c>, so every generated file
    /// of the model adds to the same type; disposing closes them in reverse order.
    /// </summary>
    internal sealed class TypeScopes : IDisposable
    {
        private readonly List<CodeWriter.BlockScope> _scopes = new List<CodeWriter.BlockScope>();

        private TypeScopes() { }

        /// <summary>Opens the scopes down to the model's class (declared with <paramref name="baseList"/>, if any).</summary>
        public static TypeScopes Open(CodeWriter w, ModelSpec spec, string baseList = "", string? summary = null)
        {
            var scopes = new TypeScopes();
            if (spec.Type.Namespace.Length > 0) scopes._scopes.Add(w.Block("namespace " + spec.Type.Namespace));
            foreach (var enclosing in spec.Type.EnclosingTypes) scopes._scopes.Add(w.Block(enclosing));
            if (summary != null) w.Summary(summary);
            scopes._scopes.Add(w.Block($"{spec.Type.Accessibility} partial class {spec.Type.ClassName}{baseList}"));
            return scopes;
        }

        public void Dispose()
        {
            for (int i = _scopes.Count - 1; i >= 0; i--) _scopes[i].Dispose();
            _scopes.Clear();
        }
    }
}
