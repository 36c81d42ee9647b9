using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using MambaGen;
using MambaGen.Cuda.Backend;
using MambaGen.Generation;
using MambaGen.Training;

// End-to-end GPU timings of a generated model at Mamba-130M's shape (random weights), in fp32 or bf16 compute
// (--precision): the forward pass with every logit copied back, the prefill (last-position logits) at batch 1 and
// --batch, one-token decode steps, and a full training step (forward, backward, AdamW on the device, fp32 master
// weights). Each result is checked before it is timed: the forward against the CPU path on a short sequence, the
// step's loss against ln(vocab) at initialisation. Times are medians of repeated, synchronised calls after a warm-up;
// the prefill and the training step are then run again with CUDA events at every stage boundary, which prints where
// the GPU time goes (matrix products, scan, conv, norms, the rest).
var batchOption = new Option<int>("--batch") { Description = "Sequences per call.", DefaultValueFactory = _ => 8 };
var lengthOption = new Option<int>("--length") { Description = "Tokens per sequence.", DefaultValueFactory = _ => 2048 };
var repeatOption = new Option<int>("--repeat") { Description = "Timed calls per item (after 2 warm-up calls).", DefaultValueFactory = _ => 10 };
var outOption = new Option<FileInfo?>("--out") { Description = "Also write the results as JSON to this file." };
var precisionOption = new Option<string>("--precision") { Description = "Compute precision on the GPU: fp32 or bf16 (fp32 master weights).", DefaultValueFactory = _ => "fp32" };
precisionOption.AcceptOnlyFromAmong("fp32", "bf16");
var decodeOnlyOption = new Option<bool>("--decode-only") { Description = "Time only the decoding (after the same checks), not the forward, prefill and training." };
var profileStepsOption = new Option<int>("--profile-steps")
{
    Description = "Only run this many greedy steps from a fresh state at batch 1 and 64, with each small-batch kernel plan, unchecked and untimed: " +
                  "a short, fixed sequence of decode kernels for a profiler (ncu) to time one by one.",
};
var root = new RootCommand("Times a generated Mamba-130M-shaped model on the first CUDA GPU.")
    { batchOption, lengthOption, repeatOption, outOption, precisionOption, decodeOnlyOption, profileStepsOption };
root.SetAction(result => Run(result.GetValue(batchOption), result.GetValue(lengthOption), result.GetValue(repeatOption), result.GetValue(outOption),
    result.GetValue(precisionOption) == "bf16" ? GpuPrecision.BFloat16 : GpuPrecision.Float32, result.GetValue(decodeOnlyOption), result.GetValue(profileStepsOption)));
return root.Parse(args).Invoke();

