using System;
using System.Collections.Generic;
using System.Linq;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using HfField = MambaGen.Checkpoints.ConfigSchema.HuggingFace;
using MambaGenField = MambaGen.Checkpoints.ConfigSchema.MambaGenObject;
using SsmField = MambaGen.Checkpoints.ConfigSchema.MambaSsm;

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

        private static readonly Dictionary<string, AInitKind> AInitNames = new Dictionary<string, AInitKind>
        {
            [MambaGenField.AInitS4DReal] = AInitKind.S4DReal,
            [MambaGenField.AInitNegativeHalf] = AInitKind.NegativeHalf,
            [MambaGenField.AInitRandom] = AInitKind.Random,
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

            var modelType = fields.Get(HfField.ModelTypeField);
            if (modelType is not null and not JsonNull)
            {
                if (modelType is not JsonString name)
                {
                    problems.Add(Problem(DiagnosticDescriptors.ConfigFieldInvalid, HfField.ModelTypeField, "a string", modelType.Describe()));
                    return null;
                }
                if (name.Value != HfField.ModelType)
                {
                    problems.Add(Problem(DiagnosticDescriptors.ConfigModelTypeUnsupported, HfField.ModelTypeField + " \"" + name.Value + "\""));
                    return null;
                }
                return ReadHuggingFace(new FieldReader(fields, "", HuggingFace, problems));
            }
            if (fields.Has(SsmField.DModel) || fields.Has(SsmField.Layers) || fields.Has(SsmField.SsmConfig))
                return ReadMambaSsm(new FieldReader(fields, "", MambaSsm, problems), problems);

            problems.Add(Problem(DiagnosticDescriptors.ConfigFieldMissing, HfField.ModelTypeField));
            return null;
        }

        private static ModelConfig? ReadHuggingFace(FieldReader fields)
        {
            var dModel = fields.RequiredInt(HfField.HiddenSize);
            var layers = fields.RequiredInt(HfField.Layers);
            var vocab = fields.RequiredInt(HfField.VocabSize);
            var dState = fields.IntOr(HfField.StateSize, HfField.DefaultStateSize);
            var expand = fields.IntOr(HfField.Expand, HfField.DefaultExpand);
            var convKernel = fields.IntOr(HfField.ConvKernel, HfField.DefaultConvKernel);
            var useBias = fields.BoolOr(HfField.UseBias, HfField.DefaultUseBias);
            var useConvBias = fields.BoolOr(HfField.UseConvBias, HfField.DefaultUseConvBias);
            var epsilon = fields.DoubleOr(HfField.LayerNormEpsilon, HfField.DefaultLayerNormEpsilon);
            var residualInFp32 = fields.BoolOr(HfField.ResidualInFp32, HfField.DefaultResidualInFp32);
            var tie = fields.BoolOr(HfField.TieWordEmbeddings, HfField.DefaultTieWordEmbeddings);
            fields.RequireString(HfField.HiddenAct, HfField.Activation, "\"" + HfField.Activation + "\" (the only activation MambaGen implements)");
            int? bos = fields.TokenId(HfField.BosTokenId), eos = fields.TokenId(HfField.EosTokenId), pad = fields.TokenId(HfField.PadTokenId);
            var flags = ReadMambaGenObject(fields);
            if (dModel is null || layers is null || vocab is null || fields.HasProblems) return null;

            var dInner = fields.Int(HfField.IntermediateSize) is int statedInner
                ? new ConfigValue<int>(HfField.IntermediateSize, statedInner)
                : new ConfigValue<int>(HfField.IntermediateSize, Multiply(expand.Value, dModel.Value), " (absent: expand × hidden_size)", Derived: true);
            var dtRank = fields.RankOr(HfField.TimeStepRank, dModel.Value, HfField.HiddenSize);
            var padding = new ConfigValue<int>(HfField.VocabSize, 1, " (Hugging Face configs store the vocabulary already padded)");
            if (fields.HasProblems) return null;
            return new ModelConfig(HuggingFace, dModel, layers, vocab, padding, tie, epsilon, residualInFp32,
                dState, expand, dInner, dtRank, convKernel, useConvBias, useBias,
                flags.Delta, flags.B, flags.C, flags.AInit, bos, eos, pad);
        }

        private static ModelConfig? ReadMambaSsm(FieldReader fields, List<ConfigProblem> problems)
        {
            var dModel = fields.RequiredInt(SsmField.DModel);
            var layers = fields.RequiredInt(SsmField.Layers);
            var vocab = fields.RequiredInt(SsmField.VocabSize);
            var padMultiple = fields.IntOr(SsmField.PadVocabSizeMultiple, SsmField.DefaultPadVocabSizeMultiple);
            var tie = fields.BoolOr(SsmField.TieEmbeddings, SsmField.DefaultTieEmbeddings);
            var residualInFp32 = fields.BoolOr(SsmField.ResidualInFp32, SsmField.DefaultResidualInFp32);
            fields.RequireBool(SsmField.RmsNorm, true, "true (MambaGen implements RMSNorm only)");
            if (fields.Int(SsmField.DIntermediate) is int mlpWidth && mlpWidth != 0)
                fields.Invalid(SsmField.DIntermediate, "0 (MambaGen has no MLP sublayer)", "the number " + mlpWidth);
            if (fields.Get(SsmField.AttentionLayers) is { } attention && attention is not JsonArray { Items.Count: 0 })
                fields.Invalid(SsmField.AttentionLayers, "an empty list (MambaGen has no attention layers)", attention.Describe());
            var flags = ReadMambaGenObject(fields);

            var ssmConfig = fields.Get(SsmField.SsmConfig);
            if (ssmConfig is not null and not JsonObject)
            {
                fields.Invalid(SsmField.SsmConfig, "an object", ssmConfig.Describe());
                return null;
            }
            var ssm = fields.Nested(ssmConfig as JsonObject ?? new JsonObject(new List<KeyValuePair<string, JsonValue>>()), SsmField.SsmConfig + ".");
            switch (ssm.Get(SsmField.Layer))
            {
                case null or JsonString { Value: SsmField.Mamba1 }:
                    break;
                case JsonString layer:
                    problems.Add(Problem(DiagnosticDescriptors.ConfigModelTypeUnsupported, SsmField.SsmConfig + "." + SsmField.Layer + " \"" + layer.Value + "\""));
                    return null;
                case var layer:
                    ssm.Invalid(SsmField.Layer, "\"" + SsmField.Mamba1 + "\"", layer.Describe());
                    return null;
            }
            var dState = ssm.IntOr(SsmField.DState, SsmField.DefaultDState);
            var convKernel = ssm.IntOr(SsmField.DConv, SsmField.DefaultDConv);
            var expand = ssm.IntOr(SsmField.Expand, SsmField.DefaultExpand);
            var convBias = ssm.BoolOr(SsmField.ConvBias, SsmField.DefaultConvBias);
            var bias = ssm.BoolOr(SsmField.Bias, SsmField.DefaultBias);
            if (dModel is null || layers is null || vocab is null || fields.HasProblems) return null;

            var dInner = new ConfigValue<int>(SsmField.SsmConfig + "." + SsmField.Expand, Multiply(expand.Value, dModel.Value), " × d_model", Derived: true);
            var dtRank = ssm.RankOr(SsmField.DtRank, dModel.Value, SsmField.DModel);
            var epsilon = new ConfigValue<double>("norm_epsilon", SsmField.NormEpsilon, " (mamba_ssm configs have no such field; mamba_ssm uses 1e-5)");
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
            var value = fields.Get(MambaGenField.Name);
            if (value is null) return new MambaGenFlags(null, null, null, null);
            if (value is not JsonObject mambagen)
            {
                fields.Invalid(MambaGenField.Name, "an object", value.Describe());
                return new MambaGenFlags(null, null, null, null);
            }
            var flags = fields.Nested(mambagen, MambaGenField.Name + ".");
            ConfigValue<AInitKind>? aInit = null;
            if (flags.Get(MambaGenField.AInit) is { } initValue)
            {
                // Spelled as the runtime's MambaConfig.WriteHfConfig writes it (snake_case, like HF's own values).
                if (initValue is JsonString text && AInitNames.TryGetValue(text.Value, out var kind))
                    aInit = new ConfigValue<AInitKind>(MambaGenField.Name + "." + MambaGenField.AInit, kind);
                else
                    flags.Invalid(MambaGenField.AInit, "\"" + MambaGenField.AInitS4DReal + "\", \"" + MambaGenField.AInitNegativeHalf + "\" or \"" + MambaGenField.AInitRandom + "\"", initValue.Describe());
            }
            return new MambaGenFlags(flags.Bool(MambaGenField.SelectiveDelta), flags.Bool(MambaGenField.SelectiveB), flags.Bool(MambaGenField.SelectiveC), aInit);
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
                if (value is not null and not JsonString { Value: HfField.AutoRank })
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
