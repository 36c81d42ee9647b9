using System.Text;
using MambaGen.Tasks;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

public sealed class TrainingStateFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mambagen-state-").FullName;
    private readonly BinaryTrainingStateFormat _format = new();

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

    private string Saved(string name = "state.bin")
    {
        string path = Path.Combine(_directory, name);
        _format.Write(path, Sample());
        return path;
    }

    [Fact]
    public void RoundTripsEveryField()
    {
        var expected = Sample();
        var read = _format.Read(Saved());
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
    public void AFlippedBitAnywhereIsDetected()
    {
        byte[] bytes = File.ReadAllBytes(Saved());
        string corrupt = Path.Combine(_directory, "corrupt.bin");
        // Every byte position, one bit each: header damage is caught by the parser, payload damage by the CRC.
        for (int i = 0; i < bytes.Length; i++)
        {
            var copy = (byte[])bytes.Clone();
            copy[i] ^= (byte)(1 << (i % 8));
            File.WriteAllBytes(corrupt, copy);
            var error = Assert.Throws<InvalidDataException>(() => _format.Read(corrupt));
            Assert.Contains(corrupt, error.Message);
        }
    }

    [Fact]
    public void PayloadCorruptionIsReportedAsAChecksumMismatch()
    {
        string path = Saved();
        byte[] bytes = File.ReadAllBytes(path);
        bytes[^8] ^= 0x40; // inside the last tensor's data
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => _format.Read(path));
        Assert.Contains("CRC-32", error.Message);
    }

    [Fact]
    public void OtherFilesAreRejectedClearly()
    {
        string text = Path.Combine(_directory, "notes.txt");
        File.WriteAllText(text, "hello, this is not a checkpoint");
        Assert.Contains("not a MambaGen training state", Assert.Throws<InvalidDataException>(() => _format.Read(text)).Message);

        byte[] bytes = File.ReadAllBytes(Saved());
        bytes[8] = 9; // version field
        string future = Path.Combine(_directory, "future.bin");
        File.WriteAllBytes(future, bytes);
        Assert.Contains("format version 9", Assert.Throws<InvalidDataException>(() => _format.Read(future)).Message);

        string longer = Path.Combine(_directory, "longer.bin");
        File.WriteAllBytes(longer, [.. File.ReadAllBytes(Saved()), 0, 0]);
        Assert.Throws<InvalidDataException>(() => _format.Read(longer));

        Assert.Throws<FileNotFoundException>(() => _format.Read(Path.Combine(_directory, "missing.bin")));
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue()
    {
        // The CRC-32/ISO-HDLC catalogue check value for the ASCII string "123456789".
        Assert.Equal(0xCBF43926u, Crc32.Compute(Encoding.ASCII.GetBytes("123456789")));
    }
}
