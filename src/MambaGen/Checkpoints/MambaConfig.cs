using System.Globalization;
using System.Text.Json;
using System.Text.Unicode;
using HfField = MambaGen.Checkpoints.ConfigSchema.HuggingFace;
using MambaGenField = MambaGen.Checkpoints.ConfigSchema.MambaGenObject;
using SsmField = MambaGen.Checkpoints.ConfigSchema.MambaSsm;

namespace MambaGen.Checkpoints;

/// <summary>
/// Reads and writes a model's <c>config.json</c>. Two formats are read:
/// <list type="bullet">
/// <item>Hugging Face (<c>"model_type": "mamba"</c>), with HF's defaults for absent fields (note <c>use_bias</c>
/// defaults to <b>false</b>: transformers 5.17's <c>MambaConfig</c> declares <c>use_bias=False</c>, checked on the
/// GPU machine, and the generator's config reader uses the same default) and unknown keys ignored, plus MambaGen's optional <c>"mambagen"</c> object
/// (<c>selective_delta</c>, <c>selective_b</c>, <c>selective_c</c>: booleans, default true; <c>a_init</c>:
/// <c>"s4d_real"</c> (default), <c>"negative_half"</c> or <c>"random"</c>) for variants HF cannot express;</item>
/// <item>mamba_ssm (no <c>model_type</c>; <c>d_model</c>, <c>n_layer</c>, <c>vocab_size</c> padded up to
/// <c>pad_vocab_size_multiple</c> (default 8), <c>tie_embeddings</c>, <c>ssm_cfg</c>).</item>
/// </list>
/// Only the Hugging Face format is written.
/// </summary>
public static class MambaConfig
{
    /// <summary>Reads either format into a shape; throws <see cref="CheckpointException"/> naming the file and field on bad input.</summary>
    public static MambaShape ReadShape(string configPath) => Read(configPath).Shape;

    /// <summary>
    /// Writes <paramref name="shape"/> as a Hugging Face config.json, atomically. Always written: the sizes,
    /// <c>use_bias</c>, <c>use_conv_bias</c>, <c>intermediate_size</c>, <c>time_step_rank</c>,
    /// <c>tie_word_embeddings</c>, the token ids that are set, and the <c>"mambagen"</c> object (HF ignores it).
    /// <c>architectures</c> is written only for variants HF can load.
    /// </summary>
    public static void WriteHfConfig(string path, MambaShape shape)
    {
        shape.Validate();
        AtomicFile.Write(path, stream =>
        {
            using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteString(HfField.ModelTypeField, HfField.ModelType);
            if (shape.IsHuggingFaceCompatible)
            {
                json.WriteStartArray(HfField.Architectures);
                json.WriteStringValue("MambaForCausalLM");
                json.WriteEndArray();
            }
            json.WriteNumber(HfField.HiddenSize, shape.DModel);
            json.WriteNumber(HfField.IntermediateSize, shape.DInner);
            json.WriteNumber(HfField.StateSize, shape.DState);
            json.WriteNumber(HfField.Layers, shape.Layers);
            json.WriteNumber(HfField.VocabSize, shape.Vocab);
            json.WriteNumber(HfField.Expand, shape.Expand);
            json.WriteNumber(HfField.ConvKernel, shape.ConvKernel);
            json.WriteNumber(HfField.TimeStepRank, shape.DtRank);
            json.WriteBoolean(HfField.UseBias, shape.ProjBias);
            json.WriteBoolean(HfField.UseConvBias, shape.ConvBias);
            json.WriteString(HfField.HiddenAct, HfField.Activation);
            json.WriteNumber(HfField.LayerNormEpsilon, shape.NormEpsilon);
            json.WriteBoolean(HfField.ResidualInFp32, shape.ResidualInFp32);
            json.WriteBoolean(HfField.TieWordEmbeddings, shape.TieEmbeddings);
            if (shape.BosTokenId is int bos) json.WriteNumber(HfField.BosTokenId, bos);
            if (shape.EosTokenId is int eos) json.WriteNumber(HfField.EosTokenId, eos);
            if (shape.PadTokenId is int pad) json.WriteNumber(HfField.PadTokenId, pad);
            json.WriteStartObject(MambaGenField.Name);
            json.WriteBoolean(MambaGenField.SelectiveDelta, shape.SelectiveDelta);
            json.WriteBoolean(MambaGenField.SelectiveB, shape.SelectiveB);
            json.WriteBoolean(MambaGenField.SelectiveC, shape.SelectiveC);
            json.WriteString(MambaGenField.AInit, AInitName(shape.AInit));
            json.WriteEndObject();
            json.WriteEndObject();
        });
    }

