using System.CommandLine;
using System.Globalization;
using MambaGen;
using MambaGen.Checkpoints;
using MambaGen.Training;
using Spectre.Console;

// Inference from a Hugging Face checkpoint: MambaGen generates each model type at compile time from a config.json, so
// this program knows the shapes declared at the bottom of this file. It reads the checkpoint's config.json, picks
// the declared type with that shape, loads the weights (checked against the type's constants), prints the
// next-token distribution after the prompt and continues it greedily.

KnownModel[] known =
[
    new("hf-tiny-a", "tests/fixtures/hf-tiny-a/config.json", TinyMamba.ModelShape, dir => { var m = TinyMamba.Load(dir); return new(m, (prompt, count) => m.Generate(prompt, count)); }),
    new("hf-tiny-b", "tests/fixtures/hf-tiny-b/config.json", TinyMambaB.ModelShape, dir => { var m = TinyMambaB.Load(dir); return new(m, (prompt, count) => m.Generate(prompt, count)); }),
];
string knownShapes = string.Join(Environment.NewLine, known.Select(k => $"  {k.Name}: {Describe(k.Shape)} (from {k.ConfigFile})"));
const string HowToDeclare =
    "To run a checkpoint of another shape, declare a type for it in samples/CheckpointInference/Program.cs:\n" +
    "  [MambaModel(ConfigFile = \"path/to/config.json\")] internal partial class MyModel { }\n" +
    "add <AdditionalFiles Include=\"path/to/config.json\" /> to CheckpointInference.csproj, and add a line for it to `known`.";

var checkpoint = new Option<string?>("--checkpoint")
    { Description = "Folder with config.json and model.safetensors (default: tests/fixtures/hf-tiny-a of this repository)" };
var prompt = new Option<int[]>("--prompt")
    { Description = "Prompt token ids (each below the checkpoint's vocabulary size)", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [3, 1, 4, 1, 5, 9, 2, 6] };
var newTokens = new Option<int>("--new-tokens") { Description = "Tokens to generate greedily", DefaultValueFactory = _ => 12 };
var root = new RootCommand(
    "Load a Hugging Face Mamba checkpoint into a generated type and run it.\n" +
    $"Shapes this build knows (each a type generated from a config.json at compile time):\n{knownShapes}\n{HowToDeclare}")
    { checkpoint, prompt, newTokens };
root.SetAction(result =>
{
    RedirectedOutput.ConfigureAnsiConsole();
    try
    {
        string directory = result.GetValue(checkpoint) ?? Path.Combine(FindRepositoryRoot(), "tests", "fixtures", "hf-tiny-a");
        int[] tokens = result.GetValue(prompt)!;
        string configPath = Path.Combine(directory, MambaCheckpoint.ConfigFileName);
        if (!File.Exists(configPath)) throw new CheckpointException($"{directory}: there is no {MambaCheckpoint.ConfigFileName}.");
        var shape = MambaConfig.ReadShape(configPath);
        var match = known.FirstOrDefault(k => Architecture(k.Shape) == Architecture(shape))
            ?? throw new CheckpointException(
                $"{configPath} describes {Describe(shape)}, a shape this build has no type for. It knows:{Environment.NewLine}{knownShapes}{Environment.NewLine}{HowToDeclare}");
        var (model, generate) = match.Load(directory);
        int vocab = model.Shape.Vocab;
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"Loaded {directory} as {match.Name}: {Describe(model.Shape)}, {model.Parameters.Count:N0} parameters")));
        AnsiConsole.MarkupLine(Markup.Escape($"Prompt: {string.Join(' ', tokens)}"));

        float[] logits = model.Forward(tokens, batch: 1);
        AnsiConsole.MarkupLine("Next token after the prompt:");
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn(new TableColumn("Token").RightAligned()).AddColumn(new TableColumn("Probability").RightAligned());
        foreach (var (token, probability) in TopProbabilities(logits.AsSpan(logits.Length - vocab), count: 5))
            table.AddRow(token.ToString(CultureInfo.InvariantCulture), probability.ToString("P2", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);

        int[] continuation = generate(tokens, result.GetValue(newTokens));
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

// The constants that decide whether a type can hold a checkpoint (token ids and A's initialisation do not).
static MambaShape Architecture(MambaShape shape) => shape with { BosTokenId = null, EosTokenId = null, PadTokenId = null, AInit = AInit.S4DReal };

static string Describe(MambaShape s) => string.Create(CultureInfo.InvariantCulture,
    $"D = {s.DModel}, {s.Layers} layers, vocabulary {s.Vocab}, N = {s.DState}, ED = {s.DInner}, R = {s.DtRank}, K = {s.ConvKernel}, " +
    $"{(s.TieEmbeddings ? "tied" : "untied")} head, {(s.ProjBias ? "with" : "no")} projection biases");

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

/// <summary>A declared type: its shape, and how to load a checkpoint into it.</summary>
internal sealed record KnownModel(string Name, string ConfigFile, MambaShape Shape, Func<string, LoadedModel> Load);

/// <summary>A loaded model and its (generated, type-specific) Generate.</summary>
internal readonly record struct LoadedModel(IMambaModel Model, Func<int[], int, int[]> Generate);

/// <summary>Types generated from checkpoints' config.json files (each an AdditionalFiles item of this project).</summary>
[MambaModel(ConfigFile = "tests/fixtures/hf-tiny-a/config.json")]
internal partial class TinyMamba { }

[MambaModel(ConfigFile = "tests/fixtures/hf-tiny-b/config.json")]
internal partial class TinyMambaB { }
