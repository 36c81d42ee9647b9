using System.CommandLine;
using System.Globalization;
using MambaGen;
using MambaGen.Checkpoints;
using Spectre.Console;

// Inference from a Hugging Face checkpoint: the model type is generated from the checkpoint's config.json, the
// weights are loaded (and checked against the type's constants), then one forward pass gives the next-token
// distribution and Generate continues the prompt greedily.

var checkpoint = new Option<string?>("--checkpoint")
    { Description = "Folder with config.json and model.safetensors (default: tests/fixtures/hf-tiny-a of this repository)" };
var prompt = new Option<int[]>("--prompt")
    { Description = $"Prompt token ids (0..{TinyMamba.Vocab - 1})", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [3, 1, 4, 1, 5, 9, 2, 6] };
var newTokens = new Option<int>("--new-tokens") { Description = "Tokens to generate greedily", DefaultValueFactory = _ => 12 };
var root = new RootCommand("Load a Hugging Face Mamba checkpoint into a generated type and run it") { checkpoint, prompt, newTokens };
root.SetAction(result =>
{
    try
    {
        string directory = result.GetValue(checkpoint) ?? Path.Combine(FindRepositoryRoot(), "tests", "fixtures", "hf-tiny-a");
        int[] tokens = result.GetValue(prompt)!;
        var model = TinyMamba.Load(directory);
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"Loaded {directory}: D = {TinyMamba.DModel}, {TinyMamba.Layers} layers, N = {TinyMamba.DState}, vocabulary {TinyMamba.Vocab}, {model.Parameters.Values.Length:N0} parameters")));
        AnsiConsole.MarkupLine(Markup.Escape($"Prompt: {string.Join(' ', tokens)}"));

        float[] logits = model.Forward(tokens, batch: 1);
        var table = new Table().Border(TableBorder.Rounded).Title("Next token after the prompt")
            .AddColumn(new TableColumn("Token").RightAligned()).AddColumn(new TableColumn("Probability").RightAligned());
        foreach (var (token, probability) in TopProbabilities(logits.AsSpan(logits.Length - TinyMamba.Vocab), count: 5))
            table.AddRow(token.ToString(CultureInfo.InvariantCulture), probability.ToString("P2", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);

        int[] continuation = model.Generate(tokens, result.GetValue(newTokens));
        AnsiConsole.MarkupLine(Markup.Escape($"Greedy continuation: {string.Join(' ', continuation)}"));
        return 0;
    }
    catch (Exception e) when (e is CheckpointException or ArgumentException or IOException or InvalidOperationException)
    {
        AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

// Softmax of the last position's logits (in double, shifted by the maximum for stability), highest first.
static IEnumerable<(int Token, double Probability)> TopProbabilities(ReadOnlySpan<float> logits, int count)
{
    float max = float.NegativeInfinity;
    foreach (float logit in logits) max = Math.Max(max, logit);
    var weights = new double[logits.Length];
    double total = 0;
    for (int i = 0; i < logits.Length; i++) total += weights[i] = Math.Exp(logits[i] - max);
    return weights.Select((weight, token) => (token, weight / total)).OrderByDescending(p => p.Item2).Take(count).ToList();
}

// The folder holding MambaGen.sln, found by walking up from the executable (bin/<config>/<tfm>/ under the sample).
static string FindRepositoryRoot()
{
    for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        if (File.Exists(Path.Combine(folder.FullName, "MambaGen.sln"))) return folder.FullName;
    throw new IOException($"No folder above {AppContext.BaseDirectory} contains MambaGen.sln; pass --checkpoint <folder>.");
}

/// <summary>The type generated from the checkpoint's config.json (an AdditionalFiles item of this project).</summary>
[MambaModel(ConfigFile = "tests/fixtures/hf-tiny-a/config.json")]
internal partial class TinyMamba { }
