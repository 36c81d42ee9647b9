using System;
using System.Collections.Generic;
using System.Linq;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;

namespace MambaGen.Generators.Parsing
{
    /// <summary>
    /// Reads a model <c>config.json</c> in either of the two formats Mamba checkpoints come with:
    /// <list type="bullet">
    /// <item>Hugging Face (<c>model_type: "mamba"</c>): requires <c>hidden_size</c>, <c>num_hidden_layers</c> and
    /// <c>vocab_size</c> (already padded); every other field falls back to transformers' <c>MambaConfig</c> default.</item>
    /// <item>mamba_ssm (no <c>model_type</c>; <c>d_model</c>, <c>n_layer</c>, <c>ssm_cfg</c>): requires <c>d_model</c>,
    /// <c>n_layer</c> and <c>vocab_size</c> (padded up to <c>pad_vocab_size_multiple</c>); other fields fall back to
    /// mamba_ssm's <c>MambaConfig</c> and <c>Mamba</c> defaults.</item>
    /// </list>
    /// Either may carry a <c>mambagen</c> object with the selectivity flags and A's initialisation, which MambaGen's
    /// own <c>Save</c> writes for ablations. Unknown fields are ignored; <c>null</c> counts as absent.
    /// </summary>
    internal static class ConfigReader
    {
        public const string HuggingFace = "Hugging Face";
        public const string MambaSsm = "mamba_ssm";

        /// <summary>
        /// transformers' <c>MambaConfig(use_bias=False)</c>: checked on transformers 5.17, where a config without
        /// <c>use_bias</c> builds a model without in/out projection biases.
        /// </summary>
        public const bool HuggingFaceDefaultUseBias = false;

        private static readonly Dictionary<string, AInitKind> AInitNames = new Dictionary<string, AInitKind>
        {
            ["s4d_real"] = AInitKind.S4DReal,
            ["negative_half"] = AInitKind.NegativeHalf,
            ["random"] = AInitKind.Random,
        };

        /// <param name="path">The AdditionalText's path.</param>
        /// <param name="text">Its text, or null when the compiler could not read it.</param>
        public static ConfigDocument Read(string path, string? text)
        {
            var problems = new List<ConfigProblem>();
            var config = text is null ? Unreadable(problems) : Parse(text, problems);
            return new ConfigDocument(path, problems.Count == 0 ? config : null, new EquatableArray<ConfigProblem>(problems));
        }

        private static ModelConfig? Unreadable(List<ConfigProblem> problems)
        {
            problems.Add(Problem(DiagnosticDescriptors.ConfigFileUnreadable));
            return null;
        }

        private static ModelConfig? Parse(string text, List<ConfigProblem> problems)
        {
            JsonValue root;
            try
            {
                root = JsonParser.Parse(text);
            }
            catch (JsonException e)
            {
                problems.Add(Problem(DiagnosticDescriptors.ConfigFileInvalidJson, e.Reason, e.Line, e.Column));
                return null;
            }
            if (root is not JsonObject fields)
            {
                problems.Add(Problem(DiagnosticDescriptors.ConfigFieldInvalid, "(top level)", "an object", root.Describe()));
                return null;
            }

            var modelType = fields.Get("model_type");
            if (modelType is not null and not JsonNull)
            {
                if (modelType is not JsonString name)
                {
                    problems.Add(Problem(DiagnosticDescriptors.ConfigFieldInvalid, "model_type", "a string", modelType.Describe()));
                    return null;
                }
                if (name.Value != "mamba")
                {
                    problems.Add(Problem(DiagnosticDescriptors.ConfigModelTypeUnsupported, "model_type \"" + name.Value + "\""));
                    return null;
                }
                return ReadHuggingFace(new FieldReader(fields, "", HuggingFace, problems));
            }
            if (fields.Has("d_model") || fields.Has("n_layer") || fields.Has("ssm_cfg"))
                return ReadMambaSsm(new FieldReader(fields, "", MambaSsm, problems), problems);

            problems.Add(Problem(DiagnosticDescriptors.ConfigFieldMissing, "model_type"));
            return null;
        }

