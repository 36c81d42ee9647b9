using MambaGen.Cuda;
using MambaGen.Generation;
using MambaGen.Cuda.Backend;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// The CUDA half the generator writes for each declared variant: its kernels compile with NVRTC (here and in CI,
/// with Debian's NVRTC 11.8, no GPU needed), and on a GPU the forward pass gives the CPU path's logits and
/// transformers' logits on the HF fixtures.
/// </summary>
public class GeneratedModelCudaTests
{
    /// <summary>
    /// fp32 GPU against the fp32 CPU path: the scan's decays use the hardware exp2 (≈ 2 ulp) and the products run in
    /// another summation order, so results differ by float rounding accumulated over the layers; a formula error
    /// (a wrong softplus, gate, bias or layout) moves logits by far more. Relative 6e-4 plus absolute 2e-3 is the
    /// project's fp32 bar for GPU kernels against an fp32 reference.
    /// </summary>
    internal const float RelativeTolerance = 6e-4f, AbsoluteTolerance = 2e-3f;

    /// <summary>Every test variant's rendered CUDA C, with the model it belongs to.</summary>
    internal static readonly (string Name, string Source, Func<int, IMambaModel> Create)[] Variants =
    [
        Variant(nameof(OddWidthModel), OddWidthModel.CudaSource, s => OddWidthModel.Create(s)),
        Variant(nameof(BiasedUntiedModel), BiasedUntiedModel.CudaSource, s => BiasedUntiedModel.Create(s)),
        Variant(nameof(DeltaOnlyModel), DeltaOnlyModel.CudaSource, s => DeltaOnlyModel.Create(s)),
        Variant(nameof(BcOnlyModel), BcOnlyModel.CudaSource, s => BcOnlyModel.Create(s)),
        Variant(nameof(LtiModel), LtiModel.CudaSource, s => LtiModel.Create(s)),
        Variant(nameof(DeltaAndBModel), DeltaAndBModel.CudaSource, s => DeltaAndBModel.Create(s)),
        Variant(nameof(COnlyModel), COnlyModel.CudaSource, s => COnlyModel.Create(s)),
        Variant(nameof(HfTinyA), HfTinyA.CudaSource, s => HfTinyA.Create(s)),
    ];

    private static (string, string, Func<int, IMambaModel>) Variant(string name, string source, Func<int, IMambaModel> create) =>
        (name, source, create);

    /// <summary>
    /// The tests that only compile CUDA C: what they check does not depend on the host CPU, so CI runs them once, not
    /// again on each narrower vector path (.ci/run filters on this category there).
    /// </summary>
    public const string CudaCompileCategory = "CudaCompile";

