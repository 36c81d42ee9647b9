namespace MambaGen.Checkpoints;

/// <summary>
/// Loads and saves a model directory in the Hugging Face layout: <c>config.json</c> + <c>model.safetensors</c>.
/// Loading checks everything against the shape the model type was generated with, so a checkpoint of another
/// variant fails with a message naming the field or key instead of producing wrong numbers.
/// </summary>
public static class MambaCheckpoint
{
    /// <summary>The architecture and special token ids, in Hugging Face <c>MambaConfig</c> form.</summary>
    public const string ConfigFileName = "config.json";
    /// <summary>The parameters, keyed as Hugging Face <c>MambaForCausalLM</c> keys them.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>mamba_ssm's spelling of the embedding key, accepted as an alias of <see cref="ParameterLayout.EmbeddingKey"/>.</summary>
    public const string MambaSsmEmbeddingKey = "backbone.embedding.weight";

    private const string PickledWeightsFileName = "pytorch_model.bin";
    private const int MaxKeysListed = 8;

    /// <summary>
    /// Reads <c>dir/config.json</c> (HF or mamba_ssm format) and <c>dir/model.safetensors</c> (F32, F16 or BF16) into
    /// parameters laid out for <paramref name="expected"/>. Every architectural field of the config must equal
    /// <paramref name="expected"/>'s; every parameter key must be present with its exact shape and no other keys
    /// may appear (a tied checkpoint's <c>lm_head.weight</c>, which mamba_ssm keeps, is ignored). The returned
    /// parameters' shape carries the config's bos/eos/pad token ids where it has them.
    /// </summary>
    public static MambaParameters Load(string dir, MambaShape expected)
    {
        if (!Directory.Exists(dir))
            throw new CheckpointException($"{dir}: the checkpoint directory does not exist.");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath))
            throw new CheckpointException($"{dir}: there is no {ConfigFileName} (a checkpoint directory holds {ConfigFileName} and {WeightsFileName}).");

        var config = MambaConfig.Read(configPath);
        CheckArchitecture(configPath, config, expected);
        var shape = expected with
        {
            BosTokenId = config.Shape.BosTokenId ?? expected.BosTokenId,
            EosTokenId = config.Shape.EosTokenId ?? expected.EosTokenId,
            PadTokenId = config.Shape.PadTokenId ?? expected.PadTokenId,
        };

        string weightsPath = Path.Combine(dir, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            string pickledPath = Path.Combine(dir, PickledWeightsFileName);
            throw new CheckpointException(File.Exists(pickledPath) ? PickleRefusal(dir, pickledPath, weightsPath)
                : $"{dir}: there is no {WeightsFileName}.");
        }

        var layout = new ParameterLayout(shape);
        using var file = SafeTensorsFile.Open(weightsPath);
        var sourceKeys = MatchKeys(file, layout);
        var parameters = new MambaParameters(layout);
        foreach (var tensor in layout.Tensors)
            file.ReadFloat32(sourceKeys[tensor.Key], parameters.Slice(tensor));
        return parameters;
    }

    /// <summary>
    /// Writes <c>dir/model.safetensors</c> (F32, HF keys, <c>lm_head.weight</c> only when untied, metadata
    /// <c>format = pt</c> as HF's loader requires) and then <c>dir/config.json</c>, each atomically; creates
    /// <paramref name="dir"/> if needed.
    /// </summary>
    public static void Save(string dir, MambaParameters parameters)
    {
        Directory.CreateDirectory(dir);
        var tensors = parameters.Layout.Tensors
            .Select(t => new SafeTensor(t.Key, t.Shape, parameters.Values.AsMemory(t.Offset, t.Length)))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(dir, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        MambaConfig.WriteHfConfig(Path.Combine(dir, ConfigFileName), parameters.Shape);
    }

    private static void CheckArchitecture(string configPath, ParsedConfig config, MambaShape expected)
    {
        var actual = config.Shape;
        // Everything that changes the parameter set or the numbers. AInit is left out on purpose: it only decides
        // how a fresh model is initialised, so trained weights are the same model whatever it was.
        Check(nameof(MambaShape.DModel), actual.DModel, expected.DModel);
        Check(nameof(MambaShape.Layers), actual.Layers, expected.Layers);
        Check(nameof(MambaShape.Vocab), actual.Vocab, expected.Vocab);
        Check(nameof(MambaShape.DState), actual.DState, expected.DState);
        Check(nameof(MambaShape.Expand), actual.Expand, expected.Expand);
        Check(nameof(MambaShape.DInner), actual.DInner, expected.DInner);
        Check(nameof(MambaShape.DtRank), actual.DtRank, expected.DtRank);
        Check(nameof(MambaShape.ConvKernel), actual.ConvKernel, expected.ConvKernel);
        Check(nameof(MambaShape.SelectiveDelta), actual.SelectiveDelta, expected.SelectiveDelta);
        Check(nameof(MambaShape.SelectiveB), actual.SelectiveB, expected.SelectiveB);
        Check(nameof(MambaShape.SelectiveC), actual.SelectiveC, expected.SelectiveC);
        Check(nameof(MambaShape.ConvBias), actual.ConvBias, expected.ConvBias);
        Check(nameof(MambaShape.ProjBias), actual.ProjBias, expected.ProjBias);
        Check(nameof(MambaShape.TieEmbeddings), actual.TieEmbeddings, expected.TieEmbeddings);
        Check(nameof(MambaShape.NormEpsilon), actual.NormEpsilon, expected.NormEpsilon);
        Check(nameof(MambaShape.ResidualInFp32), actual.ResidualInFp32, expected.ResidualInFp32);

        void Check<T>(string property, T fileValue, T expectedValue) where T : IEquatable<T>
        {
            if (fileValue.Equals(expectedValue)) return;
            string origin = config.Origins.TryGetValue(property, out var text) ? text : $"{property} is {MambaConfig.FormatValue(fileValue)}";
            throw new CheckpointException(
                $"{configPath}: {origin} but the model type was generated with {property} = {MambaConfig.FormatValue(expectedValue)}.");
        }
    }

    /// <summary>Maps each layout key to the file's key for it, after checking the key sets, shapes and dtypes.</summary>
    private static Dictionary<string, string> MatchKeys(SafeTensorsFile file, ParameterLayout layout)
    {
        var sourceKeys = new Dictionary<string, string>(StringComparer.Ordinal);
        var unexpected = new List<string>();
        foreach (string fileKey in file.Tensors.Keys)
        {
            string key = fileKey == MambaSsmEmbeddingKey ? ParameterLayout.EmbeddingKey : fileKey;
            if (layout.TryGet(key, out _))
            {
                if (!sourceKeys.TryAdd(key, fileKey))
                    throw new CheckpointException(
                        $"{file.FilePath}: both '{ParameterLayout.EmbeddingKey}' and '{MambaSsmEmbeddingKey}' are present; expected one of them.");
            }
            else if (!(fileKey == ParameterLayout.LmHeadKey && layout.Shape.TieEmbeddings))
            {
                unexpected.Add(fileKey);
            }
        }

        var missing = layout.Tensors.Where(t => !sourceKeys.ContainsKey(t.Key)).Select(t => t.Key).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
        {
            var problems = new List<string>();
            if (missing.Count > 0) problems.Add($"missing tensor{Plural(missing)} {List(missing)}");
            if (unexpected.Count > 0) problems.Add($"unexpected tensor{Plural(unexpected)} {List(unexpected.Order(StringComparer.Ordinal).ToList())}");
            throw new CheckpointException(
                $"{file.FilePath}: {string.Join("; ", problems)} (the model type's parameters do not match this checkpoint).");
        }

        foreach (var tensor in layout.Tensors)
        {
            var entry = file.Tensors[sourceKeys[tensor.Key]];
            if (!entry.Shape.AsSpan().SequenceEqual(tensor.Shape))
                throw new CheckpointException(
                    $"{file.FilePath}: tensor '{entry.Name}' has shape {entry.ShapeText} but the model type expects {tensor.ShapeText}.");
            if (entry.DType is not (DType.F32 or DType.F16 or DType.BF16))
                throw new CheckpointException(
                    $"{file.FilePath}: tensor '{entry.Name}' has dtype {entry.DType.HeaderName()}; parameters must be F32, F16 or BF16.");
        }
        return sourceKeys;
    }

    private static string PickleRefusal(string dir, string pickledPath, string weightsPath) =>
        $"{dir}: only {PickledWeightsFileName} is present. Pickled PyTorch checkpoints are never loaded (unpickling can run " +
        $"arbitrary code). Convert it to safetensors once, e.g.{Environment.NewLine}" +
        $"  python -c \"import torch; from safetensors.torch import save_file; " +
        $"sd = torch.load('{pickledPath}', map_location='cpu', weights_only=True); " +
        $"save_file({{k: v.contiguous().clone() for k, v in sd.items()}}, '{weightsPath}', metadata={{'format': 'pt'}})\"" +
        $"{Environment.NewLine}(clone() un-shares a tied lm_head, which save_file refuses), or with transformers: " +
        "model.save_pretrained(out_dir, safe_serialization=True).";

    private static string Plural(List<string> keys) => keys.Count == 1 ? "" : "s";

    private static string List(List<string> keys) =>
        string.Join(", ", keys.Take(MaxKeysListed).Select(k => $"'{k}'")) +
        (keys.Count > MaxKeysListed ? $" and {keys.Count - MaxKeysListed} more" : "");
}
