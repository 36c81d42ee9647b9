using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using MambaGen;
using MambaGen.Cuda.Backend;
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
var root = new RootCommand("Times a generated Mamba-130M-shaped model on the first CUDA GPU.") { batchOption, lengthOption, repeatOption, outOption, precisionOption };
root.SetAction(result => Run(result.GetValue(batchOption), result.GetValue(lengthOption), result.GetValue(repeatOption), result.GetValue(outOption),
    result.GetValue(precisionOption) == "bf16" ? GpuPrecision.BFloat16 : GpuPrecision.Float32));
return root.Parse(args).Invoke();

static int Run(int batch, int length, int repeat, FileInfo? output, GpuPrecision precision)
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

    // Correctness first: a fast wrong kernel is a failure. bf16 activations carry about 3 significant digits, so its
    // bar is the bf16 tolerance (|Δ| ≤ 5e-2 + 3e-2·|e|); fp32's is 2e-3 + 6e-4·|e|.
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

    // Decoding one sequence: a 16-token prompt read in one pass, then one token per call (logits back to the host each time).
    using (var state = gpu.CreateDecodeState(1))
    {
        var stepLogits = new float[Mamba130M.Vocab];
        gpu.Advance(state, Tokens(16), stepLogits);
        var next = new int[1];
        double tokenMs = Median(Math.Max(repeat, 50), () =>
        {
            next[0] = random.Next(Mamba130M.Vocab);
            gpu.Advance(state, next, stepLogits);
        });
        Console.WriteLine($"decode b1, one token per call: {tokenMs:F3} ms, {1e3 / tokenMs:N0} tok/s");
        results["decode_b1_ms_per_token"] = tokenMs;
    }

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

[MambaModel(DModel = 768, Layers = 24, Vocab = 50277, PadVocabMultiple = 8)]
[SelectiveSsm]
public partial class Mamba130M { }
