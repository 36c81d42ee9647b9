using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using MambaGen.Tasks;

namespace MambaGen.Training;

/// <summary>
/// A small self-contained binary container for <see cref="TrainingState"/>: named string metadata plus named
/// little-endian tensors, closed by a CRC-32 of everything before it.
/// </summary>
/// <remarks>
/// Layout: magic "MGTSTATE" (8 bytes), version u32 = 1, metadata count u32, each entry (u16 key byte length, UTF-8
/// key, u32 value byte length, UTF-8 value), tensor count u32, each tensor (u16 name byte length, UTF-8 name, u8
/// dtype: 1 = F32, 2 = F64, u64 element count, data), then the CRC-32 (u32) of all preceding bytes. Names and
/// metadata mirror a safetensors file so the two formats carry the same content.
/// </remarks>
internal sealed class BinaryTrainingStateFormat : ITrainingStateFormat
{
    private static ReadOnlySpan<byte> Magic => "MGTSTATE"u8;
    private const uint Version = 1;
    private const byte F32 = 1, F64 = 2;
    private const string FormatName = "mambagen-training-state";
    private const int EvaluationColumns = 6; // step, scored, correct, sequences, correct sequences, loss sum

    private readonly Func<Stream, Stream> _wrapOutput;

    public BinaryTrainingStateFormat() : this(stream => stream) { }

    /// <summary>Lets tests put a failing stream between the writer and the file.</summary>
    internal BinaryTrainingStateFormat(Func<Stream, Stream> wrapOutput) => _wrapOutput = wrapOutput;

    public void Write(string path, TrainingState state)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Training state files are written on little-endian machines only.");
        AtomicFile.Write(path, file =>
        {
            var output = _wrapOutput(file);
            var checksummed = new ChecksummingStream(output);
            using (var writer = new BinaryWriter(checksummed, Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(Magic);
                writer.Write(Version);
                var metadata = new (string Key, string Value)[]
                {
                    ("format", FormatName),
                    ("step", state.Step.ToString(CultureInfo.InvariantCulture)),
                    ("data_rng", string.Join(",", state.DataRandomState.Select(w => w.ToString("x16", CultureInfo.InvariantCulture)))),
                    ("model_shape", state.ModelShape),
                    ("options", state.OptionsFingerprint),
                };
                writer.Write((uint)metadata.Length);
                foreach (var (key, value) in metadata)
                {
                    WriteName(writer, key);
                    byte[] bytes = Encoding.UTF8.GetBytes(value);
                    writer.Write((uint)bytes.Length);
                    writer.Write(bytes);
                }
                writer.Write(5u);
                WriteTensor(writer, "parameters", state.Parameters);
                WriteTensor(writer, "adamw.m", state.FirstMoment);
                WriteTensor(writer, "adamw.v", state.SecondMoment);
                WriteTensor(writer, "history.loss", state.LossHistory);
                WriteTensor(writer, "history.evaluations", FlattenEvaluations(state.Evaluations));
            }
            Span<byte> crc = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(crc, checksummed.Checksum);
            output.Write(crc);
            output.Flush();
        });
    }

    public TrainingState Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var reader = new Reader(path, bytes);
        reader.ExpectMagic();
        uint version = reader.U32("format version");
        if (version != Version)
            throw reader.Invalid($"has format version {version}; this build reads version {Version}");

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        uint metadataCount = reader.U32("metadata count");
        for (uint i = 0; i < metadataCount; i++)
        {
            string key = reader.Name("metadata key");
            string value = Encoding.UTF8.GetString(reader.Bytes(reader.U32($"length of metadata '{key}'"), $"metadata '{key}'"));
            if (!metadata.TryAdd(key, value)) throw reader.Invalid($"repeats metadata key '{key}'");
        }

