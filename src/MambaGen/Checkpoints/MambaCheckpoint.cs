using System.Globalization;
using System.Numerics.Tensors;
using MambaGen.Cpu;

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
    /// may appear (a tied checkpoint's <c>lm_head.weight</c>, which mamba_ssm keeps, is ignored). The config's
    /// bos/eos/pad token ids must lie inside the vocabulary; the returned parameters' shape carries them. Every
    /// weight must be finite unless <paramref name="options"/> allows otherwise. When the two files disagree with each
    /// other (one of them from another checkpoint), the exception names both.
    /// </summary>
    public static MambaParameters Load(string dir, MambaShape expected, CheckpointLoadOptions? options = null)
    {
        options ??= CheckpointLoadOptions.Default;
        if (!Directory.Exists(dir))
            throw new CheckpointException($"{dir}: the checkpoint directory does not exist.");
        string configPath = Path.Combine(dir, ConfigFileName);
        if (!File.Exists(configPath))
            throw new CheckpointException($"{dir}: there is no {ConfigFileName} (a checkpoint directory holds {ConfigFileName} and {WeightsFileName}).");
        string weightsPath = Path.Combine(dir, WeightsFileName);

        var config = MambaConfig.Read(configPath);
        try
        {
            CheckArchitecture(configPath, config, expected);
        }
        // Weights that fit the model type but not the config beside them: the files come from two checkpoints.
        // (A mismatch that leaves the tensors alone, such as NormEpsilon, cannot be told apart this way.)
        catch (CheckpointException mismatch) when (File.Exists(weightsPath) && WeightsFit(weightsPath, expected) && !WeightsFit(weightsPath, config.Shape))
        {
            throw new CheckpointException(
                $"{mismatch.Message} Yet {weightsPath} beside it holds exactly the tensors of the model type: the two files disagree " +
                "(they come from different checkpoints).", mismatch);
        }
        var shape = expected with
        {
            BosTokenId = config.Shape.BosTokenId ?? expected.BosTokenId,
            EosTokenId = config.Shape.EosTokenId ?? expected.EosTokenId,
            PadTokenId = config.Shape.PadTokenId ?? expected.PadTokenId,
        };
        CheckTokenId(configPath, ConfigSchema.HuggingFace.BosTokenId, config.Shape.BosTokenId, shape.Vocab);
        CheckTokenId(configPath, ConfigSchema.HuggingFace.EosTokenId, config.Shape.EosTokenId, shape.Vocab);
        CheckTokenId(configPath, ConfigSchema.HuggingFace.PadTokenId, config.Shape.PadTokenId, shape.Vocab);

        if (!File.Exists(weightsPath))
        {
            string pickledPath = Path.Combine(dir, PickledWeightsFileName);
            throw new CheckpointException(File.Exists(pickledPath) ? PickleRefusal(dir, pickledPath, weightsPath)
                : $"{dir}: there is no {WeightsFileName}.");
        }

        var layout = new ParameterLayout(shape, options.MaxSegmentLength);
        using var file = SafeTensorsFile.Open(weightsPath);
        var sourceKeys = MatchKeys(file, layout, $" {configPath} beside it describes the model type, so the two files disagree (they come from different checkpoints).");
        if (options.KeepSixteenBitWeights) return ReadSixteenBitOnly(file, layout, sourceKeys, options);
        var parameters = new MambaParameters(layout);
        foreach (var tensor in layout.Tensors) ReadFloat32(file, sourceKeys[tensor.Key], tensor, parameters.Slice(tensor), options);
        return parameters;
    }

    private static void ReadFloat32(SafeTensorsFile file, string fileKey, ParameterTensor tensor, Span<float> values, CheckpointLoadOptions options)
    {
        file.ReadFloat32(fileKey, values);
        if (!options.AllowNonFiniteWeights && !TensorPrimitives.IsFiniteAll(values))
        {
            int index = 0;
            while (float.IsFinite(values[index])) index++;
            throw NonFinite(file.FilePath, fileKey, tensor, index, values[index]);
        }
    }

    /// <summary>
    /// <see cref="CheckpointLoadOptions.KeepSixteenBitWeights"/>: the projection matrices straight from the file's 16-bit
    /// values, the other tensors read to fp32 and also rounded into the 16-bit weights (for a tied head, which reads the embedding).
    /// </summary>
    private static MambaParameters ReadSixteenBitOnly(SafeTensorsFile file, ParameterLayout layout, Dictionary<string, string> sourceKeys, CheckpointLoadOptions options)
    {
        var products = layout.Tensors.Where(t => t.ProductOnly).Select(t => file.Tensors[sourceKeys[t.Key]]).ToList();
        var first = products[0];
        if (first.DType is not (DType.F16 or DType.BF16))
            throw new CheckpointException(
                $"{file.FilePath}: {nameof(CheckpointLoadOptions.KeepSixteenBitWeights)} keeps 16-bit weights as stored, but tensor '{first.Name}' is " +
                $"{first.DType.HeaderName()}; load this checkpoint without the option.");
        if (products.FirstOrDefault(e => e.DType != first.DType) is { } other)
            throw new CheckpointException(
                $"{file.FilePath}: {nameof(CheckpointLoadOptions.KeepSixteenBitWeights)} needs every projection matrix in one 16-bit dtype, but " +
                $"'{first.Name}' is {first.DType.HeaderName()} and '{other.Name}' is {other.DType.HeaderName()}.");
        var format = first.DType == DType.BF16 ? HalfPrecision.BFloat16 : HalfPrecision.Float16;
        var weights = HalfWeights.Allocate(layout, format);
        var parameters = MambaParameters.SixteenBitOnly(layout, weights);
        foreach (var tensor in layout.Tensors)
        {
            string fileKey = sourceKeys[tensor.Key];
            var bits = weights.Span(tensor.Offset, tensor.Length);
            if (tensor.ProductOnly)
            {
                file.ReadSixteenBit(fileKey, bits);
                if (!options.AllowNonFiniteWeights) CheckFinite(file.FilePath, fileKey, tensor, bits, format);
            }
            else
            {
                var values = parameters.Slice(tensor);
                ReadFloat32(file, fileKey, tensor, values, options);
                HalfWeights.Round(values, bits, format);
            }
        }
        return parameters;
    }

    /// <summary>A 16-bit value is NaN or ±∞ exactly when its exponent bits are all ones.</summary>
    private static void CheckFinite(string weightsPath, string fileKey, ParameterTensor tensor, ReadOnlySpan<ushort> bits, HalfPrecision format)
    {
        ushort exponent = format == HalfPrecision.BFloat16 ? (ushort)0x7F80 : (ushort)0x7C00;
        for (int index = 0; index < bits.Length; index++)
            if ((bits[index] & exponent) == exponent)
                throw NonFinite(weightsPath, fileKey, tensor, index, HalfWeights.Widen(bits[index], format));
    }

    /// <summary>
    /// Writes <c>dir/model.safetensors</c> (F32, HF keys, <c>lm_head.weight</c> only when untied, metadata
    /// <c>format = pt</c> as HF's loader requires) and <c>dir/config.json</c>. Both go into a temporary sibling
    /// directory that then replaces <paramref name="dir"/> as a whole, so a failed save leaves the previous checkpoint
    /// as it was and a reader never sees new weights beside an old config. Other files already in
    /// <paramref name="dir"/> (a <c>tokenizer.json</c>, say) are kept. Creates <paramref name="dir"/> if needed.
    /// </summary>
    public static void Save(string dir, MambaParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        AtomicDirectory.Replace(dir, temporary => WriteFiles(temporary, parameters));
    }

    /// <summary>Writes the checkpoint's two files into <paramref name="dir"/> (a fresh, private directory).</summary>
    internal static void WriteFiles(string dir, MambaParameters parameters)
    {
        var tensors = parameters.Layout.Tensors
            .Select(t => new SafeTensor(t.Key, t.Shape, parameters.TensorMemory(t)))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(dir, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        MambaConfig.WriteHfConfig(Path.Combine(dir, ConfigFileName), parameters.Shape);
    }

    /// <summary>Whether the weights file's keys and shapes are exactly those a model of <paramref name="shape"/> has.</summary>
    private static bool WeightsFit(string weightsPath, MambaShape shape)
    {
        try
        {
            var layout = new ParameterLayout(shape);
            using var file = SafeTensorsFile.Open(weightsPath);
            MatchKeys(file, layout, "");
            return true;
        }
        catch (Exception error) when (error is CheckpointException or ArgumentException or OverflowException)
        {
            return false;
        }
    }

    private static void CheckTokenId(string configPath, string field, int? id, int vocab)
    {
        if (id is int value && (value < 0 || value >= vocab))
            throw new CheckpointException(
                $"{configPath}: {field} is {value}, outside the vocabulary of the model type (ids 0..{vocab - 1}).");
    }

    /// <summary>
    /// NaN or ±∞ in a weight poisons every output that touches it; reported with the element's position so the
    /// broken tensor can be found. <see cref="CheckpointLoadOptions.AllowNonFiniteWeights"/> skips the check.
    /// </summary>
    private static CheckpointException NonFinite(string weightsPath, string fileKey, ParameterTensor tensor, int index, float value)
    {
        var position = new int[tensor.Shape.Length];
        for (int d = tensor.Shape.Length - 1, rest = index; d >= 0; rest /= tensor.Shape[d], d--) position[d] = rest % tensor.Shape[d];
        return new CheckpointException(
            $"{weightsPath}: tensor '{fileKey}' holds {value.ToString(CultureInfo.InvariantCulture)} at flat index {index} (position [{string.Join(", ", position)}] of " +
            $"{tensor.ShapeText}); weights must be finite. To load it anyway, pass new {nameof(CheckpointLoadOptions)} " +
            $"{{ {nameof(CheckpointLoadOptions.AllowNonFiniteWeights)} = true }} to {nameof(MambaCheckpoint)}.{nameof(Load)}.");
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

    /// <summary>
    /// Maps each layout key to the file's key for it, after checking the key sets, shapes and dtypes. A key or shape
    /// mismatch's message ends with <c>disagreement</c>: what else the caller knows about the directory.
    /// </summary>
    private static Dictionary<string, string> MatchKeys(SafeTensorsFile file, ParameterLayout layout, string disagreement)
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
                $"{file.FilePath}: {string.Join("; ", problems)} (the model type's parameters do not match this checkpoint).{disagreement}");
        }

        foreach (var tensor in layout.Tensors)
        {
            var entry = file.Tensors[sourceKeys[tensor.Key]];
            if (!entry.Shape.AsSpan().SequenceEqual(tensor.Shape))
                throw new CheckpointException(
                    $"{file.FilePath}: tensor '{entry.Name}' has shape {entry.ShapeText} but the model type expects {tensor.ShapeText}.{disagreement}");
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
