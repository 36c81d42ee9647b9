using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using MambaGen.Generators.Spec;

namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// Renders one variant's CUDA C: the model's constants as <c>#define</c>s, then every kernel template of
    /// <c>templates/</c> (embedded in this assembly) in a fixed order, the shared header first. Each template guards
    /// its defaults with <c>#ifndef</c>, so the defines below are what the kernels are compiled with. The result is one
    /// translation unit NVRTC compiles at run time; nothing in it includes a toolkit header.
    /// </summary>
    internal static class CudaSourceEmitter
    {
        private const string ResourcePrefix = "MambaGen.Templates.";

        /// <summary>The shared header: helpers every kernel template uses, so it comes first.</summary>
        private const string CommonHeader = "common.cuh";

        /// <summary>The model facts the templates read, by macro name. The contract is documented in templates/README.md.</summary>
        internal static IReadOnlyList<KeyValuePair<string, string>> Defines(ModelSpec s) => new[]
        {
            Define("MAMBA_D_MODEL", s.DModel),
            Define("MAMBA_D_INNER", s.DInner),
            Define("MAMBA_D_STATE", s.DState),
            Define("MAMBA_DT_RANK", s.DtRank),
            Define("MAMBA_CONV_K", s.ConvKernel),
            Define("MAMBA_VOCAB", s.Vocab),
            Define("MAMBA_SELECTIVE_DELTA", s.SelectiveDelta),
            Define("MAMBA_SELECTIVE_B", s.SelectiveB),
            Define("MAMBA_SELECTIVE_C", s.SelectiveC),
            Define("MAMBA_HAS_CONV_BIAS", s.ConvBias),
            Define("MAMBA_HAS_Z", true),
            new KeyValuePair<string, string>("MAMBA_NORM_EPS", ((float)s.NormEpsilon).ToString("R", CultureInfo.InvariantCulture) + "f"),
        };

        private static KeyValuePair<string, string> Define(string name, int value) =>
            new KeyValuePair<string, string>(name, value.ToString(CultureInfo.InvariantCulture));

        private static KeyValuePair<string, string> Define(string name, bool value) =>
            new KeyValuePair<string, string>(name, value ? "1" : "0");

        /// <summary>The complete CUDA C translation unit of the variant.</summary>
        public static string Render(ModelSpec spec)
        {
            var text = new StringBuilder();
            text.Append("// CUDA C kernels of ").Append(spec.Type.HintName).Append(", rendered by MambaGen from templates/.\n");
            text.Append("// The model's constants, baked in:\n");
            foreach (var define in Defines(spec))
                text.Append("#define ").Append(define.Key).Append(' ').Append(define.Value).Append('\n');
            foreach (var template in Templates)
            {
                text.Append("\n// ─── templates/").Append(template.Name).Append(" ───\n");
                text.Append(template.Text);
                if (!template.Text.EndsWith("\n", System.StringComparison.Ordinal)) text.Append('\n');
            }
            return text.ToString();
        }

        private sealed class Template
        {
            public Template(string name, string text)
            {
                Name = name;
                Text = text;
            }

            public string Name { get; }
            public string Text { get; }
        }

        /// <summary>Every embedded template, the shared header first, the rest by name; read once per process.</summary>
        private static readonly Template[] Templates = ReadTemplates();

        private static Template[] ReadTemplates()
        {
            var assembly = typeof(CudaSourceEmitter).Assembly;
            return assembly.GetManifestResourceNames()
                .Where(name => name.StartsWith(ResourcePrefix, System.StringComparison.Ordinal))
                .Select(name => name.Substring(ResourcePrefix.Length))
                .OrderBy(name => name == CommonHeader ? 0 : 1)
                .ThenBy(name => name, System.StringComparer.Ordinal)
                .Select(name =>
                {
                    using var stream = assembly.GetManifestResourceStream(ResourcePrefix + name)!;
                    using var reader = new StreamReader(stream, Encoding.UTF8);
                    return new Template(name, reader.ReadToEnd().Replace("\r\n", "\n"));
                })
                .ToArray();
        }
    }
}
