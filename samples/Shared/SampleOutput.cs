using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MambaGen.Checkpoints;
using MambaGen.Training;
using Spectre.Console;

namespace MambaGen.Samples;

/// <summary>Results files, charts and tables shared by the training samples, and their error handling.</summary>
internal static class SampleOutput
{
    /// <summary>Points per training curve: per-step losses are averaged over buckets so the SVG stays small and readable.</summary>
    private const int CurvePoints = 200;

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Writes <paramref name="value"/> as indented camelCase JSON, atomically.</summary>
    public static void WriteJson<T>(string path, T value) => AtomicFile.WriteText(path, JsonSerializer.Serialize(value, Json) + "\n");

    /// <summary>
    /// Saves <c>{prefix}-loss.svg</c> (training loss against step, one line per variant) and, when the run
    /// evaluated during training, <c>{prefix}-accuracy.svg</c> (held-out accuracy against step). Returns the paths;
    /// none when no variant trained a step (<c>--steps 0</c>), which says so instead of drawing empty axes.
    /// </summary>
    public static List<string> SaveTrainingCurves(string directory, string prefix, string title, IReadOnlyList<VariantOutcome> outcomes)
    {
        if (outcomes.All(outcome => outcome.LossHistory.Length == 0))
        {
            AnsiConsole.MarkupLine("[grey]No training curves: no variant trained a step (--steps 0 only scores the untrained models).[/]");
            return [];
        }
        var loss = new SvgChart($"{title}: training loss", "step", "cross-entropy (nats)") { YMin = 0 };
        var accuracy = new SvgChart($"{title}: held-out accuracy", "step", "accuracy") { YMin = 0, YMax = 1 };
        bool anyEvaluation = false;
        foreach (var outcome in outcomes)
        {
            var (steps, means) = BucketMeans(outcome.LossHistory);
            loss.AddSeries(outcome.Variant.Name, steps, means);
            if (outcome.Evaluations.Count == 0) continue;
            anyEvaluation = true;
            accuracy.AddSeries(outcome.Variant.Name,
                outcome.Evaluations.Select(e => (double)e.Step).ToArray(),
                outcome.Evaluations.Select(e => e.Score.Accuracy).ToArray());
        }
        var paths = new List<string> { Path.Combine(directory, $"{prefix}-loss.svg") };
        loss.Save(paths[0]);
        if (anyEvaluation)
        {
            paths.Add(Path.Combine(directory, $"{prefix}-accuracy.svg"));
            accuracy.Save(paths[1]);
        }
        return paths;
    }

    /// <summary>Means of consecutive runs of losses, at the step that ends each run (steps are 1-based).</summary>
    private static (double[] Steps, double[] Means) BucketMeans(float[] losses)
    {
        int bucket = Math.Max(1, (losses.Length + CurvePoints - 1) / CurvePoints);
        int count = (losses.Length + bucket - 1) / bucket;
        var steps = new double[count];
        var means = new double[count];
        for (int i = 0; i < count; i++)
        {
            int start = i * bucket, end = Math.Min(losses.Length, start + bucket);
            double sum = 0;
            for (int s = start; s < end; s++) sum += losses[s];
            steps[i] = end;
            means[i] = sum / (end - start);
        }
        return (steps, means);
    }

    /// <summary>A table whose first columns describe the variant (name, selective Δ/B/C, parameters), then <paramref name="columns"/>.</summary>
    public static Table VariantTable(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("Variant");
        foreach (string heading in new[] { "Δ", "B", "C" }) table.AddColumn(new TableColumn($"sel. {heading}").Centered());
        table.AddColumn(new TableColumn("Params").RightAligned());
        foreach (string column in columns) table.AddColumn(new TableColumn(Markup.Escape(column)).RightAligned());
        return table;
    }

    /// <summary>Adds a row: the variant's description cells, then <paramref name="cells"/>.</summary>
    public static void AddVariantRow(Table table, VariantOutcome outcome, params string[] cells)
    {
        static string Mark(bool selective) => selective ? "[green]✓[/]" : "[grey]–[/]";
        var shape = outcome.Variant.Shape;
        table.AddRow([Markup.Escape(outcome.Variant.Name), Mark(shape.SelectiveDelta), Mark(shape.SelectiveB), Mark(shape.SelectiveC),
            outcome.Parameters.ToString("N0", CultureInfo.InvariantCulture), .. cells.Select(Markup.Escape)]);
    }

    public static string Percent(double value) => double.IsNaN(value) ? "–" : value.ToString("P1", CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command's action under a Ctrl+C handler. Problems the user can
    /// fix (bad flags, task parameters out of range, a state file from another run, I/O, a missing GPU or CUDA library)
    /// print one red line and exit with 1; an interrupted run exits with 130.
    /// </summary>
    public static int Run(RootCommand command, string[] args, Func<ParseResult, CancellationToken, bool> action)
    {
        RedirectedOutput.ConfigureAnsiConsole();
        command.SetAction(result =>
        {
            using var cancellation = new ConsoleCancellation();
            try
            {
                return action(result, cancellation.Token) ? 0 : 130;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidDataException
                                          or CheckpointException or IOException or UnauthorizedAccessException or NotImplementedException
                                          or NotSupportedException or MambaGen.Cuda.CudaException or DllNotFoundException or TimeoutException)
            {
                AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
                // A data-parallel rank other than 0 prints nothing else, but its failure must be seen.
                if (!DataParallelLauncher.IsResultRank) Console.Error.WriteLine($"rank {DataParallelLauncher.Rank!.Rank}: error: {e.Message}");
                return 1;
            }
        });
        return command.Parse(args).Invoke();
    }
}
