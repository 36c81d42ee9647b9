using System.CommandLine;
using System.Globalization;
using MambaGen;
using MambaGen.Checkpoints;
using MambaGen.Generation;
using MambaGen.Text;
using Spectre.Console;

// Text generation from a checkpoint directory (config.json + model.safetensors + tokenizer.json): the prompt comes
// from the argument or standard input, the continuation streams to standard output as it is generated, and the
// prefill and decode speeds go to standard error.

var checkpoint = new Argument<string>("checkpoint") { Description = "Folder with config.json, model.safetensors and tokenizer.json (e.g. a download of state-spaces/mamba-130m-hf)" };
var promptArgument = new Argument<string?>("prompt") { Description = "Text to continue; read from standard input when left out or '-'", Arity = ArgumentArity.ZeroOrOne };
var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 100 };
var temperature = new Option<float>("--temperature") { Description = "0 = greedy; higher = more random", DefaultValueFactory = _ => 0f };
var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens (0 = all)", DefaultValueFactory = _ => 0 };
var topP = new Option<float>("--top-p") { Description = "Nucleus: the smallest set of tokens with this probability, in (0, 1]", DefaultValueFactory = _ => 1f };
var minP = new Option<float>("--min-p") { Description = "Drop tokens below this fraction of the top token's probability, in [0, 1)", DefaultValueFactory = _ => 0f };
var repetitionPenalty = new Option<float>("--repetition-penalty") { Description = "> 1 makes tokens already seen less likely (1 = off)", DefaultValueFactory = _ => 1f };
var seed = new Option<int?>("--seed") { Description = "Seed for sampling (the same seed gives the same text); random when left out" };
var stop = new Option<string[]>("--stop") { Description = "Stop before this text (repeatable)", AllowMultipleArgumentsPerToken = false };
var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Do not stop at the end-of-sequence token" };
var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or cuda:bf16 (an NVIDIA GPU: the driver, NVRTC and cuBLAS are needed; :bf16 computes in bf16 and decodes from bf16 weights)", DefaultValueFactory = _ => "cpu" };
var half = new Option<string?>("--half") { Description = "On the CPU, decode from a 16-bit copy of the weights: bf16 or fp16 (half the bytes per token)" };
half.AcceptOnlyFromAmong("bf16", "fp16");

var root = new RootCommand("Continue a text prompt with a Mamba checkpoint, streaming the output")
{
    checkpoint, promptArgument, maxNewTokens, temperature, topK, topP, minP, repetitionPenalty, seed, stop, ignoreEos, device, half,
};
root.Validators.Add(result =>
{
    if (result.GetValue(half) is not null && result.GetValue(device) is { } d && !d.Equals("cpu", StringComparison.OrdinalIgnoreCase))
        result.AddError($"--half applies to the CPU; on a GPU use --device cuda:bf16 (bf16 compute and bf16 decode weights), not --half with --device {d}.");
});
root.SetAction(result =>
{
    var status = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
    // Redirected (a log, a pipe): one line per message, not wrapped at 80 columns.
    if (Console.IsErrorRedirected) status.Profile.Width = 4096;
    try
    {
        var where = Device.Parse(result.GetValue(device)!);
        string directory = result.GetValue(checkpoint)!;
        string? promptText = result.GetValue(promptArgument);
        if (promptText is null or "-") promptText = Console.In.ReadToEnd();

        var tokenizer = MambaTokenizer.FromDirectory(directory);
        var halfPrecision = result.GetValue(half) switch
        {
            "bf16" => MambaGen.Cpu.HalfPrecision.BFloat16,
            "fp16" => MambaGen.Cpu.HalfPrecision.Float16,
            _ => (MambaGen.Cpu.HalfPrecision?)null,
        };
        var (shapeName, model) = KnownShapes.Pick(directory, where, halfPrecision);
        var generator = new TextGenerator(model, tokenizer);
        var options = new GenerationOptions
        {
            MaxNewTokens = result.GetValue(maxNewTokens),
            Temperature = result.GetValue(temperature),
            TopK = result.GetValue(topK),
            TopP = result.GetValue(topP),
            MinP = result.GetValue(minP),
            RepetitionPenalty = result.GetValue(repetitionPenalty),
            Seed = result.GetValue(seed),
            StopAtEndOfSequence = !result.GetValue(ignoreEos),
        };
        var run = generator.Start(promptText, options, result.GetValue(stop) ?? []);
        string weights = halfPrecision is null ? "" : $", decoding from {result.GetValue(half)} weights";
        status.MarkupLine(Markup.Escape($"{directory}: {shapeName} on {where}{weights}; prompt of {run.PromptTokens.Count} tokens"));

        // Ctrl+C ends the stream cleanly: the text so far and the speeds are still printed.
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.Write(promptText);
        try
        {
            foreach (var piece in run.StreamAsync(cancel.Token).ToBlockingEnumerable())
                Console.Write(piece);
        }
        catch (OperationCanceledException) { status.MarkupLine("[yellow]cancelled[/]"); }
        Console.WriteLine();

        var stats = run.Statistics;
        status.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"prefill: {stats.PrefillTokens} tokens in {stats.PrefillTime.TotalMilliseconds:F1} ms ({stats.PrefillTokensPerSecond:F1} tokens/s); " +
            $"decode: {stats.DecodeTokens} tokens in {stats.DecodeTime.TotalMilliseconds:F1} ms ({stats.DecodeTokensPerSecond:F1} tokens/s); " +
            $"{stats.GeneratedTokens} generated, finished by {(run.StoppedAtStopString ? "stop string" : run.FinishReason?.ToString() ?? "cancellation")}")));
        return 0;
    }
    catch (Exception e) when (e is CheckpointException or ArgumentException or IOException or InvalidOperationException or InvalidDataException or NotSupportedException
        or FormatException or MambaGen.Cuda.CudaException or DllNotFoundException)
    {
        status.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();
