using MambaGen.Cpu;
using MambaGen.Cuda;
using MambaGen.Cuda.Backend;
using MambaGen.Generation;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;
using static MambaGen.Tests.Cuda.GeneratedModelCudaTests;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// Decode steps that read fp16 weights (<see cref="CudaMambaModel.DecodeWeights"/> = Float16, the fused kernels up to 8
/// sequences, both kernel plans): logits against the fp32 CPU path within an fp16 tolerance, the graph replay bit for
/// bit equal to the kernels launched one by one, logits that do differ from the fp32-weight step (so the fp16 copy is
/// what was read), and greedy picks on the transformers fixture that are fp32's argmax or a near tie.
/// </summary>
public class Float16DecodeTests
{
    /// <summary>
    /// |Δ| ≤ 2e-2 + 1e-2·|e| per logit. fp16 keeps 11 significant bits (a relative rounding of 2^-11 ≈ 4.9e-4 per
    /// weight) and only the weights are rounded (inputs, sums, states stay fp32), so the step's error is a few times
    /// 1e-3 on these models; bf16 weights and activations get 5e-2 + 3e-2·|e|. A wrong pointer, layout or conversion
    /// moves logits by whole units.
    /// </summary>
    private const double Absolute = 2e-2, Relative = 1e-2;

    /// <summary>One sequence and three: both within the fused kernels' limit, where the fp16 weights are read.</summary>
    private static readonly int[] Batches = [1, 3];

