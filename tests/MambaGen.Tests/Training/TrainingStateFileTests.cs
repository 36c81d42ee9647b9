using System.Text;
using MambaGen.Checkpoints;
using MambaGen.Tasks;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

public sealed class TrainingStateFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-state-").FullName;
    private readonly SafeTensorsTrainingStateFormat _format = new();

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static TrainingState Sample() => new(
        Step: 3,
        DataRandomState: [1UL, 0xFFFF_FFFF_FFFF_FFFFUL, 3UL, 4UL],
        ModelShape: "MambaShape { DModel = 4 }",
        OptionsFingerprint: "steps=10\nseed=1 — ünïcode",
        Parameters: [1.5f, -2f, float.Epsilon, 7f],
        FirstMoment: [0.1f, 0.2f, 0.3f, 0.4f],
        SecondMoment: [1e-30f, 2f, 3f, 4f],
        LossHistory: [3f, 2.5f, 2f],
        Evaluations: [new EvaluationResult(2, new TaskScore(64, 40, 16, 5, 123.456))]);

    private string Saved(string name = "state.safetensors")
    {
        string path = Path.Combine(_directory, name);
        _format.Write(path, Sample());
        return path;
    }

    [Fact]
    public void RoundTripsEveryField()
    {
        AssertSameState(Sample(), _format.Read(Saved()));
    }

    private static void AssertSameState(TrainingState expected, TrainingState read)
    {
        Assert.Equal(expected.Step, read.Step);
        Assert.Equal(expected.DataRandomState, read.DataRandomState);
        Assert.Equal(expected.ModelShape, read.ModelShape);
        Assert.Equal(expected.OptionsFingerprint, read.OptionsFingerprint);
        Assert.Equal(expected.Parameters, read.Parameters);
        Assert.Equal(expected.FirstMoment, read.FirstMoment);
        Assert.Equal(expected.SecondMoment, read.SecondMoment);
        Assert.Equal(expected.LossHistory, read.LossHistory);
        Assert.Equal(expected.Evaluations, read.Evaluations);
    }

    [Fact]
    public void EveryTruncationIsReportedNamingTheFile()
    {
        string path = Saved();
        byte[] bytes = File.ReadAllBytes(path);
        string truncated = Path.Combine(_directory, "truncated.bin");
        for (int length = 0; length < bytes.Length; length++)
        {
            File.WriteAllBytes(truncated, bytes[..length]);
            var error = Assert.Throws<InvalidDataException>(() => _format.Read(truncated));
            Assert.Contains(truncated, error.Message);
        }
    }

    [Fact]
    public void AFlippedBitAnywhereIsDetectedUnlessItChangesNothing()
    {
        byte[] bytes = File.ReadAllBytes(Saved());
        string corrupt = Path.Combine(_directory, "corrupt.bin");
        // Every byte position, one bit each: structural damage is caught by the safetensors reader, damage to
        // metadata values or tensor data by the checksum. The one harmless flip is the case of a hex letter in a
        // JSON \uXXXX escape (the header escapes non-ASCII text): it decodes to the same string, so the file still
        // reads back exactly as written.
        int harmless = 0;
        for (int i = 0; i < bytes.Length; i++)
        {
            var copy = (byte[])bytes.Clone();
            copy[i] ^= (byte)(1 << (i % 8));
            File.WriteAllBytes(corrupt, copy);
            var error = Record.Exception(() => _format.Read(corrupt));
            if (error is null)
            {
                Assert.True(char.IsAsciiHexDigitUpper((char)bytes[i]) && char.IsAsciiHexDigitLower((char)copy[i]),
                    $"Flipping byte {i} ('{(char)bytes[i]}' → '{(char)copy[i]}') went unnoticed.");
                AssertSameState(Sample(), _format.Read(corrupt));
                harmless++;
                continue;
            }
            Assert.IsType<InvalidDataException>(error);
            Assert.Contains(corrupt, error.Message);
        }
        Assert.True(harmless <= 4, $"{harmless} flips went unnoticed; only escape hex letters should.");
    }

    [Fact]
    public void PayloadCorruptionIsReportedAsAChecksumMismatch()
    {
        string path = Saved();
        byte[] bytes = File.ReadAllBytes(path);
        bytes[^8] ^= 0x40; // inside the last tensor's data
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => _format.Read(path));
        Assert.Contains("checksum_fnv1a64", error.Message);
        Assert.Contains("corrupt", error.Message);
    }

    [Fact]
    public void OtherFilesAreRejectedClearly()
    {
        string text = Path.Combine(_directory, "notes.txt");
        File.WriteAllText(text, "hello, this is not a checkpoint");
        Assert.Contains("not a MambaGen training state", Assert.Throws<InvalidDataException>(() => _format.Read(text)).Message);

        // A valid safetensors file that is something else (here: model weights without our metadata).
        string weights = Path.Combine(_directory, "model.safetensors");
        SafeTensorsWriter.Write(weights, [new SafeTensor("parameters", [2], new[] { 1f, 2f })], new Dictionary<string, string> { ["format"] = "pt" });
        var error = Assert.Throws<InvalidDataException>(() => _format.Read(weights));
        Assert.Contains("not a MambaGen training state", error.Message);
        Assert.Contains("'pt'", error.Message);

        string future = Path.Combine(_directory, "future.safetensors");
        SafeTensorsWriter.Write(future, [new SafeTensor("parameters", [2], new[] { 1f, 2f })],
            new Dictionary<string, string> { ["format"] = "mambagen-training-state", ["format_version"] = "9" });
        Assert.Contains("format version '9'", Assert.Throws<InvalidDataException>(() => _format.Read(future)).Message);

        string longer = Path.Combine(_directory, "longer.bin");
        File.WriteAllBytes(longer, [.. File.ReadAllBytes(Saved()), 0, 0]);
        Assert.Throws<InvalidDataException>(() => _format.Read(longer));

        Assert.Throws<FileNotFoundException>(() => _format.Read(Path.Combine(_directory, "missing.bin")));
    }

    [Fact]
    public void TheFileIsOrdinarySafeTensorsWithTheStateInMetadata()
    {
        using var file = SafeTensorsFile.Open(Saved());
        Assert.Equal("3", file.Metadata["step"]);
        Assert.Equal("0000000000000001,ffffffffffffffff,0000000000000003,0000000000000004", file.Metadata["data_rng"]);
        Assert.Equal(Sample().Parameters, file.ReadFloat32("parameters"));
        Assert.Equal([3], file.GetEntry("history.loss").Shape);
    }

    [Fact]
    public void Fnv1a64MatchesPublishedTestVectors()
    {
        // Test vectors from the FNV reference (Fowler/Noll/Vo): the empty string hashes to the offset basis.
        Assert.Equal(0xcbf29ce484222325UL, Fnv1a64.Compute([]));
        Assert.Equal(0xaf63dc4c8601ec8cUL, Fnv1a64.Compute(Encoding.ASCII.GetBytes("a")));
        Assert.Equal(0x85944171f73967e8UL, Fnv1a64.Compute(Encoding.ASCII.GetBytes("foobar")));
    }
}