        private static ModelConfig? ReadHuggingFace(FieldReader fields)
        {
            var dModel = fields.RequiredInt("hidden_size");
            var layers = fields.RequiredInt("num_hidden_layers");
            var vocab = fields.RequiredInt("vocab_size");
            var dState = fields.IntOr("state_size", 16);
            var expand = fields.IntOr("expand", 2);
            var convKernel = fields.IntOr("conv_kernel", 4);
            var useBias = fields.BoolOr("use_bias", HuggingFaceDefaultUseBias);
            var useConvBias = fields.BoolOr("use_conv_bias", true);
            var epsilon = fields.DoubleOr("layer_norm_epsilon", 1e-5);
            var residualInFp32 = fields.BoolOr("residual_in_fp32", true);
            var tie = fields.BoolOr("tie_word_embeddings", true);
            fields.RequireString("hidden_act", "silu", "\"silu\" (the only activation MambaGen implements)");
            int? bos = fields.TokenId("bos_token_id"), eos = fields.TokenId("eos_token_id"), pad = fields.TokenId("pad_token_id");
            var flags = ReadMambaGenObject(fields);
            if (dModel is null || layers is null || vocab is null || fields.HasProblems) return null;

            var dInner = fields.Int("intermediate_size") is int statedInner
                ? new ConfigValue<int>("intermediate_size", statedInner)
                : new ConfigValue<int>("intermediate_size", Multiply(expand.Value, dModel.Value), " (absent: expand × hidden_size)", Derived: true);
            var dtRank = fields.RankOr("time_step_rank", dModel.Value, "hidden_size");
            var padding = new ConfigValue<int>("vocab_size", 1, " (Hugging Face configs store the vocabulary already padded)");
            if (fields.HasProblems) return null;
            return new ModelConfig(HuggingFace, dModel, layers, vocab, padding, tie, epsilon, residualInFp32,
                dState, expand, dInner, dtRank, convKernel, useConvBias, useBias,
                flags.Delta, flags.B, flags.C, flags.AInit, bos, eos, pad);
        }

        private static ModelConfig? ReadMambaSsm(FieldReader fields, List<ConfigProblem> problems)
        {
            var dModel = fields.RequiredInt("d_model");
            var layers = fields.RequiredInt("n_layer");
            var vocab = fields.RequiredInt("vocab_size");
            var padMultiple = fields.IntOr("pad_vocab_size_multiple", 8);
            var tie = fields.BoolOr("tie_embeddings", true);
            var residualInFp32 = fields.BoolOr("residual_in_fp32", true);
            fields.RequireBool("rms_norm", true, "true (MambaGen implements RMSNorm only)");
            if (fields.Int("d_intermediate") is int mlpWidth && mlpWidth != 0)
                fields.Invalid("d_intermediate", "0 (MambaGen has no MLP sublayer)", "the number " + mlpWidth);
            if (fields.Get("attn_layer_idx") is { } attention && attention is not JsonArray { Items.Count: 0 })
                fields.Invalid("attn_layer_idx", "an empty list (MambaGen has no attention layers)", attention.Describe());
            var flags = ReadMambaGenObject(fields);

            var ssmConfig = fields.Get("ssm_cfg");
            if (ssmConfig is not null and not JsonObject)
            {
                fields.Invalid("ssm_cfg", "an object", ssmConfig.Describe());
                return null;
            }
            var ssm = fields.Nested(ssmConfig as JsonObject ?? new JsonObject(new List<KeyValuePair<string, JsonValue>>()), "ssm_cfg.");
            switch (ssm.Get("layer"))
            {
                case null or JsonString { Value: "Mamba1" }:
                    break;
                case JsonString layer:
                    problems.Add(Problem(DiagnosticDescriptors.ConfigModelTypeUnsupported, "ssm_cfg.layer \"" + layer.Value + "\""));
                    return null;
                case var layer:
                    ssm.Invalid("layer", "\"Mamba1\"", layer.Describe());
                    return null;
            }
            var dState = ssm.IntOr("d_state", 16);
            var convKernel = ssm.IntOr("d_conv", 4);
            var expand = ssm.IntOr("expand", 2);
            var convBias = ssm.BoolOr("conv_bias", true);
            var bias = ssm.BoolOr("bias", false);
            if (dModel is null || layers is null || vocab is null || fields.HasProblems) return null;

            var dInner = new ConfigValue<int>("ssm_cfg.expand", Multiply(expand.Value, dModel.Value), " × d_model", Derived: true);
            var dtRank = ssm.RankOr("dt_rank", dModel.Value, "d_model");
            // mamba_ssm builds its RMSNorms with eps = 1e-5 and has no config field for it.
            var epsilon = new ConfigValue<double>("norm_epsilon", 1e-5, " (mamba_ssm configs have no such field; mamba_ssm uses 1e-5)");
            if (fields.HasProblems) return null;
            return new ModelConfig(MambaSsm, dModel, layers, vocab, padMultiple, tie, epsilon, residualInFp32,
                dState, expand, dInner, dtRank, convKernel, convBias, bias,
                flags.Delta, flags.B, flags.C, flags.AInit, null, null, null);
        }

