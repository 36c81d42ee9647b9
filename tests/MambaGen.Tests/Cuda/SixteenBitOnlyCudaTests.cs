using MambaGen.Checkpoints;
using MambaGen.Cuda.Backend;
using MambaGen.Generation;
using MambaGen.Tests.Checkpoints;
using MambaGen.Tests.Model;

namespace MambaGen.Tests.Cuda;

/// <summary>mamba-2.8b's widths (D 2560, ED 5120, R 160, N 16, K 4) with two layers and a small vocabulary: 83 M parameters.</summary>
[MambaModel(DModel = 2560, Layers = 2, Vocab = 512)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
public partial class Wide2560Model { }

/// <summary>16-bit-only parameters on a bf16 GPU, and the bf16 GPU path at mamba-2.8b's widths.</summary>
public class SixteenBitOnlyCudaTests
{
    private static readonly Device Bf16 = Device.Cuda(0, GpuPrecision.BFloat16);

    /// <summary>
    /// A bf16 checkpoint loaded 16-bit only puts on the GPU exactly what the fp32 load does after its bf16 rounding (the
    /// same bf16 bits for the products, the same fp32 values for the rest), and the same kernels run: every logit and
    /// every greedy token must be equal, bit for bit.
    /// </summary>
    [GpuFact]
    public void SixteenBitOnlyUploadEqualsRoundedFp32MastersBitForBit()
    {
        Check(BiasedUntiedModel.Create(4).Parameters, p => BiasedUntiedModel.FromParameters(p).To(Bf16));
        Check(Wide2560Model.Create(4).Parameters, p => Wide2560Model.FromParameters(p).To(Bf16));

        static void Check<T>(MambaParameters source, Func<MambaParameters, T> onGpu) where T : IMambaModel, IDecodingModel
        {
            using var dir = new ScratchDirectory();
            LargeModelStorageTests.WriteSixteenBitCheckpoint(dir.Path, source, DType.BF16);
            using var masters = onGpu(MambaCheckpoint.Load(dir.Path, source.Shape));
            using var sixteen = onGpu(MambaCheckpoint.Load(dir.Path, source.Shape, new CheckpointLoadOptions { KeepSixteenBitWeights = true }));
            int[] tokens = [5, 3, 11, 2, 7, 1, 9, 4];
            Assert.Equal(masters.Forward(tokens, 2), sixteen.Forward(tokens, 2));
            Assert.Equal(masters.Forward(tokens, 1), sixteen.Forward(tokens, 1));
            var options = new GenerationOptions { MaxNewTokens = 6 };
            Assert.Equal(TokenGenerator.Generate(masters, tokens, options), TokenGenerator.Generate(sixteen, tokens, options));
        }
    }

    /// <summary>The bf16 GPU forward at mamba-2.8b's widths against the fp32 CPU, within the bf16 bar of <see cref="BFloat16CudaTests"/>.</summary>
    [GpuFact]
    public void Bf16ForwardAtThe2_8BWidthsMatchesTheCpu()
    {
        var cpu = Wide2560Model.Create(6);
        using var gpu = cpu.To(Bf16);
        int[] tokens = [17, 300, 5, 44, 511, 0, 128, 77, 9, 250];
        var (ratio, error) = BFloat16CudaTests.WorstLogitError(gpu.Forward(tokens, 2), cpu.Forward(tokens, 2));
        Console.WriteLine($"bf16 GPU vs CPU at D 2560: worst error {ratio:P1} of the tolerance");
        Assert.Null(error);
    }

    /// <summary>fp16 decode weights are converted on the device from fp32 weights, which 16-bit-only parameters do not have: refused, naming the option.</summary>
    [GpuFact]
    public void Float16DecodeWeightsAreRefusedForSixteenBitOnlyParameters()
    {
        var source = BiasedUntiedModel.Create(4).Parameters;
        using var dir = new ScratchDirectory();
        LargeModelStorageTests.WriteSixteenBitCheckpoint(dir.Path, source, DType.BF16);
        var parameters = MambaCheckpoint.Load(dir.Path, source.Shape, new CheckpointLoadOptions { KeepSixteenBitWeights = true });
        using var gpu = new CudaMambaModel(parameters, BiasedUntiedModel.CudaSource, "BiasedUntiedModel.cu", Bf16);
        var error = Assert.Throws<NotSupportedException>(() => gpu.DecodeWeights = DecodeWeightType.Float16);
        Assert.Contains(nameof(CheckpointLoadOptions.KeepSixteenBitWeights), error.Message);
        Assert.Equal(DecodeWeightType.Compute, gpu.DecodeWeights);
    }

    /// <summary>
    /// Parameters split into many segments (mamba-2.8b's are two) upload and compute on the GPU exactly as in one
    /// segment: fp32 masters in fp32 and in bf16 arithmetic, and a 16-bit-only load, each bit for bit.
    /// </summary>
    [GpuFact]
    public void ParametersSplitIntoSegmentsComputeTheSameOnTheGpu()
    {
        var whole = BiasedUntiedModel.Create(5).Parameters;
        var split = LargeModelStorageTests.Split(whole);
        Assert.True(split.Layout.Segments.Count > 4);
        AssertSame(whole, split, Device.Cuda());
        AssertSame(whole, split, Bf16);

        using var dir = new ScratchDirectory();
        LargeModelStorageTests.WriteSixteenBitCheckpoint(dir.Path, whole, DType.BF16);
        var oneSegment = MambaCheckpoint.Load(dir.Path, whole.Shape, new CheckpointLoadOptions { KeepSixteenBitWeights = true });
        var segmented = MambaCheckpoint.Load(dir.Path, whole.Shape,
            new CheckpointLoadOptions { KeepSixteenBitWeights = true, MaxSegmentLength = whole.Layout.Tensors.Max(t => t.Length) });
        Assert.True(segmented.Layout.Segments.Count > 4);
        AssertSame(oneSegment, segmented, Bf16);

        static void AssertSame(MambaParameters first, MambaParameters second, Device device)
        {
            using var a = BiasedUntiedModel.FromParameters(first).To(device);
            using var b = BiasedUntiedModel.FromParameters(second).To(device);
            int[] tokens = [5, 3, 11, 2, 7, 1, 9, 4];
            Assert.Equal(a.Forward(tokens, 2), b.Forward(tokens, 2));
            var options = new GenerationOptions { MaxNewTokens = 6 };
            Assert.Equal(TokenGenerator.Generate(a, tokens, options), TokenGenerator.Generate(b, tokens, options));
        }
    }
}
