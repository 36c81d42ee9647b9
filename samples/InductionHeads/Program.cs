using System.CommandLine;
using System.Globalization;
using MambaGen.Samples;
using MambaGen.Tasks;
using MambaGen.Training;
using Spectre.Console;

// Induction heads (the paper's Table 2): train at one length, then test whether recall holds at lengths far
// beyond it. Evaluation lengths are powers of two from --min-eval-length to --max-eval-length.

// Tokens per evaluation batch in the length sweep: long sequences go a few (or one) at a time so memory stays flat.
const int SweepTokensPerBatch = 32_768;

// Recall is learned in a sudden drop of the loss after a plateau at chance whose length varies with the seed; with
// these settings S6 dropped by step 2,000 and ended at ≥ 98.8 % in each of the seeds tried (docs/selection-experiments.md).
var common = new CommonOptions(steps: 4000, batch: 16, learningRate: 2e-3f, evaluationSequences: 256, evaluationEvery: 500);
var length = CommonOptions.RequireAtLeast(new Option<int>("--length")
    { Description = "Training sequence length", DefaultValueFactory = _ => 256 }, 3);
var vocab = CommonOptions.RequireVocabulary(new Option<int>("--vocab")
    { Description = $"Task vocabulary, trigger token included (3..{Architecture.Vocab}; the paper uses 16)", DefaultValueFactory = _ => 16 },
    3, Architecture.Vocab);
var minEvalLength = CommonOptions.RequireAtLeast(new Option<int>("--min-eval-length")
    { Description = "Shortest evaluated length (a power of two)", DefaultValueFactory = _ => 64 }, 4);
var maxEvalLength = CommonOptions.RequireAtLeast(new Option<int>("--max-eval-length")
    { Description = "Longest evaluated length (a power of two)", DefaultValueFactory = _ => 16_384 }, 4);
var sweepSequences = CommonOptions.RequireAtLeast(new Option<int>("--sweep-sequences")
    { Description = "Held-out sequences per evaluated length", DefaultValueFactory = _ => 128 }, 1);
foreach (var option in new[] { minEvalLength, maxEvalLength })
    option.Validators.Add(result =>
    {
        int value = result.GetValueOrDefault<int>();
        if (value > 0 && !int.IsPow2(value)) result.AddError($"{option.Name} must be a power of two, was {value}.");
    });
// Mamba (S6) and, for contrast, the same block with a time-invariant SSM.
Variant[] allVariants =
[
    new("S6", S6.ModelShape, seed => S6.Create(seed)),
    new("LTI", Lti.ModelShape, seed => Lti.Create(seed)),
];
var variants = CommonOptions.VariantsOption(allVariants);

var root = new RootCommand("Induction Heads: does recall learned at one length hold at far longer ones? (Gu & Dao 2023, Table 2)");
common.AddTo(root);
foreach (var option in new Option[] { length, vocab, minEvalLength, maxEvalLength, sweepSequences, variants }) root.Options.Add(option);
root.Validators.Add(result =>
{
    if (result.GetValue(minEvalLength) > result.GetValue(maxEvalLength))
        result.AddError($"--min-eval-length ({result.GetValue(minEvalLength)}) is above --max-eval-length ({result.GetValue(maxEvalLength)}).");
});