        private sealed record MambaGenFlags(
            ConfigValue<bool>? Delta, ConfigValue<bool>? B, ConfigValue<bool>? C, ConfigValue<AInitKind>? AInit);

        /// <summary>The optional <c>mambagen</c> object MambaGen's <c>Save</c> writes for variants HF cannot express.</summary>
        private static MambaGenFlags ReadMambaGenObject(FieldReader fields)
        {
            var value = fields.Get("mambagen");
            if (value is null) return new MambaGenFlags(null, null, null, null);
            if (value is not JsonObject mambagen)
            {
                fields.Invalid("mambagen", "an object", value.Describe());
                return new MambaGenFlags(null, null, null, null);
            }
            var flags = fields.Nested(mambagen, "mambagen.");
            ConfigValue<AInitKind>? aInit = null;
            if (flags.Get("a_init") is { } initValue)
            {
                // Spelled as the runtime's MambaConfig.WriteHfConfig writes it (snake_case, like HF's own values).
                if (initValue is JsonString text && AInitNames.TryGetValue(text.Value, out var kind))
                    aInit = new ConfigValue<AInitKind>("mambagen.a_init", kind);
                else
                    flags.Invalid("a_init", "\"s4d_real\", \"negative_half\" or \"random\"", initValue.Describe());
            }
            return new MambaGenFlags(flags.Bool("selective_delta"), flags.Bool("selective_b"), flags.Bool("selective_c"), aInit);
        }

        /// <summary>Above int range the model is rejected as too large anyway, so the product saturates.</summary>
        private static int Multiply(int a, int b) => (int)Math.Max(int.MinValue, Math.Min(int.MaxValue, (long)a * b));

        private static ConfigProblem Problem(DiagnosticDescriptor descriptor, params object[] arguments) =>
            new ConfigProblem(descriptor, new EquatableArray<string>(arguments.Select(a => Format.Value(a))));

        /// <summary>Typed access to one JSON object's fields; records a problem for each wrong or missing one.</summary>
        private sealed class FieldReader
        {
            private readonly JsonObject _fields;
            private readonly string _prefix;
            private readonly string _format;
            private readonly List<ConfigProblem> _problems;

            public FieldReader(JsonObject fields, string prefix, string format, List<ConfigProblem> problems)
            {
                _fields = fields;
                _prefix = prefix;
                _format = format;
                _problems = problems;
            }

            public bool HasProblems => _problems.Count > 0;

