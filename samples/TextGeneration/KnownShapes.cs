using MambaGen;
using MambaGen.Checkpoints;
using MambaGen.Cpu;
using MambaGen.Generation;

/// <summary>
/// The model shapes this sample can run. A generated type is specialised to one shape at compile time, so a checkpoint
/// is matched to a type by its config.json; to run another shape, declare it here (see <see cref="Pick"/>'s error).
/// </summary>
internal static class KnownShapes
{
    private sealed record Known(string Name, MambaShape Shape, Func<string, Device, HalfPrecision?, IDecodingModel> Load);

    private static readonly Known[] All =
    [
        new("mamba-130m (state-spaces/mamba-130m, -hf)", Mamba130M.ModelShape, (directory, device, half) => Prepared(Mamba130M.Load(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
        new("mamba-370m (state-spaces/mamba-370m, -hf)", Mamba370M.ModelShape, (directory, device, half) => Prepared(Mamba370M.Load(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
        new("mamba-790m (state-spaces/mamba-790m, -hf)", Mamba790M.ModelShape, (directory, device, half) => Prepared(Mamba790M.Load(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
        new("mamba-1.4b (state-spaces/mamba-1.4b, -hf)", Mamba1_4B.ModelShape, (directory, device, half) => Prepared(Mamba1_4B.Load(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
        new("mamba-2.8b (state-spaces/mamba-2.8b, -hf)", Mamba2_8B.ModelShape, (directory, device, half) => Prepared(LoadLarge(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
        new("tiny test shape (D 16, 2 layers, vocabulary 1607 of the tokenizer fixture)", TinyTextModel.ModelShape, (directory, device, half) => Prepared(TinyTextModel.Load(directory, device), half, (m, h) => m.UseHalfPrecisionWeights(h))),
    ];

    /// <summary>
    /// Loads the checkpoint in <paramref name="directory"/> into the declared type whose shape its config.json has, on
    /// <paramref name="device"/>; on the CPU, one-token steps read a <paramref name="half"/> copy of the weights when given.
    /// </summary>
    public static (string Name, IDecodingModel Model) Pick(string directory, Device device, HalfPrecision? half = null)
    {
        string config = Path.Combine(directory, "config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"{directory} has no config.json; a checkpoint directory holds config.json, model.safetensors and tokenizer.json.", config);
        var shape = WithoutTokenIds(MambaGen.Checkpoints.MambaConfig.ReadShape(config));
        foreach (var known in All)
            if (WithoutTokenIds(known.Shape) == shape)
                return (known.Name, known.Load(directory, device, half));
        throw new InvalidOperationException(
            $"{config} describes a shape this sample does not declare (D {shape.DModel}, {shape.Layers} layers, vocabulary {shape.Vocab}, N {shape.DState}, " +
            $"ED {shape.DInner}, R {shape.DtRank}, K {shape.ConvKernel}). Known: {string.Join("; ", All.Select(k => k.Name))}. " +
            "Declare it in samples/TextGeneration/KnownShapes.cs: [MambaModel(ConfigFile = \"path/to/config.json\")] internal partial class MyModel { } " +
            "with the config listed as <AdditionalFiles> in TextGeneration.csproj, and add MyModel to KnownShapes.All.");
    }

    /// <summary>
    /// mamba-2.8b (2.77 billion parameters): a checkpoint stored in 16 bits stays 16-bit in memory (5.5 GB instead of
    /// 11 GB of fp32) on the CPU and on a bf16 GPU (<c>--device cuda:bf16</c>); an fp32 one, or an fp32 GPU, loads fp32.
    /// </summary>
    private static Mamba2_8B LoadLarge(string directory, Device device)
    {
        var inProj = ParameterLayout.LayerKey(0, "mixer.in_proj.weight");
        bool stored16Bit;
        using (var file = SafeTensorsFile.Open(Path.Combine(directory, MambaCheckpoint.WeightsFileName)))
            stored16Bit = file.Tensors.TryGetValue(inProj, out var entry) && entry.DType is DType.BF16 or DType.F16;
        bool keep16Bit = stored16Bit && (device.Kind == DeviceKind.Cpu || device.Precision == GpuPrecision.BFloat16);
        var parameters = MambaCheckpoint.Load(directory, Mamba2_8B.ModelShape, new CheckpointLoadOptions { KeepSixteenBitWeights = keep16Bit });
        var model = Mamba2_8B.FromParameters(parameters);
        return device.Kind == DeviceKind.Cpu ? model : model.To(device);
    }

    /// <summary>Applies the 16-bit decode weights through <paramref name="useHalf"/> when asked for (a CPU model's option).</summary>
    private static T Prepared<T>(T model, HalfPrecision? half, Action<T, HalfPrecision> useHalf) where T : IDecodingModel
    {
        if (half is { } format) useHalf(model, format);
        return model;
    }

    private static MambaShape WithoutTokenIds(MambaShape shape) => shape with { BosTokenId = null, EosTokenId = null, PadTokenId = null };
}

/// <summary>The published mamba-130m: D 768, 24 layers, N 16, ED 1536, R 48, K 4, vocabulary 50277 padded to 50280.</summary>
[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba130M { }

/// <summary>The published mamba-370m: D 1024, 48 layers.</summary>
[MambaModel(DModel = 1024, Layers = 48, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba370M { }

/// <summary>The published mamba-790m: D 1536, 48 layers.</summary>
[MambaModel(DModel = 1536, Layers = 48, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba790M { }

/// <summary>The published mamba-1.4b: D 2048, 48 layers.</summary>
[MambaModel(DModel = 2048, Layers = 48, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba1_4B { }

/// <summary>The published mamba-2.8b: D 2560, 64 layers (2.77 billion parameters, two storage segments).</summary>
[MambaModel(DModel = 2560, Layers = 64, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba2_8B { }

/// <summary>The shape of the tests' text checkpoint: random weights over the trained tokenizer fixture's 1,607 ids.</summary>
[MambaModel(DModel = 16, Layers = 2, Vocab = 1607, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 4, Expand = 2)]
internal partial class TinyTextModel { }