        var tensors = new Dictionary<string, Array>(StringComparer.Ordinal);
        uint tensorCount = reader.U32("tensor count");
        for (uint i = 0; i < tensorCount; i++)
        {
            string name = reader.Name("tensor name");
            byte dtype = reader.Byte($"dtype of tensor '{name}'");
            int elementSize = dtype switch { F32 => 4, F64 => 8, _ => throw reader.Invalid($"gives tensor '{name}' unknown dtype code {dtype}") };
            ulong count = reader.U64($"element count of tensor '{name}'");
            var data = reader.Bytes(count > (ulong)int.MaxValue ? ulong.MaxValue : count * (ulong)elementSize, $"data of tensor '{name}'");
            Array values = dtype == F32 ? MemoryMarshal.Cast<byte, float>(data).ToArray() : MemoryMarshal.Cast<byte, double>(data).ToArray();
            if (!tensors.TryAdd(name, values)) throw reader.Invalid($"repeats tensor '{name}'");
        }
        reader.ExpectChecksum();
        return ToState(reader, metadata, tensors);
    }

    private static TrainingState ToState(Reader reader, Dictionary<string, string> metadata, Dictionary<string, Array> tensors)
    {
        string Meta(string key) => metadata.TryGetValue(key, out var v) ? v : throw reader.Invalid($"has no metadata '{key}'");
        T Tensor<T>(string name) where T : class =>
            tensors.TryGetValue(name, out var t) ? t as T ?? throw reader.Invalid($"stores tensor '{name}' with the wrong dtype") : throw reader.Invalid($"has no tensor '{name}'");

        if (Meta("format") != FormatName) throw reader.Invalid($"is a '{Meta("format")}', not a {FormatName}");
        if (!long.TryParse(Meta("step"), NumberStyles.None, CultureInfo.InvariantCulture, out long step))
            throw reader.Invalid($"has an unreadable step '{Meta("step")}'");
        string[] words = Meta("data_rng").Split(',');
        var rng = new ulong[words.Length];
        for (int i = 0; i < words.Length; i++)
            if (!ulong.TryParse(words[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out rng[i]))
                throw reader.Invalid($"has an unreadable data_rng word '{words[i]}'");
        if (rng.Length != 4 || rng.All(w => w == 0)) throw reader.Invalid("has an invalid data_rng state (expected 4 words, not all zero)");

        var parameters = Tensor<float[]>("parameters");
        var firstMoment = Tensor<float[]>("adamw.m");
        var secondMoment = Tensor<float[]>("adamw.v");
        if (firstMoment.Length != parameters.Length || secondMoment.Length != parameters.Length)
            throw reader.Invalid($"has {parameters.Length} parameters but moments of {firstMoment.Length} and {secondMoment.Length}");
        var loss = Tensor<float[]>("history.loss");
        if (loss.Length != step) throw reader.Invalid($"has {loss.Length} loss history entries for step {step}");
        var evaluationRows = Tensor<double[]>("history.evaluations");
        if (evaluationRows.Length % EvaluationColumns != 0)
            throw reader.Invalid($"has {evaluationRows.Length} evaluation values, not a multiple of {EvaluationColumns}");
        var evaluations = new EvaluationResult[evaluationRows.Length / EvaluationColumns];
        for (int i = 0; i < evaluations.Length; i++)
        {
            var row = evaluationRows.AsSpan(i * EvaluationColumns, EvaluationColumns);
            evaluations[i] = new EvaluationResult((long)row[0], new TaskScore((long)row[1], (long)row[2], (long)row[3], (long)row[4], row[5]));
        }
        return new TrainingState(step, rng, Meta("model_shape"), Meta("options"), parameters, firstMoment, secondMoment, loss, evaluations);
    }

    private static double[] FlattenEvaluations(EvaluationResult[] evaluations)
    {
        var rows = new double[evaluations.Length * EvaluationColumns];
        for (int i = 0; i < evaluations.Length; i++)
        {
            var (step, score) = evaluations[i];
            var row = rows.AsSpan(i * EvaluationColumns, EvaluationColumns);
            (row[0], row[1], row[2], row[3], row[4], row[5]) =
                (step, score.ScoredTokens, score.CorrectTokens, score.Sequences, score.CorrectSequences, score.LossSum);
        }
        return rows;
    }

    private static void WriteName(BinaryWriter writer, string name)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        writer.Write(checked((ushort)bytes.Length));
        writer.Write(bytes);
    }

    private static void WriteTensor<T>(BinaryWriter writer, string name, T[] values) where T : unmanaged
    {
        WriteName(writer, name);
        writer.Write(typeof(T) == typeof(float) ? F32 : F64);
        writer.Write((ulong)values.Length);
        writer.Write(MemoryMarshal.AsBytes(values.AsSpan()));
    }

    /// <summary>Bounds-checked cursor over the file's bytes; every failure names the file and what was expected.</summary>
    private sealed class Reader(string path, byte[] bytes)
    {
        private int _position;

        public InvalidDataException Invalid(string problem) => new($"Training state file '{path}' {problem}.");

        public void ExpectMagic()
        {
            if (bytes.Length < Magic.Length || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
                throw Invalid("is not a MambaGen training state (missing the MGTSTATE header)");
            _position = Magic.Length;
        }

        public ReadOnlySpan<byte> Bytes(ulong count, string what)
        {
            // The final 4 bytes are the checksum; content must end before them.
            long available = bytes.Length - 4L - _position;
            if (count > (ulong)Math.Max(available, 0))
                throw Invalid($"is truncated or corrupt: {what} needs {count} bytes at offset {_position}, but only {Math.Max(available, 0)} remain before the checksum (file is {bytes.Length} bytes)");
            var span = bytes.AsSpan(_position, (int)count);
            _position += (int)count;
            return span;
        }

        public byte Byte(string what) => Bytes(1, what)[0];
        public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2, what));
        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4, what));
        public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8, what));

        public string Name(string what) => Encoding.UTF8.GetString(Bytes(U16($"length of {what}"), what));

        public void ExpectChecksum()
        {
            int trailing = bytes.Length - _position;
            if (trailing != 4) throw Invalid($"has {trailing - 4} unexpected bytes after its last tensor");
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(_position));
            uint computed = Crc32.Compute(bytes.AsSpan(0, _position));
            if (stored != computed)
                throw Invalid($"is corrupt: its CRC-32 is 0x{stored:x8} but its content hashes to 0x{computed:x8}");
        }
    }

    /// <summary>Forwards writes and keeps a running CRC-32 of everything written.</summary>
    private sealed class ChecksummingStream(Stream inner) : Stream
    {
        private uint _running = Crc32.Initial;

        public uint Checksum => Crc32.Finish(_running);

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            inner.Write(buffer);
            _running = Crc32.Append(_running, buffer);
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void WriteByte(byte value) => Write([value]);
        public override void Flush() => inner.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
