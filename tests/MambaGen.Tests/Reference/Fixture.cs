using MambaGen.Checkpoints;

namespace MambaGen.Tests.Reference;

/// <summary>
/// One folder of tests/fixtures: a checkpoint saved by HF transformers' save_pretrained plus
/// reference.safetensors with inputs and float64 outputs of HF's own forward/backward (see tests/fixtures/README.md).
/// </summary>
internal sealed class Fixture : IDisposable
{
    private readonly SafeTensorsFile _reference;

    public Fixture(string name)
    {
        Directory = Path.Combine(Root, name);
        _reference = SafeTensorsFile.Open(Path.Combine(Directory, "reference.safetensors"));
    }

    public string Directory { get; }

    /// <summary>
    /// The fixtures folder beside the test assembly (not the host process's base directory: a console runner, as on
    /// the GPU machine, has its own).
    /// </summary>
    public static string Root { get; } = Path.Combine(Path.GetDirectoryName(typeof(Fixture).Assembly.Location)!, "fixtures");

    public int[] Ints(string key) => _reference.ReadInt32(key);

    public float[] Floats(string key) => _reference.ReadFloat32(key);

    public int[] Shape(string key) => _reference.GetEntry(key).Shape;

    public bool Has(string key) => _reference.Tensors.ContainsKey(key);

    public void Dispose() => _reference.Dispose();

    public static float MaxAbsDifference(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        float max = 0;
        for (int i = 0; i < actual.Length; i++) max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        return max;
    }
}
