using System.Diagnostics;
using System.Text.Json;
using MambaGen.Checkpoints;
using MambaGen.Cuda;
using MambaGen.Generation;

namespace MambaGen.Tests.Cuda;

/// <summary>The published mamba-2.8b shape: D 2560, 64 layers, vocabulary 50277 padded to 50280 (2.77 billion parameters).</summary>
[MambaModel(DModel = 2560, Layers = 64, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 16, Expand = 2, ConvKernel = 4)]
internal partial class Mamba2_8BShape { }

/// <summary>
/// A fact that needs a GPU and a mamba-2.8b-shaped checkpoint made by transformers (tests/gpu/make_large_checkpoint.py)
/// in the directory named by <see cref="Variable"/>: 5.6 GB on disk, so never part of the repository or of CI.
/// </summary>
public sealed class LargeCheckpointFactAttribute : FactAttribute
{
    /// <summary>The environment variable naming the checkpoint directory.</summary>
    public const string Variable = "MAMBAGEN_LARGE_CHECKPOINT";

    /// <summary>Sets <see cref="FactAttribute.Skip"/> unless the checkpoint directory is named and a GPU is usable.</summary>
    public LargeCheckpointFactAttribute()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Variable)))
            Skip = $"{Variable} names no mamba-2.8b checkpoint directory (made on the GPU machine by tests/gpu/make_large_checkpoint.py).";
        else if (!CudaContext.IsAvailable(out var reason))
            Skip = $"No usable CUDA device: {reason}";
    }
}

public sealed class LargeCheckpointCudaTests
{
    /// <summary>
    /// mamba-2.8b in bf16, loaded 16-bit only, against transformers' fp32 forward (TF32 off) from the same bf16 weights:
    /// the CPU (fp32 arithmetic over the exact bf16 weights) within 0.1 % of the largest |logit|, the GPU (bf16
    /// arithmetic) within 5 %, and the GPU's greedy tokens equal to transformers' generate(do_sample=False). For
    /// comparison the same checkpoint is also loaded with fp32 masters and run on the GPU in bf16 and in fp32. Load
    /// times, host memory and every error go to dotnet-results.json beside the checkpoint before anything is asserted.
    /// </summary>
    [LargeCheckpointFact]
    public void SixteenBitOnly2_8BMatchesTransformers()
    {
        string dir = Environment.GetEnvironmentVariable(LargeCheckpointFactAttribute.Variable)!;
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement;
        int[] prompt = reference.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] greedy = reference.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        float[] expected = reference.GetProperty("lastLogits").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        double scale = expected.Max(Math.Abs);
        var results = new Dictionary<string, object> { ["maxAbsReferenceLogit"] = scale, ["referenceTokens"] = greedy };
        using var process = Process.GetCurrentProcess();
        long WorkingSet() { GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); process.Refresh(); return process.WorkingSet64; }
        var clock = new Stopwatch();

        int[] RunOnGpu(MambaParameters parameters, GpuPrecision precision, string name)
        {
            clock.Restart();
            using var gpu = Mamba2_8BShape.FromParameters(parameters).To(Device.Cuda(0, precision));
            results[name + "UploadSeconds"] = clock.Elapsed.TotalSeconds;
            results[name + "MaxError"] = MaxError(gpu.Forward(prompt, 1, LogitsFor.LastPosition), expected);
            int[] tokens = gpu.Generate(prompt, new GenerationOptions { MaxNewTokens = greedy.Length });
            results[name + "Tokens"] = tokens;
            return tokens;
        }

        int[] gpuTokens;
        try
        {
            long before = WorkingSet();
            clock.Start();
            var sixteenBit = MambaCheckpoint.Load(dir, Mamba2_8BShape.ModelShape, new CheckpointLoadOptions { KeepSixteenBitWeights = true });
            results["sixteenBitLoadSeconds"] = clock.Elapsed.TotalSeconds;
            results["sixteenBitHostBytes"] = WorkingSet() - before;
            results["parameters"] = sixteenBit.Count;
            results["segments"] = sixteenBit.Layout.Segments.Count;
            gpuTokens = RunOnGpu(sixteenBit, GpuPrecision.BFloat16, "gpuSixteenBit");
            clock.Restart();
            results["cpuSixteenBitMaxError"] = MaxError(Mamba2_8BShape.FromParameters(sixteenBit).Forward(prompt, 1, LogitsFor.LastPosition), expected);
            results["cpuSixteenBitForwardSeconds"] = clock.Elapsed.TotalSeconds;
            sixteenBit = null!;

            before = WorkingSet();
            clock.Restart();
            var fp32 = MambaCheckpoint.Load(dir, Mamba2_8BShape.ModelShape);
            results["fp32LoadSeconds"] = clock.Elapsed.TotalSeconds;
            results["fp32HostBytes"] = WorkingSet() - before;
            RunOnGpu(fp32, GpuPrecision.BFloat16, "gpuBf16FromFp32");
            RunOnGpu(fp32, GpuPrecision.Float32, "gpuFp32");
            results["hostPeakBytes"] = process.PeakWorkingSet64;
        }
        finally
        {
            File.WriteAllText(Path.Combine(dir, "dotnet-results.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        }
        Assert.True((double)results["cpuSixteenBitMaxError"] <= 1e-3 * scale, $"CPU max |Δlogit| {results["cpuSixteenBitMaxError"]} > 1e-3 · {scale}");
        Assert.True((double)results["gpuSixteenBitMaxError"] <= 5e-2 * scale, $"GPU max |Δlogit| {results["gpuSixteenBitMaxError"]} > 5e-2 · {scale}");
        Assert.Equal(greedy, gpuTokens);
    }

    private static double MaxError(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - (double)expected[i]));
        return worst;
    }
}