static int Run(int batch, int length, int repeat, FileInfo? output, GpuPrecision precision, bool decodeOnly, int profileSteps)
{
    if (batch < 1 || length < 1 || repeat < 1) { Console.Error.WriteLine("--batch, --length and --repeat must be at least 1."); return 2; }
    var host = Mamba130M.Create(seed: 1);
    var random = new Random(2);
    int[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => random.Next(Mamba130M.Vocab)).ToArray();
    bool bf16 = precision == GpuPrecision.BFloat16;
    string precisionName = bf16 ? "bf16" : "fp32";

    using var gpu = new CudaMambaModel(host.Parameters, Mamba130M.CudaSource, "Mamba130M.cu", Device.Cuda(0, precision));
    var (freeAtStart, total) = gpu.Context.GetMemoryInfo();
    Console.WriteLine($"{gpu.Context.DeviceName}, sm_{gpu.Context.Architecture}, {total / (1L << 30)} GiB; Mamba-130M shape, {precisionName} compute");
    if (profileSteps > 0)
    {
        ProfileSteps(gpu, profileSteps);
        return 0;
    }

    // Correctness first: a fast wrong kernel is a failure. bf16 activations carry about 3 significant digits, so its
    // bar is the issue's bf16 tolerance (|Δ| ≤ 5e-2 + 3e-2·|e|); fp32's is 2e-3 + 6e-4·|e|.
    var (absolute, relative) = bf16 ? (5e-2, 3e-2) : (2e-3, 6e-4);
    var shortTokens = Tokens(2 * 64);
    var expected = host.Forward(shortTokens, 2);
    var actual = new float[expected.Length];
    gpu.Forward(shortTokens, 2, actual, LogitsFor.AllPositions);
    double worst = expected.Select((e, i) => Math.Abs(actual[i] - e) / (absolute + relative * Math.Abs(e))).Max();
    Console.WriteLine($"check: forward b2 L64 against the CPU path, worst error {worst:P1} of the tolerance (|Δ| ≤ {absolute:G2} + {relative:G2}·|e|)");
    if (!(worst <= 1)) { Console.Error.WriteLine("The GPU forward does not match the CPU path; not timing it."); return 1; }

    var results = new Dictionary<string, object>
    {
        ["device"] = gpu.Context.DeviceName, ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd"), ["batch"] = batch, ["length"] = length,
        ["precision"] = precisionName,
    };
    if (decodeOnly)
    {
        if (!DecodeBenchmarks(gpu, host, results, absolute, relative)) return 1;
        if (output is not null) File.WriteAllText(output.FullName, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }
    int tokens = batch * length;
    var forwardTokens = Tokens(tokens);
    var logits = new float[(long)tokens * Mamba130M.Vocab];
    double forwardMs = Median(repeat, () => gpu.Forward(forwardTokens, batch, logits, LogitsFor.AllPositions));
    Console.WriteLine($"forward b{batch} L{length}, all logits to the host: {forwardMs:F2} ms, {tokens / forwardMs * 1e3:N0} tok/s");
    results["forward_all_logits_ms"] = forwardMs;
    // Prefill as generation does it: the logits of each sequence's last position only.
    var lastLogits = new float[batch * Mamba130M.Vocab];
    double prefillMs = Median(repeat, () => gpu.Forward(forwardTokens, batch, lastLogits, LogitsFor.LastPosition));
    Console.WriteLine($"prefill b{batch} L{length}, last-position logits: {prefillMs:F2} ms, {tokens / prefillMs * 1e3:N0} tok/s");
    results["prefill_last_logits_ms"] = prefillMs;
    results["prefill_split_ms"] = PrintSplit(gpu, $"prefill b{batch} L{length}", repeat, () => gpu.Forward(forwardTokens, batch, lastLogits, LogitsFor.LastPosition));
    var singleTokens = forwardTokens.AsSpan(0, length).ToArray();
    var singleLogits = new float[Mamba130M.Vocab];
    double prefillSingleMs = Median(repeat, () => gpu.Forward(singleTokens, 1, singleLogits, LogitsFor.LastPosition));
    Console.WriteLine($"prefill b1 L{length}, last-position logits: {prefillSingleMs:F2} ms, {length / prefillSingleMs * 1e3:N0} tok/s");
    results["prefill_b1_last_logits_ms"] = prefillSingleMs;
    results["prefill_b1_split_ms"] = PrintSplit(gpu, $"prefill b1 L{length}", repeat, () => gpu.Forward(singleTokens, 1, singleLogits, LogitsFor.LastPosition));

    if (!DecodeBenchmarks(gpu, host, results, absolute, relative)) return 1;

    using var optimizer = new CudaAdamW(gpu);
    var targets = Tokens(tokens);
    float firstLoss = gpu.ForwardBackward(forwardTokens, targets, batch);
    double chance = Math.Log(Mamba130M.Vocab);
    Console.WriteLine($"check: first training loss {firstLoss:F3} against ln(vocab) = {chance:F3} for random targets");
    if (!(Math.Abs(firstLoss - chance) < 0.5)) { Console.Error.WriteLine("The training loss is not near chance at initialisation; not timing it."); return 1; }
    double stepMs = Median(repeat, () =>
    {
        gpu.ForwardBackward(forwardTokens, targets, batch);
        optimizer.Update(1e-4f);
    });
    var (freeAtEnd, _) = gpu.Context.GetMemoryInfo();
    double usedGiB = (total - freeAtEnd) / (double)(1L << 30);
    Console.WriteLine($"training step b{batch} L{length} ({precisionName} compute, fp32 master weights, AdamW on the device): {stepMs:F2} ms, {tokens / stepMs * 1e3:N0} tok/s; " +
                      $"device memory in use after the run: {usedGiB:F1} GiB (all of it, context included; {(freeAtStart - freeAtEnd) / (double)(1L << 30):F1} GiB added since the weights were uploaded)");
    results["train_step_ms"] = stepMs;
    results["train_tokens_per_s"] = tokens / stepMs * 1e3;
    results["memory_gib_after_run"] = usedGiB;
    results["train_step_split_ms"] = PrintSplit(gpu, $"training step b{batch} L{length}", repeat, () =>
    {
        gpu.ForwardBackward(forwardTokens, targets, batch);
        optimizer.Update(1e-4f);
    });
    if (output is not null) File.WriteAllText(output.FullName, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}

// Runs `call` `repeat` times with CUDA events at every stage boundary and prints the mean GPU milliseconds per call
// of each stage. The events themselves cost a little, so the stages' sum may exceed the median wall time above.
static Dictionary<string, double> PrintSplit(CudaMambaModel gpu, string what, int repeat, Action call)
{
    gpu.MeasureStages = true;
    gpu.TakeStageTimes();
    for (int i = 0; i < repeat; i++) call();
    var times = gpu.TakeStageTimes();
    gpu.MeasureStages = false;
    double sum = times.Values.Sum() / repeat;
    Console.WriteLine($"  split of {what}, GPU ms per call (CUDA events; sum {sum:F2} ms):");
    foreach (var (stage, ms) in times.OrderByDescending(pair => pair.Value))
        if (ms > 0) Console.WriteLine($"    {stage,-15} {ms / repeat,8:F3} ms  {ms / repeat / sum,6:P1}");
    return times.ToDictionary(pair => pair.Key.ToString(), pair => pair.Value / repeat);
}

// Median wall time of synchronised calls (each call ends with a device-to-host copy), after two warm-up calls.
static double Median(int repeat, Action call)
{
    call();
    call();
    var times = new double[repeat];
    for (int i = 0; i < repeat; i++)
    {
        var watch = Stopwatch.StartNew();
        call();
        times[i] = watch.Elapsed.TotalMilliseconds;
    }
    Array.Sort(times);
    return times[repeat / 2];
}

// Decoding as generation does it: a 128-token prompt prefilled per sequence, then 256 greedy steps, each sequence fed
// its own pick (made on the device; only the ids come back), at batch 1 and 64, with the step replayed from a CUDA
// graph and with its kernels launched one by one; at batch 1 with each small-batch kernel plan (the persistent kernel,
// four kernels per layer with and without overlapping launches) and, in fp32 mode, with fp16 weights too. The steps
// read the weights of the compute precision (fp32, or the bf16 copy) or the fp16 copy, so each rate is also given as
// a fraction of the time it takes to read those weights once. Checked first: each plan's step logits against the CPU
// path (within the precision's tolerance; fp16 weights: |Δ| ≤ 2e-2 + 1e-2·|e|, as the fp16 decode tests), and the
// same tokens in every mode of the same weights.
static bool DecodeBenchmarks(CudaMambaModel gpu, Mamba130M host, Dictionary<string, object> results, double absolute, double relative)
{
    const int PromptLength = 128, NewTokens = 256, Runs = 3;
    const double HbmBytesPerSecond = 4.2e12;
    int vocab = Mamba130M.Vocab;
    var random = new Random(3);
    int[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();

    // Each small-batch plan against the CPU path (a 16-token prompt, then three single tokens: the first step runs
    // kernel by kernel, the next two replay the graph). Overlapping launches only where the device has them.
    bool bf16 = gpu.Precision == GpuPrecision.BFloat16;
    // fp16 weights first (fp32 mode only), then the compute weights; the last plan (kernels per layer, compute weights,
    // plain launches) is the reference that must pass.
    var plans = new List<DecodePlan>();
    foreach (bool float16 in bf16 ? new[] { false } : new[] { true, false })
    {
        string weights = float16 ? ", fp16 weights" : "";
        plans.Add(new("persistent kernel" + weights, true, false, float16));
        if (gpu.Context.Architecture >= 90) plans.Add(new("kernels per layer, overlapping" + weights, false, true, float16));
        plans.Add(new("kernels per layer" + weights, false, false, float16));
    }
    foreach (var plan in plans.ToArray())
    {
        plan.Apply(gpu);
        var (planAbsolute, planRelative) = plan.Float16 ? (2e-2, 1e-2) : (absolute, relative);
        IDecodingModel cpu = host;
        var cpuState = cpu.CreateDecodeState(1);
        using var state = gpu.CreateDecodeState(1);
        var expected = new float[vocab];
        var actual = new float[vocab];
        double worst = 0;
        try
        {
            foreach (int length in new[] { 16, 1, 1, 1 })
            {
                var tokens = Tokens(length);
                cpu.Advance(cpuState, tokens, expected);
                gpu.Advance(state, tokens, actual);
                worst = Math.Max(worst, expected.Select((e, i) => Math.Abs(actual[i] - e) / (planAbsolute + planRelative * Math.Abs(e))).Max());
            }
        }
        catch (MambaGen.Cuda.CudaException error) when (plan != plans[^1])
        {
            Console.Error.WriteLine($"decode with the {plan.Name} failed ({error.Message}); not timing it.");
            plans.Remove(plan);
            continue;
        }
        Console.WriteLine($"check: decode steps b1 ({plan.Name}) against the CPU path, worst error {worst:P1} of the tolerance");
        if (!(worst <= 1))
        {
            Console.Error.WriteLine($"The GPU decode step with the {plan.Name} does not match the CPU path; not timing it.");
            if (plan == plans[^1]) return false;
            plans.Remove(plan);
        }
    }

    // The floor: every weight read once per step (the fused kernels read the matrices in the plan's type and the
    // vectors in fp32; counted here as all in the matrices' type, which they nearly all are).
    double Floor(bool float16)
    {
        long bytes = host.Parameters.Count * (bf16 || float16 ? 2 : sizeof(float));
        return HbmBytesPerSecond / bytes;
    }
    foreach (bool float16 in bf16 ? new[] { false } : new[] { false, true })
    {
        string type = float16 ? "fp16" : bf16 ? "bf16" : "fp32";
        double typeFloor = Floor(float16);
        Console.WriteLine($"weights {host.Parameters.Count * 2.0 * (bf16 || float16 ? 1 : 2) / 1e6:F0} MB in {type}: reading them once per step at 4.2 TB/s allows {typeFloor:N0} steps/s");
        results[$"decode_weight_read_floor_steps_per_s_{type}"] = typeFloor;
    }
    foreach (int batch in new[] { 1, 64 })
    {
        var prompt = Tokens(batch * PromptLength);
        // The same tokens in every mode of one weight type (fp16 weights may part from fp32's at a near tie).
        var references = new Dictionary<bool, int[][]>();
        // Above the fused batch limit the plan and the fp16 weights do not matter: the cuBLAS path runs either way.
        var batchPlans = batch <= 8 ? plans : [plans[^1]];
        foreach (bool graphs in new[] { true, false })
        {
            foreach (var plan in batchPlans)
            {
                if (!graphs && plan.Overlap) continue;
                plan.Apply(gpu);
                double floor = Floor(plan.Float16);
                string weightType = plan.Float16 ? "fp16" : bf16 ? "bf16" : "fp32";
                string mode = (graphs ? "CUDA graph" : "kernel launches") + (batch <= 8 ? $", {plan.Name}" : "");
                var rates = new double[Runs];
                for (int run = 0; run < Runs; run++)
                {
                    (rates[run], var tokens) = GreedyRun(gpu, prompt, batch, graphs, NewTokens);
                    var reference = references.TryAdd(plan.Float16, tokens) ? tokens : references[plan.Float16];
                    if (!reference.Zip(tokens).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second)))
                    {
                        Console.Error.WriteLine($"decode b{batch}: the greedy tokens differ from the first run's ({mode}).");
                        return false;
                    }
                }
                Array.Sort(rates);
                double rate = rates[Runs / 2];
                results[$"decode_b{batch}_{(graphs ? "graph" : "launches")}{(batch <= 8 ? "_" + plan.Key : "")}_tokens_per_s"] = rate;
                Console.WriteLine($"decode b{batch}, {NewTokens} greedy steps after a {PromptLength}-token prompt, {mode}: " +
                                  $"{rate:N0} tok/s ({1e3 * batch / rate:F3} ms per step), {rate / batch / floor:P1} of the {weightType} weight-read floor");
            }
        }
        Console.WriteLine($"check: decode b{batch}, the same {NewTokens + 3} tokens per sequence in every run and mode of the same weights");
    }

    // What sampling costs on top: every step copies the whole row of logits back for the host to sample from.
    gpu.UseCudaGraphs = true;
    plans.First(plan => !plan.Float16).Apply(gpu);
    using (var state = gpu.CreateDecodeState(1))
    {
        var logits = new float[vocab];
        gpu.Advance(state, Tokens(PromptLength), logits);
        var next = new int[1];
        double stepMs = Median(NewTokens, () =>
        {
            next[0] = random.Next(vocab);
            gpu.Advance(state, next, logits);
        });
        results["decode_b1_logits_to_host_ms_per_token"] = stepMs;
        Console.WriteLine($"decode b1 with the logits copied to the host every step (the sampling path), CUDA graph, {plans.First(plan => !plan.Float16).Name}: {stepMs:F3} ms per token, {1e3 / stepMs:N0} tok/s");
    }
    return true;
}

// `steps` greedy steps from a fresh state (no prefill, so only decode kernels run) at batch 1 with each small-batch
// plan and at batch 64, graphs on: the first step launches kernel by kernel, the rest replay the graph.
static void ProfileSteps(CudaMambaModel gpu, int steps)
{
    var plans = new List<DecodePlan> { new("persistent kernel", true, false), new("kernels per layer", false, false) };
    gpu.UseCudaGraphs = true;
    foreach (int batch in new[] { 1, 64 })
    {
        foreach (var plan in batch <= 8 ? plans : [plans[^1]])
        {
            plan.Apply(gpu);
            using var state = gpu.CreateDecodeState(batch);
            var feed = new int[batch];
            var next = new int[batch];
            var watch = Stopwatch.StartNew();
            for (int step = 0; step < steps; step++)
            {
                gpu.AdvanceGreedy(state, feed, next, Mamba130M.Vocab);
                (feed, next) = (next, feed);
            }
            Console.WriteLine($"profile: b{batch}, {plan.Name}, {steps} greedy steps from a fresh state in {watch.Elapsed.TotalMilliseconds:F1} ms (profiler overhead included)");
        }
    }
}

// Prefills `prompt`, picks the first token from its logits, takes two untimed greedy steps (a state's first step runs
// kernel by kernel, the second captures the graph), then times `newTokens` greedy steps. Returns tokens per second over the batch and every sequence's tokens.
static (double Rate, int[][] Tokens) GreedyRun(CudaMambaModel gpu, int[] prompt, int batch, bool graphs, int newTokens)
{
    int vocab = Mamba130M.Vocab;
    gpu.UseCudaGraphs = graphs;
    using var state = gpu.CreateDecodeState(batch);
    var logits = new float[batch * vocab];
    gpu.Advance(state, prompt, logits);
    var feed = Enumerable.Range(0, batch).Select(b => MambaGen.Cpu.TokenSampler.ArgMax(logits.AsSpan(b * vocab, vocab))).ToArray();
    var next = new int[batch];
    var tokens = Enumerable.Range(0, batch).Select(_ => new int[newTokens + 3]).ToArray();
    void Step(int index)
    {
        gpu.AdvanceGreedy(state, feed, next, vocab);
        (feed, next) = (next, feed);
        for (int b = 0; b < batch; b++) tokens[b][index] = feed[b];
    }
    for (int b = 0; b < batch; b++) tokens[b][0] = feed[b];
    Step(1);
    Step(2);
    var watch = Stopwatch.StartNew();
    for (int step = 0; step < newTokens; step++) Step(step + 3);
    return (batch * newTokens / watch.Elapsed.TotalSeconds, tokens);
}

// A small-batch decode kernel plan: the persistent kernel, or four kernels per layer (optionally overlapping launches),
// reading the compute weights or the fp16 copy.
sealed record DecodePlan(string Name, bool Persistent, bool Overlap, bool Float16 = false)
{
    public string Key => (Persistent ? "persistent" : Overlap ? "layers_overlap" : "layers") + (Float16 ? "_fp16" : "");

    public void Apply(CudaMambaModel gpu)
    {
        gpu.PersistentDecodeKernel = Persistent;
        gpu.OverlapDecodeKernels = Overlap;
        gpu.DecodeWeights = Float16 ? DecodeWeightType.Float16 : DecodeWeightType.Compute;
    }
}

[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm]
public partial class Mamba130M { }