            public FieldReader Nested(JsonObject fields, string prefix) => new FieldReader(fields, prefix, _format, _problems);

            /// <summary>The field's value; null when absent or JSON <c>null</c>.</summary>
            public JsonValue? Get(string name) => _fields.Get(name) is { } value and not JsonNull ? value : null;

            public void Invalid(string name, string expected, string actual) =>
                _problems.Add(Problem(DiagnosticDescriptors.ConfigFieldInvalid, _prefix + name, expected, actual));

            public int? Int(string name)
            {
                var value = Get(name);
                if (value is null) return null;
                if (value is JsonNumber number && number.AsInt() is int whole) return whole;
                Invalid(name, "an integer", value.Describe());
                return null;
            }

            public ConfigValue<bool>? Bool(string name)
            {
                var value = Get(name);
                if (value is null) return null;
                if (value is JsonBool flag) return new ConfigValue<bool>(_prefix + name, flag.Value);
                Invalid(name, "true or false", value.Describe());
                return null;
            }

            public ConfigValue<int>? RequiredInt(string name)
            {
                if (Get(name) is null)
                {
                    _problems.Add(Problem(DiagnosticDescriptors.ConfigFieldMissing, _prefix + name));
                    return null;
                }
                return Int(name) is int value ? new ConfigValue<int>(_prefix + name, value) : null;
            }

            public ConfigValue<int> IntOr(string name, int fallback) =>
                Int(name) is int value ? new ConfigValue<int>(_prefix + name, value) : Default(name, fallback);

            public ConfigValue<bool> BoolOr(string name, bool fallback) => Bool(name) ?? Default(name, fallback);

            public ConfigValue<double> DoubleOr(string name, double fallback)
            {
                var value = Get(name);
                if (value is null) return Default(name, fallback);
                if (value is JsonNumber number) return new ConfigValue<double>(_prefix + name, number.Value);
                Invalid(name, "a number", value.Describe());
                return Default(name, fallback);
            }

            /// <summary>A Δ rank: an integer, or "auto" (also when absent) meaning ceil(width / 16).</summary>
            public ConfigValue<int> RankOr(string name, int width, string widthName)
            {
                var value = Get(name);
                if (value is JsonNumber number && number.AsInt() is int rank) return new ConfigValue<int>(_prefix + name, rank);
                if (value is not null and not JsonString { Value: "auto" })
                    Invalid(name, "an integer or \"auto\"", value.Describe());
                int auto = (int)(((long)width + 15) / 16);
                var note = value is null ? $" (absent: ceil({widthName} / 16))" : $" (\"auto\" = ceil({widthName} / 16))";
                return new ConfigValue<int>(_prefix + name, auto, note, Derived: true);
            }

            /// <summary>A special token id: an integer, null, or (HF's eos) a list whose first entry is used.</summary>
            public int? TokenId(string name)
            {
                var value = Get(name);
                if (value is null) return null;
                if (value is JsonNumber number && number.AsInt() is int id) return id;
                if (value is JsonArray { Items.Count: > 0 } list && list.Items[0] is JsonNumber first && first.AsInt() is int firstId) return firstId;
                Invalid(name, "an integer, a list of integers or null", value.Describe());
                return null;
            }

            /// <summary>Checks a field that MambaGen supports with one value only.</summary>
            public void RequireString(string name, string supported, string expected)
            {
                var value = Get(name);
                if (value is not null && !(value is JsonString text && text.Value == supported)) Invalid(name, expected, value.Describe());
            }

            public void RequireBool(string name, bool supported, string expected)
            {
                var value = Bool(name);
                if (value is not null && value.Value != supported) Invalid(name, expected, Format.Value(value.Value));
            }

            private ConfigValue<T> Default<T>(string name, T fallback) =>
                new ConfigValue<T>(_prefix + name, fallback, $" (absent: the {_format} default)");
        }
    }
}
