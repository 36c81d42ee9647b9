using MambaGen.Checkpoints;
using MambaGen.Tests.Checkpoints;
using MambaGen.Cpu;
using MambaGen.Cuda.Backend;
using MambaGen.Tests.Cuda;

namespace MambaGen.Tests.Model;

/// <summary>
/// Parameter storage past 2³¹ values (segments, long offsets) and 16-bit-only loading. Nothing here allocates a large
/// model: the mamba-2.8b layout is built and checked without its values.
/// </summary>
public sealed class LargeModelStorageTests
{
    /// <summary>mamba-2.8b's parameter count from its shape, in long arithmetic: Vocab·D + Layers·(per-layer tensors) + D.</summary>
    private static long Mamba2_8BCount()
    {
        long v = 50280, d = 2560, ed = 5120, n = 16, r = 160, k = 4, layers = 64;
        long perLayer = d + 2 * ed * d + ed * k + ed + (r + 2 * n) * ed + ed * r + ed + ed * n + ed + d * ed;
        return v * d + layers * perLayer + d;
    }

    [Fact]
    public void Mamba2_8BLayoutSplitsAtTensorBoundariesWithOffsetsPast2To31()
    {
        var layout = new ParameterLayout(Mamba2_8BShape.ModelShape);
        Assert.Equal(Mamba2_8BCount(), layout.TotalLength);
        Assert.Equal(2_768_345_600L, layout.TotalLength);
        Assert.Equal(2, layout.Segments.Count);
        Assert.Equal(0L, layout.Segments[0].Start);
        Assert.Equal(layout.TotalLength, layout.Segments[^1].Start + layout.Segments[^1].Length);
        for (int i = 1; i < layout.Segments.Count; i++)
            Assert.Equal(layout.Segments[i - 1].Start + layout.Segments[i - 1].Length, layout.Segments[i].Start);
        Assert.All(layout.Segments, s => Assert.InRange(s.Length, 1, Array.MaxLength));
        long next = 0;
        foreach (var tensor in layout.Tensors)
        {
            Assert.Equal(next, tensor.Offset);
            var segment = layout.Segments[tensor.Segment];
            Assert.True(tensor.Offset >= segment.Start && tensor.Offset + tensor.Length <= segment.Start + segment.Length, $"{tensor.Key} crosses its segment");
            next += tensor.Length;
        }
        // The last layers lie beyond int.MaxValue, so int offsets would have wrapped.
        Assert.True(layout.LayerOffsets[63].OutProj > int.MaxValue);
        Assert.True(layout.NormF > int.MaxValue);
        Assert.Throws<NotSupportedException>(() => layout.SingleSegmentLength);
    }

    [Fact]
    public void Mamba2_8BConfigInBothLayoutsGivesTheDeclaredShape()
    {
        using var dir = new ScratchDirectory();
        string hf = Path.Combine(dir.Path, "hf.json"), ssm = Path.Combine(dir.Path, "ssm.json");
        // The fields of state-spaces/mamba-2.8b-hf's and state-spaces/mamba-2.8b's config.json that describe the architecture.
        File.WriteAllText(hf, """
            {"architectures": ["MambaForCausalLM"], "model_type": "mamba", "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
             "conv_kernel": 4, "expand": 2, "hidden_size": 2560, "intermediate_size": 5120, "layer_norm_epsilon": 1e-05,
             "num_hidden_layers": 64, "residual_in_fp32": true, "state_size": 16, "time_step_rank": 160, "use_bias": false,
             "use_conv_bias": true, "vocab_size": 50280, "tie_word_embeddings": true}
            """);
        File.WriteAllText(ssm, """
            {"d_model": 2560, "n_layer": 64, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true,
             "fused_add_norm": true, "pad_vocab_size_multiple": 8}
            """);
        static MambaShape Architecture(MambaShape s) => s with { BosTokenId = null, EosTokenId = null, PadTokenId = null };
        Assert.Equal(Architecture(Mamba2_8BShape.ModelShape), Architecture(MambaConfig.ReadShape(hf)));
        Assert.Equal(Architecture(Mamba2_8BShape.ModelShape), Architecture(MambaConfig.ReadShape(ssm)));
    }

