using MambaGen.Cpu;
using MambaGen.Cuda;
using MambaGen.Cuda.Backend;
using MambaGen.Generation;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;
using static MambaGen.Tests.Cuda.GeneratedModelCudaTests;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// Widths that let the fused decode kernels read weights in 16-byte packs, with rows long enough for two segments per
/// lane (ED = 1280 > 32 lanes × 8 packs × 4) and more rows than the launch has warps (in_proj 2560, head 4096), so
/// each warp also walks to a second row. The small test variants take the one-element-per-lane path instead.
/// </summary>
[MambaModel(DModel = 64, Layers = 2, Vocab = 4096)]
[SelectiveSsm(DState = 16, Expand = 20, DtRank = 4)]
public partial class WideDecodeModel { }

/// <summary>
/// The GPU's one-token decode step: replayed from its CUDA graph (with overlapping kernels on sm_90 and later) it gives
/// the logits of its kernels launched one after another (bit for bit: the same kernels with the same arguments and no
/// atomics in any sum) and the CPU path's logits (the project's GPU tolerance), for a batch the fused kernels take (as
/// the persistent kernel and as four kernels per layer) and one above their limit (cuBLAS products); the greedy pick on
/// the device is the host's argmax of the same logits; bad input is refused before any launch. Serial: other test
/// classes synchronise the whole context (kernel.Run), which breaks a capture open on another thread
/// (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, seen on the H200, 2026-11-29); the step itself no longer does.
/// </summary>
[Collection(nameof(CudaDecodeGraphTests))]
[CollectionDefinition(nameof(CudaDecodeGraphTests), DisableParallelization = true)]
public class CudaDecodeGraphTests
{
    /// <summary>Batch sizes: one sequence, a few (both fused), and more than the fused kernels' limit of 8 (cuBLAS path).</summary>
    private static readonly int[] Batches = [1, 3, 11];

    private static IEnumerable<(string Name, string Source, Func<int, IMambaModel> Create)> AllVariants() =>
        Variants.Append((nameof(WideDecodeModel), WideDecodeModel.CudaSource, s => WideDecodeModel.Create(s)));

    [Fact]
    public void TheWideModelsWeightsStartOn16ByteBoundaries()
    {
        // The packed path needs every matrix the fused kernels read to start at a multiple of 4 floats.
        var layout = WideDecodeModel.Create(1).Parameters.Layout;
        var offsets = new List<long> { layout.Embedding, layout.NormF };
        foreach (var o in layout.LayerOffsets) offsets.AddRange([o.InProj, o.XProj, o.OutProj, o.Norm]);
        Assert.All(offsets, offset => Assert.Equal(0L, offset % 4));
    }