    [GpuFact]
    public void Fp16DecodeStepsFollowTheCpuAndTheGraphEqualsTheLaunches()
    {
        var failures = new List<string>();
        double worst = 0;
        var variants = Variants.Append((nameof(WideDecodeModel), WideDecodeModel.CudaSource, s => WideDecodeModel.Create(s)));
        foreach (var (name, source, create) in variants)
            foreach (int batch in Batches)
            foreach (bool persistent in new[] { true, false })
            {
                var cpu = create(43);
                string plan = persistent ? "persistent kernel" : "kernels per layer";
                try
                {
                    using var gpu = new CudaMambaModel(cpu.Parameters, source, name + ".cu", Device.Cuda());
                    gpu.PersistentDecodeKernel = persistent;
                    int vocab = cpu.Shape.Vocab;
                    var cpuState = ((IDecodingModel)cpu).CreateDecodeState(batch);
                    using var graphState = gpu.CreateDecodeState(batch);
                    using var eagerState = gpu.CreateDecodeState(batch);
                    using var fp32State = gpu.CreateDecodeState(batch);
                    bool differsFromFp32Weights = false;
                    // A 20-token prompt read in one fp32 pass, then single steps and a 3-token piece that read fp16 weights.
                    foreach (var (length, seed) in new[] { (20, 1), (1, 2), (1, 3), (1, 4), (3, 5), (1, 6) })
                    {
                        var tokens = RandomTokens(batch * length, vocab, seed);
                        var expected = new float[batch * vocab];
                        var replayed = new float[batch * vocab];
                        var launched = new float[batch * vocab];
                        var fp32Weights = new float[batch * vocab];
                        ((IDecodingModel)cpu).Advance(cpuState, tokens, expected);
                        gpu.DecodeWeights = DecodeWeightType.Float16;
                        gpu.UseCudaGraphs = true;
                        gpu.Advance(graphState, tokens, replayed);
                        gpu.UseCudaGraphs = false;
                        gpu.Advance(eagerState, tokens, launched);
                        gpu.DecodeWeights = DecodeWeightType.Compute;
                        gpu.Advance(fp32State, tokens, fp32Weights);
                        if (!replayed.AsSpan().SequenceEqual(launched))
                            failures.Add($"{name} batch {batch} ({plan}) after {length} more tokens: graph and launches differ");
                        if (length == 1 && !replayed.AsSpan().SequenceEqual(fp32Weights)) differsFromFp32Weights = true;
                        for (int i = 0; i < expected.Length; i++)
                        {
                            double ratio = Math.Abs(replayed[i] - expected[i]) / (Absolute + Relative * Math.Abs(expected[i]));
                            worst = Math.Max(worst, ratio);
                            if (!(ratio <= 1))
                            {
                                failures.Add($"{name} batch {batch} ({plan}) after {length} more tokens: logit {i} is {replayed[i]}, the CPU's {expected[i]}");
                                break;
                            }
                        }
                    }
                    if (!differsFromFp32Weights) failures.Add($"{name} batch {batch} ({plan}): the fp16 steps gave the fp32-weight logits bit for bit");
                }
                catch (CudaException error)
                {
                    failures.Add($"{name} batch {batch} ({plan}): {error.Message}");
                }
            }
        Console.WriteLine($"fp16-weight decode vs the fp32 CPU path: worst logit error {worst:P1} of the tolerance");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// Greedy steps with the pick on the device from fp16 weights on hf-tiny-a, each prompt prefilled alone. Every pick
    /// is checked against the fp32 CPU path's logits along the generated sequence: it is fp32's argmax, or within the
    /// fp16 tolerance of both logits of it (the fixture's smallest top-1/top-2 gap is 8.5e-3).
    /// </summary>
    [GpuFact]
    public void Fp16GreedyPicksAreTheFp32ArgmaxOrANearTie()
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture.Root, "generation", "greedy_generate.json")));
        var cpu = HfTinyA.Load(Path.Combine(Fixture.Root, "hf-tiny-a"));
        using var gpu = new CudaMambaModel(cpu.Parameters, HfTinyA.CudaSource, "HfTinyA.cu", Device.Cuda()) { DecodeWeights = DecodeWeightType.Float16 };
        int newTokens = json.RootElement.GetProperty("new_tokens").GetInt32();
        int vocab = cpu.Shape.Vocab;
        var failures = new List<string>();
        int sameAsTransformers = 0, cases = 0;
        foreach (var @case in json.RootElement.GetProperty("cases").EnumerateArray())
        {
            cases++;
            var prompt = @case.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            using var state = gpu.CreateDecodeState(1);
            var logits = new float[vocab];
            gpu.Advance(state, prompt, logits);
            var generated = new List<int> { TokenSampler.ArgMax(logits) };
            var next = new int[1];
            while (generated.Count < newTokens)
            {
                gpu.AdvanceGreedy(state, [generated[^1]], next, vocab);
                generated.Add(next[0]);
            }
            var fp32Tokens = @case.GetProperty("float32").GetProperty("greedy_no_eos").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            if (generated.SequenceEqual(fp32Tokens)) sameAsTransformers++;
            var reference = cpu.Forward(prompt.Concat(generated).ToArray(), 1);
            for (int step = 0; step < generated.Count; step++)
            {
                var row = reference.AsSpan((prompt.Length - 1 + step) * vocab, vocab);
                int best = TokenSampler.ArgMax(row), picked = generated[step];
                double gap = row[best] - row[picked];
                double allowed = Absolute + Relative * Math.Abs(row[best]) + Absolute + Relative * Math.Abs(row[picked]);
                if (picked != best && gap > allowed)
                    failures.Add($"case {cases} step {step}: picked {picked} ({row[picked]}), fp32 argmax {best} ({row[best]}), gap {gap} > {allowed}");
            }
        }
        Console.WriteLine($"fp16 greedy: {sameAsTransformers} of {cases} sequences equal transformers' fp32 tokens");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [GpuFact]
    public void AnUndefinedWeightTypeIsRefused()
    {
        var cpu = WideDecodeModel.Create(1);
        using var gpu = new CudaMambaModel(cpu.Parameters, WideDecodeModel.CudaSource, "WideDecodeModel.cu", Device.Cuda());
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.DecodeWeights = (DecodeWeightType)7);
        Assert.Contains("Compute or Float16", error.Message);
    }
}