    /// <summary>A small model laid out in many segments (each at most its largest tensor) computes exactly as in one.</summary>
    [Fact]
    public void SplitStorageGivesTheSameNumbersBitForBit()
    {
        var whole = BiasedUntiedModel.Create(5);
        var split = BiasedUntiedModel.FromParameters(Split(whole.Parameters));
        Assert.True(split.Parameters.Layout.Segments.Count > 4);
        int[] tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        Assert.Equal(whole.Forward(tokens, 2), split.Forward(tokens, 2));

        foreach (var model in new[] { whole, split }) model.UseHalfPrecisionWeights(HalfPrecision.BFloat16);
        Assert.Equal(DecodeLogits(whole, tokens), DecodeLogits(split, tokens));

        using var dir = new ScratchDirectory();
        split.Save(dir.Path);
        Assert.Equal(whole.Parameters.Values, BiasedUntiedModel.Load(dir.Path).Parameters.Values);
        var error = Assert.Throws<NotSupportedException>(() => split.ForwardBackward(tokens, tokens, 2, new float[whole.Parameters.Values.Length]));
        Assert.Contains("segments", error.Message);
    }

    /// <summary>
    /// The CUDA backend refuses a model past 2³¹ parameters (its one GPU run gave wrong logits) before touching a device,
    /// naming the count and the CPU as the way to run it; a small model passes the same check.
    /// </summary>
    [Fact]
    public void TheCudaBackendRefusesModelsPastOneArray()
    {
        var error = Assert.Throws<NotSupportedException>(() => CudaMambaModel.RequireValidatedSize(new ParameterLayout(Mamba2_8BShape.ModelShape)));
        Assert.Contains("2768345600 parameters", error.Message);
        Assert.Contains("Device.Cpu", error.Message);
        CudaMambaModel.RequireValidatedSize(new ParameterLayout(BiasedUntiedModel.ModelShape));
    }

    /// <summary>A 16-bit-only load laid out in many segments (the loader's placement, as mamba-2.8b needs) computes exactly as in one.</summary>
    [Fact]
    public void SixteenBitOnlyLoadInManySegmentsGivesTheSameNumbers()
    {
        using var dir = new ScratchDirectory();
        var source = BiasedUntiedModel.Create(8).Parameters;
        WriteSixteenBitCheckpoint(dir.Path, source, DType.BF16);
        var one = BiasedUntiedModel.FromParameters(MambaCheckpoint.Load(dir.Path, source.Shape, new CheckpointLoadOptions { KeepSixteenBitWeights = true }));
        var many = BiasedUntiedModel.FromParameters(MambaCheckpoint.Load(dir.Path, source.Shape,
            new CheckpointLoadOptions { KeepSixteenBitWeights = true, MaxSegmentLength = source.Layout.Tensors.Max(t => t.Length) }));
        Assert.True(many.Parameters.Layout.Segments.Count > 4);
        int[] tokens = [3, 1, 4, 1, 5, 9, 2, 6];
        Assert.Equal(one.Forward(tokens, 2), many.Forward(tokens, 2));
        Assert.Equal(DecodeLogits(one, tokens), DecodeLogits(many, tokens));
    }

