using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using MambaGen.Checkpoints;
using MambaGen.Tasks;

namespace MambaGen.Training;

/// <summary>
/// Stores <see cref="TrainingState"/> as a safetensors file, so the usual tools can open it: weights, AdamW moments
/// and the per-step loss are 1-D F32 tensors; the step, data RNG words, model shape, options fingerprint and
/// evaluation history are <c>__metadata__</c> strings; and a 64-bit FNV-1a checksum over all of that sits in the
/// metadata too, because safetensors itself cannot notice a flipped bit inside tensor data.
/// </summary>
/// <remarks>
/// Evaluations are metadata text rather than a tensor because their counters are 64-bit integers and their loss
/// sum a double; F32 would round them, and a resumed run must report exactly what the uninterrupted one did.
/// </remarks>
internal sealed class SafeTensorsTrainingStateFormat : ITrainingStateFormat
{
    private const string FormatName = "mambagen-training-state";
    private const string FormatVersion = "1";

    private const string FormatKey = "format";
    private const string VersionKey = "format_version";
    private const string StepKey = "step";
    private const string RandomKey = "data_rng";
    private const string ShapeKey = "model_shape";
    private const string OptionsKey = "options";
    private const string EvaluationsKey = "history.evaluations";
    private const string ChecksumKey = "checksum_fnv1a64";

    private const string ParametersTensor = "parameters";
    private const string FirstMomentTensor = "adamw.m";
    private const string SecondMomentTensor = "adamw.v";
    private const string LossTensor = "history.loss";
    private static readonly string[] TensorNames = [ParametersTensor, FirstMomentTensor, SecondMomentTensor, LossTensor];

    private const int EvaluationFields = 6; // step, scored, correct, sequences, correct sequences, loss sum

    private readonly Func<IReadOnlyList<SafeTensor>, IReadOnlyList<SafeTensor>> _prepareTensors;

    public SafeTensorsTrainingStateFormat() : this(tensors => tensors) { }

    /// <summary>Lets tests swap a tensor's data for memory that fails while the file is being written.</summary>
    internal SafeTensorsTrainingStateFormat(Func<IReadOnlyList<SafeTensor>, IReadOnlyList<SafeTensor>> prepareTensors) =>
        _prepareTensors = prepareTensors;