    [GpuFact]
    public void GraphReplayEqualsKernelByKernelLaunchesAndFollowsTheCpu()
    {
        var failures = new List<string>();
        foreach (var (name, source, create) in AllVariants())
            foreach (int batch in Batches)
            foreach (bool persistent in new[] { true, false })
            {
                var cpu = create(31);
                string plan = persistent ? "persistent kernel" : "kernels per layer";
                try
                {
                    using var gpu = new CudaMambaModel(cpu.Parameters, source, name + ".cu", Device.Cuda());
                    gpu.PersistentDecodeKernel = persistent;
                    int vocab = cpu.Shape.Vocab;
                    var cpuState = ((IDecodingModel)cpu).CreateDecodeState(batch);
                    using var graphState = gpu.CreateDecodeState(batch);
                    using var eagerState = gpu.CreateDecodeState(batch);
                    // A 20-token prompt read in one pass, single tokens, then a 3-token piece (three steps in one call).
                    foreach (var (length, seed) in new[] { (20, 1), (1, 2), (1, 3), (1, 4), (3, 5), (1, 6) })
                    {
                        var tokens = RandomTokens(batch * length, vocab, seed);
                        var expected = new float[batch * vocab];
                        var replayed = new float[batch * vocab];
                        var launched = new float[batch * vocab];
                        ((IDecodingModel)cpu).Advance(cpuState, tokens, expected);
                        // The graph with overlapping kernels where the device allows them; the launches one after another.
                        gpu.UseCudaGraphs = true;
                        gpu.OverlapDecodeKernels = gpu.Context.Architecture >= 90;
                        gpu.Advance(graphState, tokens, replayed);
                        gpu.UseCudaGraphs = false;
                        gpu.OverlapDecodeKernels = false;
                        gpu.Advance(eagerState, tokens, launched);
                        if (!replayed.AsSpan().SequenceEqual(launched))
                            failures.Add($"{name} batch {batch} ({plan}) after {length} more tokens: graph and launches differ");
                        if (WorstError(replayed, expected) is { } error) failures.Add($"{name} batch {batch} ({plan}) after {length} more tokens, graph: {error}");
                        if (WorstError(launched, expected) is { } launchError) failures.Add($"{name} batch {batch} ({plan}) after {length} more tokens, launches: {launchError}");
                    }
                }
                catch (CudaException error)
                {
                    failures.Add($"{name} batch {batch} ({plan}): {error.Message}");
                }
            }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void TheDevicesGreedyPickIsTheHostsArgmaxOfTheSameLogits()
    {
        var failures = new List<string>();
        foreach (var (name, source, create) in AllVariants())
            foreach (int batch in Batches)
            {
                var cpu = create(32);
                int vocab = cpu.Shape.Vocab;
                using var gpu = new CudaMambaModel(cpu.Parameters, source, name + ".cu", Device.Cuda());
                // The whole vocabulary, and a limit that cuts it (ids at or above it are never picked).
                foreach (int limit in new[] { vocab, Math.Max(1, vocab / 2 - 1) })
                {
                    using var withLogits = gpu.CreateDecodeState(batch);
                    using var greedy = gpu.CreateDecodeState(batch);
                    var prompt = RandomTokens(batch * 9, vocab, seed: limit);
                    var logits = new float[batch * vocab];
                    gpu.Advance(withLogits, prompt, logits);
                    gpu.Advance(greedy, prompt, logits);
                    var feed = Enumerable.Range(0, batch).Select(b => TokenSampler.ArgMax(logits.AsSpan(b * vocab, limit))).ToArray();
                    var picked = new int[batch];
                    // Five greedy steps, each sequence fed its own pick.
                    for (int step = 0; step < 5; step++)
                    {
                        gpu.Advance(withLogits, feed, logits);
                        var expected = Enumerable.Range(0, batch).Select(b => TokenSampler.ArgMax(logits.AsSpan(b * vocab, limit))).ToArray();
                        gpu.AdvanceGreedy(greedy, feed, picked, limit);
                        if (!picked.AsSpan().SequenceEqual(expected))
                            failures.Add($"{name} batch {batch} limit {limit} step {step}: device picked [{string.Join(", ", picked)}], host argmax [{string.Join(", ", expected)}]");
                        expected.CopyTo(feed, 0);
                    }
                }
            }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void GreedyGenerationEqualsTransformersAboveTheFusedBatchLimitToo()
    {
        // The fixture's three prompts repeated to ten sequences: past the fused kernels' eight, so the step takes the
        // cuBLAS path, still with the pick on the device. The smallest top-1/top-2 gap is 8.5e-3, far above fp32 noise.
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture.Root, "generation", "greedy_generate.json")));
        using var gpu = HfTinyA.Load(Path.Combine(Fixture.Root, "hf-tiny-a"), Device.Cuda());
        int newTokens = json.RootElement.GetProperty("new_tokens").GetInt32();
        var cases = json.RootElement.GetProperty("cases").EnumerateArray().ToArray();
        var prompts = new List<int[]>();
        var expected = new List<int[]>();
        for (int i = 0; i < 10; i++)
        {
            var @case = cases[i % cases.Length];
            prompts.Add(@case.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            expected.Add(@case.GetProperty("float32").GetProperty("greedy_no_eos").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        }
        var options = new GenerationOptions { MaxNewTokens = newTokens, StopAtEndOfSequence = false };
        Assert.Equal(expected, gpu.GenerateBatch(prompts, options));
    }

    [GpuFact]
    public void BadGreedyStepsAreRefusedBeforeAnyLaunch()
    {
        var cpu = OddWidthModel.Create(3);
        int vocab = OddWidthModel.Vocab;
        using var gpu = new CudaMambaModel(cpu.Parameters, OddWidthModel.CudaSource, "OddWidthModel.cu", Device.Cuda());
        using var other = new CudaMambaModel(cpu.Parameters, OddWidthModel.CudaSource, "OddWidthModel.cu", Device.Cuda());
        using var state = gpu.CreateDecodeState(2);
        var next = new int[2];

        var count = Assert.Throws<ArgumentException>(() => gpu.AdvanceGreedy(state, [1, 2, 3], next, vocab));
        Assert.Equal("tokens", count.ParamName);
        Assert.Contains("one per sequence (2)", count.Message);
        var id = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.AdvanceGreedy(state, [1, vocab], next, vocab));
        Assert.Contains($"outside the vocabulary [0, {vocab})", id.Message);
        var output = Assert.Throws<ArgumentException>(() => gpu.AdvanceGreedy(state, [1, 2], new int[1], vocab));
        Assert.Equal("next", output.ParamName);
        foreach (int limit in new[] { 0, vocab + 1 })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.AdvanceGreedy(state, [1, 2], next, limit));
            Assert.Contains($"vocabularyLimit must be in [1, {vocab}], was {limit}", error.Message);
        }
        var foreign = Assert.Throws<ArgumentException>(() => other.AdvanceGreedy(state, [1, 2], next, vocab));
        Assert.Contains("another model", foreign.Message);

        // The refused calls changed nothing: the state still steps like a fresh one.
        using var fresh = gpu.CreateDecodeState(2);
        var expected = new int[2];
        gpu.AdvanceGreedy(fresh, [1, 2], expected, vocab);
        gpu.AdvanceGreedy(state, [1, 2], next, vocab);
        Assert.Equal(expected, next);

        gpu.Dispose();
        Assert.Throws<ObjectDisposedException>(() => gpu.AdvanceGreedy(state, [1, 2], next, vocab));
    }

    [GpuFact]
    public void AFailedCaptureLeavesTheStreamUsable()
    {
        using var context = new CudaContext(0);
        var image = new KernelCompiler(Path.Combine(Path.GetTempPath(), "mambagen-decode-graph-tests")).CompileFor(context, CudaTestKernels.Source, "kernels.cu");
        using var module = context.LoadModule(image.Image);
        // Non-blocking, as the decode stream: a capture on a blocking stream would collide with the legacy-stream copies
        // other test classes make meanwhile on the same (primary) context.
        using var stream = new CudaStream(context, nonBlocking: true);
        using var data = new CudaDeviceVariable<float>(context, 256);
        data.Memset(0u);
        context.Synchronize();
        var addOne = module.GetKernel("add_one");
        addOne.BlockDimensions = 256;
        addOne.GridDimensions = 1;

        var error = Assert.Throws<InvalidOperationException>(() => stream.Capture(() =>
        {
            addOne.Launch(stream, data, 256);
            throw new InvalidOperationException("enqueue failed");
        }));
        Assert.Equal("enqueue failed", error.Message);
        stream.Synchronize();
        Assert.All(data.ToArray(), v => Assert.Equal(0f, v)); // nothing of the abandoned capture ran

        // The stream captures and runs again.
        using var exec = stream.Capture(() => addOne.Launch(stream, data, 256));
        exec.Launch(stream);
        exec.Launch(stream);
        addOne.Launch(stream, data, 256);
        stream.Synchronize();
        Assert.All(data.ToArray(), v => Assert.Equal(3f, v));
    }
}
