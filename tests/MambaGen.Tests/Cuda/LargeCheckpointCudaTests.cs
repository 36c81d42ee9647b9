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
    /// mamba-2.8b in bf16, loaded 16-bit only, against transformers' fp32 forward from the same bf16 weights: the GPU
    /// (bf16 arithmetic) within 5 % of the largest |logit| and the CPU (fp32 arithmetic over the exact bf16 weights)
    /// within 0.1 %; the greedy tokens equal transformers' generate(do_sample=False) on the GPU. Load time, host memory
    /// and the errors go to dotnet-results.json beside the checkpoint.
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
        var results = new Dictionary<string, object>();
        using var process = Process.GetCurrentProcess();
        long WorkingSet() { GC.Collect(); process.Refresh(); return process.WorkingSet64; }

        long before = WorkingSet();
        var clock = Stopwatch.StartNew();
        var parameters = MambaCheckpoint.Load(dir, Mamba2_8BShape.ModelShape, new CheckpointLoadOptions { KeepSixteenBitWeights = true });
        results["loadSeconds"] = clock.Elapsed.TotalSeconds;
        results["hostBytesAfterLoad"] = WorkingSet() - before;
        results["parameters"] = parameters.Count;
        results["segments"] = parameters.Layout.Segments.Count;
        try
        {
            clock.Restart();
            using var gpu = Mamba2_8BShape.FromParameters(parameters).To(Device.Cuda(0, GpuPrecision.BFloat16));
            results["gpuUploadSeconds"] = clock.Elapsed.TotalSeconds;
            float[] gpuLogits = gpu.Forward(prompt, 1, LogitsFor.LastPosition);
            results["gpuMaxError"] = MaxError(gpuLogits, expected);
            clock.Restart();
            int[] gpuTokens = gpu.Generate(prompt, new GenerationOptions { MaxNewTokens = greedy.Length });
            results["gpuGenerateSeconds"] = clock.Elapsed.TotalSeconds;
            results["gpuTokens"] = gpuTokens;
            results["referenceTokens"] = greedy;

            var cpu = Mamba2_8BShape.FromParameters(parameters);
            clock.Restart();
            float[] cpuLogits = cpu.Forward(prompt, 1, LogitsFor.LastPosition);
            results["cpuForwardSeconds"] = clock.Elapsed.TotalSeconds;
            results["cpuMaxError"] = MaxError(cpuLogits, expected);
            results["maxAbsReferenceLogit"] = scale;
            results["hostPeakBytes"] = process.PeakWorkingSet64;

            Assert.True((double)results["cpuMaxError"] <= 1e-3 * scale, $"CPU max |Δlogit| {results["cpuMaxError"]} > 1e-3 · {scale}");
            Assert.True((double)results["gpuMaxError"] <= 5e-2 * scale, $"GPU max |Δlogit| {results["gpuMaxError"]} > 5e-2 · {scale}");
            Assert.Equal(greedy, gpuTokens);
        }
        finally
        {
            File.WriteAllText(Path.Combine(dir, "dotnet-results.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    private static double MaxError(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - (double)expected[i]));
        return worst;
    }
}