    public void Write(string path, TrainingState state)
    {
        float[][] data = [state.Parameters, state.FirstMoment, state.SecondMoment, state.LossHistory];
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [FormatKey] = FormatName,
            [VersionKey] = FormatVersion,
            [StepKey] = state.Step.ToString(CultureInfo.InvariantCulture),
            [RandomKey] = string.Join(",", state.DataRandomState.Select(word => word.ToString("x16", CultureInfo.InvariantCulture))),
            [ShapeKey] = state.ModelShape,
            [OptionsKey] = state.OptionsFingerprint,
            [EvaluationsKey] = FormatEvaluations(state.Evaluations),
        };
        metadata[ChecksumKey] = FormatChecksum(Checksum(metadata, data));
        var tensors = TensorNames.Select((name, i) => new SafeTensor(name, [data[i].Length], data[i])).ToList();
        SafeTensorsWriter.Write(path, _prepareTensors(tensors), metadata);
    }

    public TrainingState Read(string path)
    {
        using var file = Open(path);
        var metadata = file.Metadata;
        string Meta(string key) => metadata.TryGetValue(key, out var value) ? value : throw Invalid(path, $"has no metadata '{key}'");

        if (!metadata.TryGetValue(FormatKey, out var format) || format != FormatName)
            throw Invalid(path, $"is not a MambaGen training state: its metadata 'format' is {(format is null ? "absent" : $"'{format}'")}, expected '{FormatName}'");
        if (Meta(VersionKey) != FormatVersion)
            throw Invalid(path, $"has format version '{Meta(VersionKey)}'; this build reads version {FormatVersion}");
        foreach (var name in file.Tensors.Keys)
            if (!TensorNames.Contains(name)) throw Invalid(path, $"holds an unexpected tensor '{name}'");

        float[][] data = TensorNames.Select(name => ReadVector(file, path, name)).ToArray();
        string stored = Meta(ChecksumKey);
        string computed = FormatChecksum(Checksum(metadata, data));
        if (stored != computed)
            throw Invalid(path, $"is corrupt: its metadata '{ChecksumKey}' is {stored} but its content hashes to {computed}");

        if (!long.TryParse(Meta(StepKey), NumberStyles.None, CultureInfo.InvariantCulture, out long step))
            throw Invalid(path, $"has an unreadable metadata '{StepKey}' '{Meta(StepKey)}' (expected a non-negative integer)");
        var random = ParseRandomState(path, Meta(RandomKey));
        var (parameters, firstMoment, secondMoment, loss) = (data[0], data[1], data[2], data[3]);
        if (firstMoment.Length != parameters.Length || secondMoment.Length != parameters.Length)
            throw Invalid(path, $"has {parameters.Length} parameters but moments '{FirstMomentTensor}' of {firstMoment.Length} and '{SecondMomentTensor}' of {secondMoment.Length}");
        if (loss.Length != step)
            throw Invalid(path, $"has {loss.Length} entries in tensor '{LossTensor}' for step {step}");
        var evaluations = ParseEvaluations(path, Meta(EvaluationsKey));
        return new TrainingState(step, random, Meta(ShapeKey), Meta(OptionsKey), parameters, firstMoment, secondMoment, loss, evaluations);
    }

    private static SafeTensorsFile Open(string path)
    {
        try
        {
            return SafeTensorsFile.Open(path);
        }
        catch (CheckpointException e)
        {
            throw new InvalidDataException($"Training state file '{path}' is not a MambaGen training state, or is truncated or corrupt: {e.Message}", e);
        }
    }

    private static float[] ReadVector(SafeTensorsFile file, string path, string name)
    {
        if (!file.Tensors.TryGetValue(name, out var entry))
            throw Invalid(path, $"has no tensor '{name}'");
        if (entry.DType != DType.F32 || entry.Shape.Length != 1)
            throw Invalid(path, $"stores tensor '{name}' as {entry.DType.HeaderName()} {entry.ShapeText}; expected a 1-D F32 tensor");
        try
        {
            return file.ReadFloat32(name);
        }
        catch (CheckpointException e)
        {
            throw new InvalidDataException($"Training state file '{path}': tensor '{name}' could not be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// Hashes every metadata entry but the checksum (in ordinal key order) and every tensor (name, length, bytes),
    /// each field length-prefixed so that moving bytes between fields changes the hash.
    /// </summary>
    private static ulong Checksum(IReadOnlyDictionary<string, string> metadata, float[][] data)
    {
        var hash = new Fnv1a64();
        foreach (var key in metadata.Keys.Where(key => key != ChecksumKey).Order(StringComparer.Ordinal))
        {
            AppendField(ref hash, Encoding.UTF8.GetBytes(key));
            AppendField(ref hash, Encoding.UTF8.GetBytes(metadata[key]));
        }
        for (int i = 0; i < TensorNames.Length; i++)
        {
            AppendField(ref hash, Encoding.UTF8.GetBytes(TensorNames[i]));
            AppendField(ref hash, MemoryMarshal.AsBytes(data[i].AsSpan()));
        }
        return hash.Value;
    }

    private static void AppendField(ref Fnv1a64 hash, ReadOnlySpan<byte> bytes)
    {
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, bytes.Length);
        hash.Append(length);
        hash.Append(bytes);
    }

    private static string FormatChecksum(ulong checksum) => checksum.ToString("x16", CultureInfo.InvariantCulture);

    private static ulong[] ParseRandomState(string path, string text)
    {
        string[] words = text.Split(',');
        var state = new ulong[words.Length];
        for (int i = 0; i < words.Length; i++)
            if (!ulong.TryParse(words[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out state[i]))
                throw Invalid(path, $"has an unreadable word '{words[i]}' in metadata '{RandomKey}'");
        if (state.Length != 4 || state.All(word => word == 0))
            throw Invalid(path, $"has an invalid metadata '{RandomKey}' (expected 4 hexadecimal words, not all zero; got {state.Length})");
        return state;
    }

    /// <summary>One line per evaluation: step, scored tokens, correct tokens, sequences, correct sequences, loss sum (round-trip).</summary>
    private static string FormatEvaluations(EvaluationResult[] evaluations) =>
        string.Join('\n', evaluations.Select(e => string.Create(CultureInfo.InvariantCulture,
            $"{e.Step} {e.Score.ScoredTokens} {e.Score.CorrectTokens} {e.Score.Sequences} {e.Score.CorrectSequences} {e.Score.LossSum:R}")));

    private static EvaluationResult[] ParseEvaluations(string path, string text)
    {
        if (text.Length == 0) return [];
        string[] lines = text.Split('\n');
        var evaluations = new EvaluationResult[lines.Length];
        for (int i = 0; i < lines.Length; i++)
        {
            string[] fields = lines[i].Split(' ');
            var counts = new long[EvaluationFields - 1];
            bool valid = fields.Length == EvaluationFields;
            for (int f = 0; valid && f < counts.Length; f++)
                valid = long.TryParse(fields[f], NumberStyles.None, CultureInfo.InvariantCulture, out counts[f]);
            double lossSum = 0;
            valid = valid && double.TryParse(fields[^1], NumberStyles.Float, CultureInfo.InvariantCulture, out lossSum);
            if (!valid)
                throw Invalid(path, $"has an unreadable line {i + 1} '{lines[i]}' in metadata '{EvaluationsKey}' (expected {EvaluationFields - 1} non-negative integers and a number)");
            evaluations[i] = new EvaluationResult(counts[0], new TaskScore(counts[1], counts[2], counts[3], counts[4], lossSum));
        }
        return evaluations;
    }

    private static InvalidDataException Invalid(string path, string problem) => new($"Training state file '{path}' {problem}.");
}
