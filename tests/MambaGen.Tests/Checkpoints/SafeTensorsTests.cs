using System.Buffers.Binary;
using MambaGen.Checkpoints;

namespace MambaGen.Tests.Checkpoints;

public class SafeTensorsTests
{
    [Fact]
    public void F32RoundTripIsBitExactWithShapesAndMetadata()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        float[] special = [0f, -0f, 1.5f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.Epsilon, float.MaxValue, -3.25e-20f];
        float[] matrix = Enumerable.Range(0, 12).Select(i => i * 0.1f - 0.35f).ToArray();
        SafeTensorsWriter.Write(path,
        [
            new SafeTensor("special", [9], special),
            new SafeTensor("matrix", [3, 1, 4], matrix),
            new SafeTensor("scalar", [], new[] { 42f }),
            new SafeTensor("empty", [0, 5], Array.Empty<float>()),
        ], new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode" });

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(["empty", "matrix", "scalar", "special"], file.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode" }, file.Metadata);
        var entry = file.Tensors["matrix"];
        Assert.Equal(DType.F32, entry.DType);
        Assert.Equal([3, 1, 4], entry.Shape);
        Assert.Equal(48, entry.ByteLength);
        Assert.Equal(12, entry.ElementCount);
        Assert.Equal(Bits(special), Bits(file.ReadFloat32("special")));
        Assert.Equal(Bits(matrix), Bits(file.ReadFloat32("matrix")));
        Assert.Equal([42f], file.ReadFloat32("scalar"));
        Assert.Empty(file.ReadFloat32("empty"));
        Assert.Equal(Array.Empty<int>(), file.Tensors["scalar"].Shape);
    }

    [Fact]
    public void TensorsAreLaidOutInTheGivenOrderAfterAnEightByteAlignedSpacePaddedHeader()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, [new SafeTensor("z", [2], new[] { 1f, 2f }), new SafeTensor("a", [1], new[] { 3f }, DType.BF16)]);

        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.StartsWith("{", header);
        Assert.Matches("^[^ ]*} *$", header);
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(0, file.Tensors["z"].DataOffset);
        Assert.Equal(8, file.Tensors["a"].DataOffset);
        // 3.0 in bfloat16 is 0x4040, stored little-endian right after z's 8 bytes.
        Assert.Equal(new byte[] { 0x40, 0x40 }, bytes[^2..]);
    }

    [Fact]
    public void F16WriteRoundsToNearestEvenAndStoresIeeeHalfBits()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        // Exactly representable in binary16 (11-bit significand, exponent down to 2^-24 subnormal), then three
        // rounding cases worked by hand: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 → even significand 1;
        // 1 + 3·2^-11 ties between 1 + 2^-10 and 1 + 2^-9 → 1 + 2^-9; 65520 ties between 65504 and 2^16,
        // which overflows → +∞.
        float[] exact = [0f, -0f, 1f, -2f, 0.5f, 65504f, MathF.ScaleB(1, -24), 1 + MathF.ScaleB(1, -10), 1023.5f, -0.0009765625f];
        float[] ties = [1 + MathF.ScaleB(1, -11), 1 + 3 * MathF.ScaleB(1, -11), 65520f];
        float[] tiesRounded = [1f, 1 + MathF.ScaleB(1, -9), float.PositiveInfinity];
        SafeTensorsWriter.Write(path, [new SafeTensor("exact", [exact.Length], exact, DType.F16), new SafeTensor("ties", [3], ties, DType.F16)]);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(DType.F16, file.Tensors["exact"].DType);
        Assert.Equal(Bits(exact), Bits(file.ReadFloat32("exact")));
        Assert.Equal(tiesRounded, file.ReadFloat32("ties"));
        byte[] bytes = File.ReadAllBytes(path);
        long dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        // exact[2] = 1.0 is 0x3C00 in binary16.
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan((int)dataStart + 4)));
    }

    [Fact]
    public void BF16WriteRoundsToNearestEven()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        // bfloat16 keeps 8 significand bits. Exact: small integers up to 256, powers of two over the fp32 range.
        // Hand-worked rounding: 1 + 2^-8 ties → 1; 1 + 3·2^-8 ties → 1 + 2^-6 (even); just above a tie rounds up.
        float[] exact = [0f, -0f, 1f, -3f, 255f, 0.15625f, MathF.ScaleB(1, 100), MathF.ScaleB(1, -126), float.NegativeInfinity];
        float[] rounding = [1 + MathF.ScaleB(1, -8), 1 + 3 * MathF.ScaleB(1, -8), 1 + MathF.ScaleB(1, -8) + MathF.ScaleB(1, -20), 257f];
        float[] rounded = [1f, 1 + MathF.ScaleB(1, -6), 1 + MathF.ScaleB(1, -7), 256f];
        SafeTensorsWriter.Write(path,
        [
            new SafeTensor("exact", [exact.Length], exact, DType.BF16),
            new SafeTensor("rounding", [4], rounding, DType.BF16),
            new SafeTensor("nan", [1], new[] { float.NaN }, DType.BF16),
        ]);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(Bits(exact), Bits(file.ReadFloat32("exact")));
        Assert.Equal(rounded, file.ReadFloat32("rounding"));
        Assert.True(float.IsNaN(file.ReadFloat32("nan")[0]));
    }

    [Fact]
    public void LargeTensorsConvertAcrossChunkBoundaries()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        // 300,001 elements: several 64 Ki-element write chunks and 256 KiB read chunks, with ragged ends. Integers
        // of magnitude ≤ 2048 are exact in F16 and ≤ 256 exact in BF16, so the round trip must be exact.
        const int Count = 300_001;
        float[] halfValues = Enumerable.Range(0, Count).Select(i => (float)(i % 4097 - 2048)).ToArray();
        float[] bfloatValues = Enumerable.Range(0, Count).Select(i => (float)(i % 513 - 256)).ToArray();
        SafeTensorsWriter.Write(path, [new SafeTensor("h", [Count], halfValues, DType.F16), new SafeTensor("b", [Count], bfloatValues, DType.BF16)]);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(halfValues, file.ReadFloat32("h"));
        Assert.Equal(bfloatValues, file.ReadFloat32("b"));
    }

    [Fact]
    public void ReadsHandMadeF16AndBF16BitPatterns()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        // binary16: 0x3C00 = 1, 0xC000 = −2, 0x7BFF = 65504 (max), 0x0001 = 2^-24 (min subnormal), 0x8000 = −0,
        // 0x7C00 = +∞, 0x3555 = 1365/4096.
        ushort[] halfBits = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0x3555];
        float[] halfValues = [1f, -2f, 65504f, MathF.ScaleB(1, -24), -0f, float.PositiveInfinity, 1365f / 4096f];
        // bfloat16 is the upper half of fp32: 0x3F80 = 1, 0xC040 = −3, 0x7F80 = +∞, 0x0001 = 2^-133, 0x8000 = −0.
        // Forty of them so the vectorised widening runs, not only its scalar tail.
        ushort[] bfloatPattern = [0x3F80, 0xC040, 0x7F80, 0x0001, 0x8000];
        float[] bfloatPatternValues = [1f, -3f, float.PositiveInfinity, MathF.ScaleB(1, -133), -0f];
        var bfloatBits = Enumerable.Range(0, 40).Select(i => bfloatPattern[i % 5]).ToArray();
        var bfloatValues = Enumerable.Range(0, 40).Select(i => bfloatPatternValues[i % 5]).ToArray();
        File.WriteAllBytes(path, RawSafeTensors.File(
            ("h", "F16", [7], RawSafeTensors.LittleEndian(halfBits)),
            ("b", "BF16", [8, 5], RawSafeTensors.LittleEndian(bfloatBits)),
            ("d", "F64", [2], RawSafeTensors.LittleEndian(0.25, -1e300))));

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(Bits(halfValues), Bits(file.ReadFloat32("h")));
        Assert.Equal(Bits(bfloatValues), Bits(file.ReadFloat32("b")));
        // F64 narrows like a C# cast: −1e300 overflows fp32 to −∞.
        Assert.Equal([0.25f, float.NegativeInfinity], file.ReadFloat32("d"));
    }

    [Fact]
    public void ReadsIntegerTensors()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        File.WriteAllBytes(path, RawSafeTensors.File(
            ("ids", "I64", [2, 3], RawSafeTensors.LittleEndian(0L, 1L, 50279L, -1L, 7L, 123456789L)),
            ("big", "I64", [1], RawSafeTensors.LittleEndian(1L << 40)),
            ("small", "I32", [2], [0x05, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])));

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([0L, 1L, 50279L, -1L, 7L, 123456789L], file.ReadInt64("ids"));
        Assert.Equal([0, 1, 50279, -1, 7, 123456789], file.ReadInt32("ids"));
        Assert.Equal([5L, -1L], file.ReadInt64("small"));
        var tooBig = Assert.Throws<CheckpointException>(() => file.ReadInt32("big"));
        Assert.Contains("'big' element 0 is 1099511627776", tooBig.Message);
        var notInteger = Assert.Throws<CheckpointException>(() => SafeTensorsFileFloat(path, "ids"));
        Assert.Contains("'ids' has dtype I64", notInteger.Message);
    }

    [Fact]
    public void WrongKeysDtypesAndDestinationsAreReported()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, [new SafeTensor("w", [2, 2], new float[4])]);
        using var file = SafeTensorsFile.Open(path);

        var missing = Assert.Throws<CheckpointException>(() => file.ReadFloat32("nope"));
        Assert.Equal($"{path}: there is no tensor 'nope'.", missing.Message);
        var notInteger = Assert.Throws<CheckpointException>(() => file.ReadInt64("w"));
        Assert.Contains("'w' has dtype F32, not I64 or I32", notInteger.Message);
        var wrongLength = Assert.Throws<ArgumentException>(() => file.ReadFloat32("w", new float[3]));
        Assert.Contains("'w' [2, 2] has 4 elements but the destination holds 3", wrongLength.Message);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadFloat32("w", new float[4]));
    }

    [Fact]
    public void WriterRejectsInconsistentTensorsBeforeWriting()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        Assert.Contains("shape [2, 3] (6 elements) but 5 values",
            Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new SafeTensor("w", [2, 3], new float[5])])).Message);
        Assert.Contains("'w' appears twice",
            Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new SafeTensor("w", [1], new float[1]), new SafeTensor("w", [1], new float[1])])).Message);
        Assert.Contains("not I64",
            Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new SafeTensor("w", [1], new float[1], DType.I64)])).Message);
        Assert.Contains("'__metadata__' cannot be a tensor name",
            Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new SafeTensor("__metadata__", [1], new float[1])])).Message);
        Assert.Empty(dir.FileNames());
    }

    [Fact]
    public void FailedWritesLeaveTheExistingFileIntactAndNoTemporaryFiles()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, [new SafeTensor("w", [2], new[] { 1f, 2f })]);
        byte[] original = File.ReadAllBytes(path);

        // Rejected up front: the data does not match the shape.
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new SafeTensor("w", [3], new[] { 5f, 6f })]));
        Assert.Equal(original, File.ReadAllBytes(path));

        // Fails mid-write: the header and the first tensor are already in the temporary file when the second
        // tensor's data cannot be produced.
        var failure = Assert.Throws<IOException>(() => SafeTensorsWriter.Write(path,
            [new SafeTensor("a", [2], new[] { 5f, 6f }), new SafeTensor("b", [1000], FailingMemory.OfLength(1000))]));
        Assert.Contains("simulated", failure.Message);
        Assert.Equal(original, File.ReadAllBytes(path));
        Assert.Equal(["t.safetensors"], dir.FileNames());

        // A successful write replaces the file and leaves nothing else behind.
        SafeTensorsWriter.Write(path, [new SafeTensor("w", [1], new[] { 9f })]);
        Assert.Equal(["t.safetensors"], dir.FileNames());
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([9f], file.ReadFloat32("w"));
    }

    private static float[] SafeTensorsFileFloat(string path, string key)
    {
        using var file = SafeTensorsFile.Open(path);
        return file.ReadFloat32(key);
    }

    /// <summary>Compares floats by bit pattern so NaN, −0 and subnormals are checked exactly.</summary>
    private static uint[] Bits(float[] values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();
}
