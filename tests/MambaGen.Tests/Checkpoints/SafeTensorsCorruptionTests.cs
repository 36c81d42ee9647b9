using System.Text;
using MambaGen.Checkpoints;

namespace MambaGen.Tests.Checkpoints;

/// <summary>Every malformed file must fail in <see cref="SafeTensorsFile.Open"/> with a message naming the file and the fault.</summary>
public class SafeTensorsCorruptionTests
{
    [Theory]
    [InlineData("{\"a\": ", 0, "the header is not valid JSON")]
    [InlineData("[1, 2]", 0, "the header must be a JSON object but is a JSON Array")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4,
        "tensor 'a': data_offsets end 8 is beyond the data section, which holds 4 bytes")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", 8, "tensor 'a': data_offsets begin 8 is after end 4")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8,
        "tensor 'a': data_offsets [0, 8] span 8 bytes but shape [3] of F32 needs 12")]
    [InlineData("""{"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]}}""", 4,
        "tensor 'a': data_offsets [0, 4] span 4 bytes but shape [2, 2] of BF16 needs 8")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12,
        "tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12,
        "data bytes 4..8 belong to no tensor")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "(4 trailing bytes belong to no tensor)")]
    [InlineData("""{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'a': dtype \"F7\" is unknown; expected one of BOOL, U8")]
    [InlineData("""{"a":{"dtype":"F32","data_offsets":[0,4]}}""", 4, "tensor 'a' has no 'shape' field")]
    [InlineData("""{"a":{"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'a' has no 'dtype' field")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1]}}""", 4, "tensor 'a' has no 'data_offsets' field")]
    [InlineData("""{"a":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}""", 4, "tensor 'a': 'dtype' must be a JSON String but is 3")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "tensor 'a': shape[0] must be an integer from 0 to 2147483647 but is -1")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,4]}}""", 4, "has too many elements")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}""", 4, "tensor 'a': data_offsets end must be a non-negative integer but is 4.0")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,4]}}""", 4, "tensor 'a': data_offsets begin must be a non-negative integer but is -4")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 8, "tensor 'a': data_offsets must be [begin, end] but has 3 elements")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8,
        "the header lists tensor 'a' twice")]
    [InlineData("""{"a":5}""", 0, "tensor 'a' must be described by a JSON object but is a JSON Number")]
    [InlineData("""{"__metadata__":{"x":1}}""", 0, "'__metadata__' entry 'x' must be a string but is a JSON Number")]
    [InlineData("""{"__metadata__":["x"]}""", 0, "'__metadata__' must be an object of strings but is a JSON Array")]
    public void MalformedHeadersAreRejectedWithTheFault(string header, int dataBytes, string expected)
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, RawSafeTensors.File(header, new byte[dataBytes]));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void InvalidUtf8InTheHeaderIsRejected()
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("bad.safetensors");
        byte[] header = [.. Encoding.UTF8.GetBytes("{\"a"), 0xFF, .. Encoding.UTF8.GetBytes("\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}")];
        File.WriteAllBytes(path, RawSafeTensors.File((ulong)header.Length, header, new byte[4]));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));
        Assert.Equal($"{path}: the header is not valid UTF-8.", error.Message);
    }

    [Theory]
    [InlineData(ulong.MaxValue, "the header length prefix says 18446744073709551615 bytes, more than the 100000000-byte limit")]
    [InlineData(100_000_001UL, "the header length prefix says 100000001 bytes, more than the 100000000-byte limit")]
    [InlineData(1000UL, "the header length prefix says 1000 bytes but only 6 bytes follow it")]
    [InlineData(3UL, "the header is not valid JSON")]
    [InlineData(0UL, "the header is not valid JSON")]
    public void HeaderLengthsThatDoNotFitTheFileAreRejected(ulong declaredLength, string expected)
    {
        using var dir = new ScratchDirectory();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, RawSafeTensors.File(declaredLength, Encoding.UTF8.GetBytes("{}"), new byte[4]));

        var error = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));
        Assert.Equal(path + ": ", error.Message[..(path.Length + 2)]);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void EveryTruncationOfAValidFileIsRejectedAtOpen()
    {
        using var dir = new ScratchDirectory();
        string whole = dir.File("whole.safetensors");
        SafeTensorsWriter.Write(whole,
            [new SafeTensor("a", [2, 3], new float[6]), new SafeTensor("b", [5], new float[5], DType.BF16)],
            new Dictionary<string, string> { ["format"] = "pt" });
        byte[] bytes = File.ReadAllBytes(whole);
        int headerEnd = 8 + BitConverter.ToInt32(bytes, 0);
        string cut = dir.File("cut.safetensors");

        var messages = new Dictionary<int, string>();
        for (int length = 0; length < bytes.Length; length++)
        {
            File.WriteAllBytes(cut, bytes[..length]);
            messages[length] = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(cut).Dispose()).Message;
        }

        Assert.Contains("the file is 5 bytes, shorter than the 8-byte header length prefix", messages[5]);
        Assert.Contains($"the header length prefix says {headerEnd - 8} bytes but only 12 bytes follow it", messages[20]);
        Assert.Contains($"the header length prefix says {headerEnd - 8} bytes but only {headerEnd - 9} bytes follow it", messages[headerEnd - 1]);
        // Cut inside the data: the last tensor now reaches past the end of the file.
        Assert.Contains("tensor 'b': data_offsets end 34 is beyond the data section, which holds 33 bytes", messages[bytes.Length - 1]);
        Assert.Contains("tensor 'a': data_offsets end 24 is beyond the data section, which holds 23 bytes", messages[headerEnd + 23]);
    }
}