    /// <summary>
    /// A bf16 checkpoint loaded 16-bit only keeps the file's bits: its one-token steps equal, bit for bit, those of the fp32
    /// load decoding from a bf16 copy (the same bits rounded back); its prefill (16-bit products) stays within 1e-5 of the
    /// largest logit of the fp32 load's prefill over the same weights. Training and saving are refused.
    /// </summary>
    [Fact]
    public void SixteenBitOnlyLoadKeepsTheFileBits()
    {
        using var dir = new ScratchDirectory();
        var source = BiasedUntiedModel.Create(8).Parameters;
        WriteSixteenBitCheckpoint(dir.Path, source, DType.BF16);

        var fp32 = BiasedUntiedModel.Load(dir.Path);
        fp32.UseHalfPrecisionWeights(HalfPrecision.BFloat16);
        var sixteen = BiasedUntiedModel.FromParameters(
            MambaCheckpoint.Load(dir.Path, BiasedUntiedModel.ModelShape, new CheckpointLoadOptions { KeepSixteenBitWeights = true }));
        Assert.Equal(HalfPrecision.BFloat16, sixteen.DecodeWeightPrecision);
        var inProj = sixteen.Parameters.Layout[ParameterLayout.LayerKey(0, "mixer.in_proj.weight")];
        Assert.True(inProj.ProductOnly);
        Assert.Throws<ArgumentOutOfRangeException>(() => sixteen.Parameters.Slice(inProj));
        var expectedBits = new ushort[inProj.Length];
        HalfWeights.Round(fp32.Parameters.Slice(inProj), expectedBits, HalfPrecision.BFloat16);
        Assert.Equal(expectedBits, sixteen.Parameters.SixteenBitWeights!.Span(inProj.Offset, inProj.Length).ToArray());

        int[] tokens = [7, 3, 11, 2, 5];
        Assert.Equal(DecodeLogits(fp32, tokens), DecodeLogits(sixteen, tokens));
        float[] expected = fp32.Forward(tokens, 1), actual = sixteen.Forward(tokens, 1);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * scale, $"logit {i}: {actual[i]} vs {expected[i]}");

        var training = Assert.Throws<InvalidOperationException>(() => sixteen.ForwardBackward(tokens, tokens, 1, new float[source.Values.Length]));
        Assert.Contains(nameof(CheckpointLoadOptions.KeepSixteenBitWeights), training.Message);
        Assert.Throws<InvalidOperationException>(() => sixteen.Save(Path.Combine(dir.Path, "copy")));
        Assert.Throws<InvalidOperationException>(() => sixteen.UseHalfPrecisionWeights(HalfPrecision.Float16));
    }

    [Fact]
    public void SixteenBitOnlyRefusesAnFp32Checkpoint()
    {
        using var dir = new ScratchDirectory();
        BiasedUntiedModel.Create(2).Save(dir.Path);
        var error = Assert.Throws<CheckpointException>(() =>
            MambaCheckpoint.Load(dir.Path, BiasedUntiedModel.ModelShape, new CheckpointLoadOptions { KeepSixteenBitWeights = true }));
        Assert.Contains("is F32", error.Message);
    }

    /// <summary>A checkpoint of <paramref name="parameters"/> with every tensor stored in <paramref name="dtype"/> (F16 or BF16, rounded to nearest even).</summary>
    internal static void WriteSixteenBitCheckpoint(string dir, MambaParameters parameters, DType dtype)
    {
        SafeTensorsWriter.Write(Path.Combine(dir, MambaCheckpoint.WeightsFileName),
            parameters.Layout.Tensors.Select(t => new SafeTensor(t.Key, t.Shape, parameters.Slice(t).ToArray(), dtype)).ToList(),
            new Dictionary<string, string> { ["format"] = "pt" });
        MambaConfig.WriteHfConfig(Path.Combine(dir, MambaCheckpoint.ConfigFileName), parameters.Shape);
    }

    /// <summary>The same values in a layout whose segments are as short as its largest tensor allows.</summary>
    internal static MambaParameters Split(MambaParameters whole)
    {
        var layout = new ParameterLayout(whole.Shape, whole.Layout.Tensors.Max(t => t.Length));
        var split = new MambaParameters(layout);
        foreach (var tensor in layout.Tensors) whole.Slice(tensor).CopyTo(split.Slice(tensor));
        return split;
    }

    /// <summary>Logits of a prefill of the first token, then one-token steps through the rest (the decode path).</summary>
    private static float[] DecodeLogits(BiasedUntiedModel model, int[] tokens)
    {
        var state = model.CreateDecodeState(1);
        var logits = new float[tokens.Length * BiasedUntiedModel.Vocab];
        for (int i = 0; i < tokens.Length; i++) model.Advance(state, tokens.AsSpan(i, 1), logits.AsSpan(i * BiasedUntiedModel.Vocab, BiasedUntiedModel.Vocab));
        return logits;
    }
}