    /// <summary>Reads <paramref name="configPath"/>, keeping for each shape property a phrase saying where its value came from.</summary>
    internal static ParsedConfig Read(string configPath)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(configPath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CheckpointException($"{configPath}: the config file does not exist.", e);
        }
        return Parse(bytes, configPath);
    }

    internal static ParsedConfig Parse(ReadOnlyMemory<byte> json, string source)
    {
        // The JSON reader leaves strings unvalidated until they are read, so check the encoding up front.
        if (!Utf8.IsValid(json.Span))
            throw new CheckpointException($"{source}: not valid UTF-8.");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{source}: not valid JSON ({e.Message}).", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{source}: the config must be a JSON object but is a JSON {document.RootElement.ValueKind}.");
            var root = new ConfigObject(source, document.RootElement, prefix: "");
            string? modelType = root.String(HfField.ModelTypeField);
            if (modelType is not null)
            {
                return modelType == HfField.ModelType
                    ? ReadHuggingFace(root)
                    : throw new CheckpointException($"{source}: model_type is \"{modelType}\" but only \"mamba\" (Mamba-1) configs are supported.");
            }
            if (root.Has(SsmField.DModel)) return ReadMambaSsm(root);
            throw new CheckpointException(
                $"{source}: neither a Hugging Face Mamba config (no \"model_type\": \"mamba\") nor a mamba_ssm config (no \"d_model\").");
        }
    }

    private static ParsedConfig ReadHuggingFace(ConfigObject config)
    {
        string? activation = config.String(HfField.HiddenAct);
        if (activation is not null && activation != HfField.Activation)
            throw new CheckpointException($"{config.Source}: hidden_act is \"{activation}\" but Mamba blocks here use \"silu\".");

        var origin = config.Origins;
        int dModel = config.RequiredInt(HfField.HiddenSize, nameof(MambaShape.DModel));
        int expand = config.Int(HfField.Expand, nameof(MambaShape.Expand), HfField.DefaultExpand);
        int dInner;
        if (config.Has(HfField.IntermediateSize))
        {
            dInner = config.RequiredInt(HfField.IntermediateSize, nameof(MambaShape.DInner));
        }
        else
        {
            // HF derives it the same way when the key is missing.
            dInner = checked(expand * dModel);
            origin[nameof(MambaShape.DInner)] = $"intermediate_size is absent, read as expand × hidden_size = {dInner}";
        }

        var ablation = config.Object(MambaGenField.Name) ?? ConfigObject.Absent(config.Source, MambaGenField.Name + ".", origin);
        var shape = new MambaShape
        {
            DModel = dModel,
            Layers = config.RequiredInt(HfField.Layers, nameof(MambaShape.Layers)),
            Vocab = config.RequiredInt(HfField.VocabSize, nameof(MambaShape.Vocab)),
            DState = config.Int(HfField.StateSize, nameof(MambaShape.DState), HfField.DefaultStateSize),
            Expand = expand,
            DInner = dInner,
            DtRank = config.DtRank(HfField.TimeStepRank, dModel),
            ConvKernel = config.Int(HfField.ConvKernel, nameof(MambaShape.ConvKernel), HfField.DefaultConvKernel),
            ProjBias = config.Bool(HfField.UseBias, nameof(MambaShape.ProjBias), HfField.DefaultUseBias),
            ConvBias = config.Bool(HfField.UseConvBias, nameof(MambaShape.ConvBias), HfField.DefaultUseConvBias),
            NormEpsilon = config.Float(HfField.LayerNormEpsilon, nameof(MambaShape.NormEpsilon), (float)HfField.DefaultLayerNormEpsilon),
            ResidualInFp32 = config.Bool(HfField.ResidualInFp32, nameof(MambaShape.ResidualInFp32), HfField.DefaultResidualInFp32),
            TieEmbeddings = config.Bool(HfField.TieWordEmbeddings, nameof(MambaShape.TieEmbeddings), HfField.DefaultTieWordEmbeddings),
            BosTokenId = config.OptionalInt(HfField.BosTokenId),
            EosTokenId = config.OptionalInt(HfField.EosTokenId),
            PadTokenId = config.OptionalInt(HfField.PadTokenId),
            SelectiveDelta = ablation.Bool(MambaGenField.SelectiveDelta, nameof(MambaShape.SelectiveDelta), MambaGenField.DefaultSelective),
            SelectiveB = ablation.Bool(MambaGenField.SelectiveB, nameof(MambaShape.SelectiveB), MambaGenField.DefaultSelective),
            SelectiveC = ablation.Bool(MambaGenField.SelectiveC, nameof(MambaShape.SelectiveC), MambaGenField.DefaultSelective),
            AInit = ablation.ReadAInit(MambaGenField.AInit, nameof(MambaShape.AInit)),
        };
        return Validated(config, shape);
    }

    private static ParsedConfig ReadMambaSsm(ConfigObject config)
    {
        if (config.Has(SsmField.DIntermediate) && config.RequiredInt(SsmField.DIntermediate, SsmField.DIntermediate) != 0)
            throw new CheckpointException($"{config.Source}: d_intermediate is not 0; MLP blocks between mixers are not supported.");
        if (config.HasNonEmptyArray(SsmField.AttentionLayers))
            throw new CheckpointException($"{config.Source}: attn_layer_idx is not empty; attention layers are not supported.");
        if (!config.Bool(SsmField.RmsNorm, SsmField.RmsNorm, true))
            throw new CheckpointException($"{config.Source}: rms_norm is false; only RMSNorm models are supported.");

        var origin = config.Origins;
        var ssm = config.Object(SsmField.SsmConfig) ?? ConfigObject.Absent(config.Source, SsmField.SsmConfig + ".", origin);
        string? layer = ssm.String(SsmField.Layer);
        if (layer is not null && layer != SsmField.Mamba1)
            throw new CheckpointException($"{config.Source}: ssm_cfg.layer is \"{layer}\" but only \"Mamba1\" is supported.");

        int dModel = config.RequiredInt(SsmField.DModel, nameof(MambaShape.DModel));
        int expand = ssm.Int(SsmField.Expand, nameof(MambaShape.Expand), SsmField.DefaultExpand);
        int dInner = checked(expand * dModel);
        origin[nameof(MambaShape.DInner)] = $"the inner width is ssm_cfg.expand × d_model = {dInner}";

        int rawVocab = config.RequiredInt(SsmField.VocabSize, SsmField.VocabSize);
        int multiple = config.Int(SsmField.PadVocabSizeMultiple, SsmField.PadVocabSizeMultiple, SsmField.DefaultPadVocabSizeMultiple);
        if (multiple < 1)
            throw new CheckpointException($"{config.Source}: pad_vocab_size_multiple is {multiple}; it must be at least 1.");
        int vocab = checked((rawVocab + multiple - 1) / multiple * multiple);
        origin[nameof(MambaShape.Vocab)] = $"vocab_size is {rawVocab}, padded to a multiple of {multiple}: {vocab}";

        const string NotInFormat = "mamba_ssm configs have no selectivity flags (always selective)";
        origin[nameof(MambaShape.SelectiveDelta)] = origin[nameof(MambaShape.SelectiveB)] = origin[nameof(MambaShape.SelectiveC)] = NotInFormat;
        origin[nameof(MambaShape.NormEpsilon)] = "mamba_ssm configs carry no norm epsilon (it is 1e-05)";
        var shape = new MambaShape
        {
            DModel = dModel,
            Layers = config.RequiredInt(SsmField.Layers, nameof(MambaShape.Layers)),
            Vocab = vocab,
            DState = ssm.Int(SsmField.DState, nameof(MambaShape.DState), SsmField.DefaultDState),
            Expand = expand,
            DInner = dInner,
            DtRank = ssm.DtRank(SsmField.DtRank, dModel),
            ConvKernel = ssm.Int(SsmField.DConv, nameof(MambaShape.ConvKernel), SsmField.DefaultDConv),
            ConvBias = ssm.Bool(SsmField.ConvBias, nameof(MambaShape.ConvBias), SsmField.DefaultConvBias),
            ProjBias = ssm.Bool(SsmField.Bias, nameof(MambaShape.ProjBias), SsmField.DefaultBias),
            ResidualInFp32 = config.Bool(SsmField.ResidualInFp32, nameof(MambaShape.ResidualInFp32), SsmField.DefaultResidualInFp32),
            TieEmbeddings = config.Bool(SsmField.TieEmbeddings, nameof(MambaShape.TieEmbeddings), SsmField.DefaultTieEmbeddings),
            NormEpsilon = (float)SsmField.NormEpsilon,
        };
        return Validated(config, shape);
    }

    private static ParsedConfig Validated(ConfigObject config, MambaShape shape)
    {
        try
        {
            shape.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            string origin = e.ParamName is not null && config.Origins.TryGetValue(e.ParamName, out var text) ? text : "a value";
            string rule = e.Message.Split('(', '\n')[0].Trim();
            throw new CheckpointException($"{config.Source}: {origin}, but {rule}", e);
        }
        return new ParsedConfig(shape, config.Origins);
    }

    internal static string AInitName(AInit init) => init switch
    {
        AInit.S4DReal => MambaGenField.AInitS4DReal,
        AInit.NegativeHalf => MambaGenField.AInitNegativeHalf,
        AInit.Random => MambaGenField.AInitRandom,
        _ => throw new ArgumentOutOfRangeException(nameof(init), init, "Unknown A initialisation."),
    };

    internal static string FormatValue(object? value) => value switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>
    /// One JSON object of the config, read field by field. Every read records in <see cref="Origins"/>, under the
    /// shape property it feeds, a phrase such as <c>state_size is 12</c> or <c>use_bias is absent, read as true</c>,
    /// so a later mismatch can say exactly what the file said.
    /// </summary>
    private sealed class ConfigObject(string source, JsonElement? element, string prefix, Dictionary<string, string>? origins = null)
    {
        public string Source => source;
        public Dictionary<string, string> Origins { get; } = origins ?? new(StringComparer.Ordinal);

        /// <summary>A missing sub-object: every field reads as absent.</summary>
        public static ConfigObject Absent(string source, string prefix, Dictionary<string, string> origins) =>
            new(source, null, prefix, origins);

        public bool Has(string name) => TryGet(name, out _);

        public ConfigObject? Object(string name)
        {
            if (!TryGet(name, out var value)) return null;
            if (value.ValueKind != JsonValueKind.Object) throw Invalid(name, value, "a JSON object");
            return new ConfigObject(source, value, $"{prefix}{name}.", Origins);
        }

        public string? String(string name)
        {
            if (!TryGet(name, out var value)) return null;
            return value.ValueKind == JsonValueKind.String ? value.GetString() : throw Invalid(name, value, "a string");
        }

        public bool HasNonEmptyArray(string name)
        {
            if (!TryGet(name, out var value)) return false;
            return value.ValueKind == JsonValueKind.Array ? value.GetArrayLength() > 0 : throw Invalid(name, value, "an array");
        }

        public int RequiredInt(string name, string property)
        {
            if (!TryGet(name, out var value)) throw new CheckpointException($"{source}: required field {prefix}{name} is missing.");
            return Record(property, name, ToInt(name, value));
        }

        public int Int(string name, string property, int fallback) =>
            TryGet(name, out var value) ? Record(property, name, ToInt(name, value)) : RecordAbsent(property, name, fallback);

        public int? OptionalInt(string name) => TryGet(name, out var value) ? ToInt(name, value) : null;

        public bool Bool(string name, string property, bool fallback)
        {
            if (!TryGet(name, out var value)) return RecordAbsent(property, name, fallback);
            return value.ValueKind switch
            {
                JsonValueKind.True => Record(property, name, true),
                JsonValueKind.False => Record(property, name, false),
                _ => throw Invalid(name, value, "true or false"),
            };
        }

        public float Float(string name, string property, float fallback)
        {
            if (!TryGet(name, out var value)) return RecordAbsent(property, name, fallback);
            if (value.ValueKind != JsonValueKind.Number) throw Invalid(name, value, "a number");
            return Record(property, name, (float)value.GetDouble());
        }

        /// <summary>A Δ rank: an integer, or "auto" (or absent) meaning ceil(d_model / 16) as HF and mamba_ssm define it.</summary>
        public int DtRank(string name, int dModel)
        {
            int auto = (dModel + 15) / 16;
            const string Property = nameof(MambaShape.DtRank);
            if (!TryGet(name, out var value))
            {
                Origins[Property] = $"{prefix}{name} is absent, read as \"auto\" = ceil({dModel} / 16) = {auto}";
                return auto;
            }
            if (value.ValueKind == JsonValueKind.String && value.GetString() == HfField.AutoRank)
            {
                Origins[Property] = $"{prefix}{name} is \"auto\" = ceil({dModel} / 16) = {auto}";
                return auto;
            }
            if (value.ValueKind != JsonValueKind.Number) throw Invalid(name, value, "an integer or \"auto\"");
            return Record(Property, name, ToInt(name, value));
        }

        public AInit ReadAInit(string name, string property)
        {
            if (!TryGet(name, out var value)) return RecordAbsent(property, name, AInit.S4DReal);
            foreach (var init in Enum.GetValues<AInit>())
            {
                if (value.ValueKind == JsonValueKind.String && value.GetString() == AInitName(init))
                    return Record(property, name, init);
            }
            throw Invalid(name, value, $"\"{MambaGenField.AInitS4DReal}\", \"{MambaGenField.AInitNegativeHalf}\" or \"{MambaGenField.AInitRandom}\"");
        }

        private bool TryGet(string name, out JsonElement value)
        {
            // A JSON null reads as absent, as HF's from_dict treats it for optional ids.
            if (element is JsonElement obj && obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null) return true;
            value = default;
            return false;
        }

        private int ToInt(string name, JsonElement value) =>
            value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int result) ? result : throw Invalid(name, value, "an integer");

        private T Record<T>(string property, string name, T value)
        {
            Origins[property] = $"{prefix}{name} is {FormatValue(value)}";
            return value;
        }

        private T RecordAbsent<T>(string property, string name, T value)
        {
            Origins[property] = $"{prefix}{name} is absent, read as {FormatValue(value)}";
            return value;
        }

        private CheckpointException Invalid(string name, JsonElement value, string expected) =>
            new($"{source}: {prefix}{name} must be {expected} but is {value.GetRawText()}.");
    }
}

/// <summary>A config's shape plus, per <see cref="MambaShape"/> property, a phrase saying what the file said (for mismatch messages).</summary>
internal sealed record ParsedConfig(MambaShape Shape, IReadOnlyDictionary<string, string> Origins);