    [NvrtcFact]
    [Trait("Category", CudaCompileCategory)]
    public void EveryDeclaredTestVariantsKernelsCompileWithNvrtc()
    {
        var variants = DeclaredVariantKernels.Find([typeof(GeneratedModelCudaTests).Assembly]);
        // Guards the reflection itself: the test models above and the fixture-config types must all be found.
        Assert.True(variants.Count >= Variants.Length, $"found {variants.Count} generated types, expected at least {Variants.Length}");
        foreach (var (name, source, _) in Variants)
            Assert.Contains(variants, v => v.Source == source);
        var failures = DeclaredVariantKernels.CompileAll(variants);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [NvrtcFact]
    [Trait("Category", CudaCompileCategory)]
    public void EveryTemplateCompilesOnItsOwnWithItsDefaultConstants()
    {
        string templates = Path.Combine(Path.GetDirectoryName(typeof(GeneratedModelCudaTests).Assembly.Location)!, "templates");
        var files = Directory.GetFiles(templates, "*.cu").Order(StringComparer.Ordinal).ToArray();
        Assert.True(files.Length >= 9, $"expected the kernel templates beside the tests, found {files.Length} in {templates}");
        using var cache = new TemporaryDirectory();
        var compiler = new KernelCompiler(cache.Path);
        var failures = new List<string>();
        foreach (var file in files)
            foreach (int architecture in DeclaredVariantKernels.Architectures)
                try
                {
                    // A template includes common.cuh itself when compiled alone; the generator pastes it in front instead.
                    compiler.Compile(File.ReadAllText(file), Path.GetFileName(file), architecture, CudaImageKind.Ptx,
                        [.. CudaMambaModel.CompileOptions, $"--include-path={templates}"]);
                }
                catch (NvrtcCompilationException error)
                {
                    failures.Add($"{Path.GetFileName(file)}, compute_{architecture}: {error.Message}");
                }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void TheSourceBakesTheVariantsConstants()
    {
        Assert.Contains("#define MAMBA_D_STATE 5\n", OddWidthModel.CudaSource);
        Assert.Contains("#define MAMBA_D_INNER 26\n", OddWidthModel.CudaSource);
        Assert.Contains("#define MAMBA_CONV_K 3\n", OddWidthModel.CudaSource);
        Assert.Contains("#define MAMBA_SELECTIVE_DELTA 0\n", BcOnlyModel.CudaSource);
        Assert.Contains("#define MAMBA_SELECTIVE_B 0\n", DeltaOnlyModel.CudaSource);
        Assert.Contains("#define MAMBA_HAS_CONV_BIAS 0\n", BiasedUntiedModel.CudaSource);
        Assert.DoesNotContain("#include", OddWidthModel.CudaSource.Replace("#ifndef MAMBA_COMMON_CUH\n#include", "", StringComparison.Ordinal));
    }

    [GpuFact]
    public void ForwardMatchesTheCpuPathForEveryVariant()
    {
        var failures = new List<string>();
        foreach (var (name, _, create) in Variants)
        {
            var model = create(11);
            try
            {
                using var gpu = model.To(Device.Cuda());
                Assert.Equal(Device.Cuda(), gpu.Device);
                // Two sequences of 300 tokens: several scan chunks and tiles, and a partial last one; one of 600, which
                // the forward scan splits along L (too few channels to fill the device); then a shorter, odd shape
                // through the same (reallocated) buffers.
                foreach (var (batch, length) in new[] { (2, 300), (1, 600), (3, 7) })
                {
                    var tokens = RandomTokens(batch * length, model.Shape.Vocab, seed: batch + length);
                    float[] expected = model.Forward(tokens, batch);
                    var actual = gpu.Forward(tokens, batch);
                    var error = WorstError(actual, expected);
                    if (error is not null) failures.Add($"{name} batch {batch} length {length}: {error}");
                }
            }
            catch (CudaException error)
            {
                failures.Add($"{name}: {error.Message}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void LastPositionLogitsMatchTheCpuPathsLastRows()
    {
        // The GPU's head runs on each sequence's last row only, reading the normalised rows with a stride of a whole
        // sequence; compared with the CPU's last-position logits at the same tolerance as every GPU forward.
        var model = OddWidthModel.Create(12);
        using var gpu = model.To(Device.Cuda());
        const int batch = 3, length = 40, vocab = OddWidthModel.Vocab;
        var tokens = RandomTokens(batch * length, vocab, seed: 12);
        var expected = model.Forward(tokens, batch, LogitsFor.LastPosition);
        var actual = gpu.Forward(tokens, batch, LogitsFor.LastPosition);
        Assert.Equal(batch * vocab, actual.Length);
        Assert.Null(WorstError(actual, expected));
    }

    [GpuFact]
    public void ForwardMatchesTransformersOnTheHfFixture()
    {
        using var fixture = new Fixture("hf-tiny-a");
        using var gpu = HfTinyA.Load(fixture.Directory, Device.Cuda());
        var expected = fixture.Floats("logits");
        var actual = gpu.Forward(fixture.Ints("input_ids"), 2);
        Assert.Null(WorstError(actual, expected));
    }

    [GpuFact]
    public void ForwardSeesHostParameterChangesOnceMarked()
    {
        using var cpu = BiasedUntiedModel.Create(3);
        using var gpu = cpu.To(Device.Cuda());
        var tokens = RandomTokens(2 * 20, cpu.Shape.Vocab, seed: 4);
        Assert.Null(WorstError(gpu.Forward(tokens, 2), cpu.Forward(tokens, 2)));
        foreach (ref float value in cpu.Parameters.Values.AsSpan()) value *= 0.9f;
        cpu.Parameters.MarkChanged();
        Assert.Null(WorstError(gpu.Forward(tokens, 2), cpu.Forward(tokens, 2)));
    }

    [GpuFact]
    public void DecodingOnTheGpuFollowsTheCpuStepByStep()
    {
        var failures = new List<string>();
        foreach (var (name, _, create) in Variants)
        {
            var cpu = create(13);
            try
            {
                using var gpu = cpu.To(Device.Cuda());
                var cpuState = ((IDecodingModel)cpu).CreateDecodeState(2);
                var gpuState = ((IDecodingModel)gpu).CreateDecodeState(2);
                int vocab = cpu.Shape.Vocab;
                // A 600-token prompt read in one pass (the scan splits it along L and hands over its state across
                // segments and chunks), then single tokens, then a 3-token piece from a state that has seen tokens (one
                // step per token).
                foreach (var (length, seed) in new[] { (600, 1), (1, 2), (1, 3), (3, 4), (1, 5) })
                {
                    var tokens = RandomTokens(2 * length, vocab, seed);
                    var expected = new float[2 * vocab];
                    var actual = new float[2 * vocab];
                    ((IDecodingModel)cpu).Advance(cpuState, tokens, expected);
                    ((IDecodingModel)gpu).Advance(gpuState, tokens, actual);
                    if (WorstError(actual, expected) is { } error) failures.Add($"{name} after {length} more tokens: {error}");
                }
            }
            catch (CudaException error)
            {
                failures.Add($"{name}: {error.Message}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void GreedyGenerationOnTheGpuEqualsTransformersGenerate()
    {
        // The generation fixture's smallest top-1/top-2 logit gap is 8.5e-3, far above the GPU's fp32 differences.
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture.Root, "generation", "greedy_generate.json")));
        using var gpu = HfTinyA.Load(Path.Combine(Fixture.Root, "hf-tiny-a"), Device.Cuda());
        int newTokens = json.RootElement.GetProperty("new_tokens").GetInt32();
        var prompts = new List<int[]>();
        var expected = new List<int[]>();
        foreach (var @case in json.RootElement.GetProperty("cases").EnumerateArray())
        {
            prompts.Add(@case.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            expected.Add(@case.GetProperty("float32").GetProperty("greedy_no_eos").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        }
        var options = new GenerationOptions { MaxNewTokens = newTokens, StopAtEndOfSequence = false };
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], gpu.Generate(prompts[i], options));
        // Prompts of different lengths in one batch: each prefilled alone on the GPU, then stepped together.
        Assert.Equal(expected, gpu.GenerateBatch(prompts, options));
    }

    [GpuFact]
    public void OutOfRangeTokensAreRejectedBeforeAnyLaunch()
    {
        using var gpu = LtiModel.Create(1).To(Device.Cuda());
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.Forward([1, LtiModel.Vocab], 1));
        Assert.Contains("tokens", error.Message);
    }

    [GpuFact]
    public void OperationsOnlyTheCpuHasSaySoAndNameTheWayBack()
    {
        using var gpu = LtiModel.Create(1).To(Device.Cuda());
        // The typed DecodeState is the CPU's layout; generation on the GPU goes through IDecodingModel (tested above).
        var error = Assert.Throws<NotSupportedException>(() => gpu.Advance(gpu.CreateDecodeState(1), [1], new float[LtiModel.Vocab]));
        Assert.Contains("To(MambaGen.Device.Cpu)", error.Message);
    }

    /// <summary>The worst element outside |a − e| ≤ atol + rtol·|e|, described, or null when all are inside.</summary>
    internal static string? WorstError(float[] actual, float[] expected)
    {
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double excess = Math.Abs(actual[i] - expected[i]) - (AbsoluteTolerance + RelativeTolerance * Math.Abs(expected[i]));
            if (!(excess <= worst)) (worst, at) = (double.IsNaN(excess) ? double.PositiveInfinity : excess, i);
        }
        return at < 0 ? null : $"logit {at}: GPU {actual[at]} vs {expected[at]} (beyond tolerance by {worst:E2})";
    }

    internal static int[] RandomTokens(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }

    private sealed class TemporaryDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("mambagen-kernels-").FullName;
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
