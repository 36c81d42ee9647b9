using System.CommandLine;
using System.Globalization;
using MambaGen.Samples;
using MambaGen.Samples.SelectiveCopying;
using MambaGen.Tasks;
using Spectre.Console;

// The main job: train the selectivity ablations of one architecture on Selective Copying with the same budget and
// compare held-out accuracy, as in the paper's Tables 1 and 7. Defaults are sized to finish on a 2-core CPU in a
// few minutes; the flags scale the task and the budget up.

var common = new CommonOptions(steps: 4000, batch: 16, learningRate: 3e-3f, evaluationSequences: 256, evaluationEvery: 250);
var length = CommonOptions.RequireAtLeast(new Option<int>("--length")
    { Description = "Tokens per sequence, including the markers at the end", DefaultValueFactory = _ => 128 }, 2);
var count = CommonOptions.RequireAtLeast(new Option<int>("--count")
    { Description = "Data tokens to memorise (scattered among noise) and recall in order", DefaultValueFactory = _ => 4 }, 1);
var dataVocab = CommonOptions.RequireVocabulary(new Option<int>("--data-vocab")
    { Description = $"Distinct data tokens (1..{Architecture.Vocab - 2}; the models' vocabulary is {Architecture.Vocab})", DefaultValueFactory = _ => 8 },
    1, Architecture.Vocab - 2);
var variants = CommonOptions.VariantsOption(Variants.All);

var root = new RootCommand("Selective Copying: do selective Δ, B, C let a Mamba model copy tokens scattered among noise? (Gu & Dao 2023, Tables 1 and 7)");
common.AddTo(root);
foreach (var option in new Option[] { length, count, dataVocab, variants }) root.Options.Add(option);

return SampleOutput.Run(root, args, (result, cancellationToken) =>
{
    var settings = common.Read(result);
    if (settings.Gpus > 1 && DataParallelLauncher.Rank is null) return DataParallelLauncher.Launch(args, settings.Gpus, cancellationToken);
    DataParallelLauncher.SilenceOtherRanks();
    var task = new SelectiveCopyingTask(result.GetValue(length), result.GetValue(count), result.GetValue(dataVocab));
    var chosen = CommonOptions.SelectedVariants(result, variants, Variants.All);
    AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
        $"{task.Description}; D = {Architecture.DModel}, {Architecture.Layers} layers, N = {Architecture.DState}; {settings.Steps} steps × {settings.Batch} sequences, lr {settings.LearningRate}, seed {settings.Seed}")));

    var (outcomes, complete) = VariantTraining.TrainAll(chosen, task, settings, "selective-copying", cancellationToken);
    if (!complete) return false;
    if (!DataParallelLauncher.IsResultRank) return true; // rank 0 evaluates further and writes the results

    var table = SampleOutput.VariantTable("Accuracy", "Seq. accuracy", "Steps", "Seconds");
    foreach (var outcome in outcomes)
        SampleOutput.AddVariantRow(table, outcome, SampleOutput.Percent(outcome.Score.Accuracy), SampleOutput.Percent(outcome.Score.SequenceAccuracy),
            outcome.Steps.ToString(CultureInfo.InvariantCulture), outcome.Seconds.ToString("F1", CultureInfo.InvariantCulture));
    table.Caption(Markup.Escape($"held-out: {settings.EvaluationSequences} sequences; accuracy per recalled token, seq. accuracy = all {task.Count} right"));
    AnsiConsole.Write(table);

    string json = Path.Combine(settings.OutputDirectory, "selective-copying.json");
    SampleOutput.WriteJson(json, outcomes.Select(o => new SelectiveCopyingResult(
        o.Variant.Name, o.Variant.Shape.SelectiveDelta, o.Variant.Shape.SelectiveB, o.Variant.Shape.SelectiveC, o.Parameters,
        o.Score.Accuracy, o.Score.SequenceAccuracy, o.Score.MeanLoss, o.Steps, o.Seconds, task.Description)).ToList());
    var charts = SampleOutput.SaveTrainingCurves(settings.OutputDirectory, "selective-copying", "Selective Copying", outcomes);
    AnsiConsole.MarkupLine(Markup.Escape($"Wrote {string.Join(", ", [json, .. charts])}"));
    return true;
});

/// <summary>One row of results/selective-copying.json.</summary>
internal sealed record SelectiveCopyingResult(
    string Name, bool SelectiveDelta, bool SelectiveB, bool SelectiveC, int Parameters,
    double Accuracy, double SequenceAccuracy, double HeldOutLoss, long Steps, double Seconds, string Task);