return SampleOutput.Run(root, args, (result, cancellationToken) =>
{
    var settings = common.Read(result);
    if (settings.Gpus > 1 && DataParallelLauncher.Rank is null) return DataParallelLauncher.Launch(args, settings.Gpus, cancellationToken);
    DataParallelLauncher.SilenceOtherRanks();
    var task = new InductionHeadsTask(result.GetValue(length), result.GetValue(vocab));
    var chosen = CommonOptions.SelectedVariants(result, variants, allVariants);
    var lengths = new List<int>();
    for (int l = result.GetValue(minEvalLength); l <= result.GetValue(maxEvalLength); l *= 2) lengths.Add(l);
    AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
        $"{task.Description}; D = {Architecture.DModel}, {Architecture.Layers} layers, N = {Architecture.DState}; {settings.Steps} steps × {settings.Batch} sequences, lr {settings.LearningRate}, seed {settings.Seed}; evaluated at {lengths[0]}..{lengths[^1]}")));

    var (outcomes, complete) = VariantTraining.TrainAll(chosen, task, settings, "induction-heads", cancellationToken);
    if (!complete) return false;
    if (!DataParallelLauncher.IsResultRank) return true; // rank 0 evaluates further and writes the results

    // Accuracy per length, each length on its own held-out stream derived from the run's seed.
    var sweeps = new List<LengthAccuracy[]>();
    foreach (var outcome in outcomes)
    {
        var sweep = new List<LengthAccuracy>();
        foreach (int evalLength in lengths)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                AnsiConsole.MarkupLine("[yellow]Interrupted during the length sweep. No results were written.[/]");
                return false;
            }
            int sequences = result.GetValue(sweepSequences);
            int batch = Math.Clamp(SweepTokensPerBatch / evalLength, 1, sequences);
            var score = TaskScore.Evaluate(outcome.Model, task.WithSequenceLength(evalLength), sequences, batch, Trainer.HeldOutRandom((ulong)settings.Seed));
            sweep.Add(new LengthAccuracy(evalLength, score.Accuracy, sequences));
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(outcome.Variant.Name)}: length {evalLength}: accuracy {score.Accuracy:P1}[/]");
        }
        sweeps.Add(sweep.ToArray());
    }

    var summary = SampleOutput.VariantTable($"Accuracy @ {task.SequenceLength}", "Steps", "Seconds");
    foreach (var outcome in outcomes)
        SampleOutput.AddVariantRow(summary, outcome, SampleOutput.Percent(outcome.Score.Accuracy),
            outcome.Steps.ToString(CultureInfo.InvariantCulture), outcome.Seconds.ToString("F1", CultureInfo.InvariantCulture));
    AnsiConsole.Write(summary);
    var byLength = new Table().Border(TableBorder.Rounded).AddColumn(new TableColumn("Length").RightAligned());
    foreach (var outcome in outcomes) byLength.AddColumn(new TableColumn(Markup.Escape(outcome.Variant.Name)).RightAligned());
    for (int i = 0; i < lengths.Count; i++)
    {
        string marker = lengths[i] == task.SequenceLength ? " (train)" : "";
        byLength.AddRow([lengths[i].ToString(CultureInfo.InvariantCulture) + marker, .. sweeps.Select(s => SampleOutput.Percent(s[i].Accuracy))]);
    }
    byLength.Caption(Markup.Escape($"{result.GetValue(sweepSequences)} held-out sequences per length"));
    AnsiConsole.Write(byLength);

    string json = Path.Combine(settings.OutputDirectory, "induction-heads.json");
    SampleOutput.WriteJson(json, outcomes.Select((o, i) => new InductionHeadsResult(
        o.Variant.Name, o.Variant.Shape.SelectiveDelta, o.Variant.Shape.SelectiveB, o.Variant.Shape.SelectiveC, o.Parameters,
        task.SequenceLength, o.Score.Accuracy, o.Steps, o.Seconds, task.Description, sweeps[i])).ToList());
    var chart = new SvgChart("Induction heads: accuracy against sequence length", "sequence length", "accuracy") { LogX = true, YMin = 0, YMax = 1 };
    for (int i = 0; i < outcomes.Count; i++)
        chart.AddSeries(outcomes[i].Variant.Name, sweeps[i].Select(s => (double)s.Length).ToArray(), sweeps[i].Select(s => s.Accuracy).ToArray());
    string lengthChart = Path.Combine(settings.OutputDirectory, "induction-heads-length.svg");
    chart.Save(lengthChart);
    var curves = SampleOutput.SaveTrainingCurves(settings.OutputDirectory, "induction-heads", "Induction Heads", outcomes);
    AnsiConsole.MarkupLine(Markup.Escape($"Wrote {string.Join(", ", [json, lengthChart, .. curves])}"));
    return true;
});

/// <summary>Held-out accuracy at one evaluation length.</summary>
internal sealed record LengthAccuracy(int Length, double Accuracy, int Sequences);

/// <summary>One row of results/induction-heads.json.</summary>
internal sealed record InductionHeadsResult(
    string Name, bool SelectiveDelta, bool SelectiveB, bool SelectiveC, int Parameters, int TrainLength,
    double Accuracy, long Steps, double Seconds, string Task, LengthAccuracy[] AccuracyByLength);
