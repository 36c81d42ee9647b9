using System.Reflection;
using MambaGen.Tests.Cuda;

namespace MambaGen.Samples.Tests;

/// <summary>The CUDA C the generator writes for every model type the samples declare compiles with NVRTC (CI, no GPU).</summary>
public class SampleVariantKernelTests
{
    /// <summary>One assembly per sample, named as their projects are.</summary>
    private static readonly string[] SampleAssemblies =
        ["Benchmarks", "CheckpointInference", "GpuBenchmarks", "InductionHeads", "SelectiveCopying", "TextGeneration"];

    [NvrtcFact]
    public void EverySampleVariantsKernelsCompileWithNvrtc()
    {
        var variants = DeclaredVariantKernels.Find(SampleAssemblies.Select(name => Assembly.Load(name)));
        // Each sample declares at least one model; the published shapes and the paper's ablations are among them.
        foreach (var sample in SampleAssemblies)
            Assert.Contains(variants, v => v.Type.StartsWith(sample + ":", StringComparison.Ordinal));
        Assert.Contains(variants, v => v.Type == "TextGeneration:Mamba1_4B");
        Assert.Contains(variants, v => v.Type == "SelectiveCopying:MambaGen.Samples.SelectiveCopying.BAndC");
        var failures = DeclaredVariantKernels.CompileAll(variants);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
