using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace MambaGen.Training;

/// <summary>
/// Runs a <see cref="Trainer"/> with its progress on the console: a live Spectre.Console progress bar (loss,
/// accuracy, tokens/s, ETA) on an interactive terminal, plain periodic lines when output is redirected (logs, CI).
/// </summary>
public static class TrainingConsole
{
    /// <summary>Plain mode prints a line at each 1/PlainLinesPerRun of the run (and at evaluations and the end).</summary>
    public const int PlainLinesPerRun = 20;

    /// <summary>
    /// Trains to the end or until cancelled and prints a closing summary. <paramref name="live"/> forces the mode;
    /// by default the live display is used when <see cref="CanShowLive"/> says so.
    /// </summary>
    public static TrainingSummary Run(Trainer trainer, string title, CancellationToken cancellationToken = default,
        IAnsiConsole? console = null, bool? live = null)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(title);
        console ??= AnsiConsole.Console;
        TrainingSummary summary;
        bool showLive = live ?? CanShowLive(console);
        if (showLive)
        {
            summary = null!;
            console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(context =>
                {
                    var task = context.AddTask(Markup.Escape(title), maxValue: trainer.Options.Steps);
                    task.Value = trainer.Step;
                    summary = trainer.Run(new LiveReporter(console, task, title), cancellationToken);
                    task.Value = summary.Step;
                });
        }
        else
        {
            summary = trainer.Run(new PlainReporter(console, title, trainer.Options.Steps), cancellationToken);
        }
        string closing = Summarise(title, trainer, summary);
        if (showLive) console.WriteLine(closing); else WritePlain(console, closing);
        return summary;
    }

    /// <summary>True when the console is an interactive ANSI terminal and standard output is not redirected.</summary>
    public static bool CanShowLive(IAnsiConsole console) =>
        console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi && !Console.IsOutputRedirected;

    /// <summary>Writes a whole line to the console's writer, unwrapped, as logs want it.</summary>
    private static void WritePlain(IAnsiConsole console, string line) => console.Profile.Out.Writer.WriteLine(line);

    internal static string FormatDuration(TimeSpan duration) =>
        duration.TotalDays >= 1
            ? duration.ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture)
            : duration.ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture);

    private static string FormatAccuracy(EvaluationResult? evaluation) =>
        evaluation is null ? "acc –" : string.Create(CultureInfo.InvariantCulture, $"acc {evaluation.Score.Accuracy:P1}");

    private static string DescribeEvaluation(string title, EvaluationResult evaluation) => string.Create(CultureInfo.InvariantCulture,
        $"{title}  eval @ step {evaluation.Step}: loss {evaluation.Score.MeanLoss:F4}  accuracy {evaluation.Score.Accuracy:P2}  exact sequences {evaluation.Score.SequenceAccuracy:P2}  ({evaluation.Score.Sequences} sequences)");

    private static string Summarise(string title, Trainer trainer, TrainingSummary summary)
    {
        string how = summary.Cancelled
            ? $"stopped at step {summary.Step}/{trainer.Options.Steps}" + (trainer.Options.CheckpointPath is { } path ? $"; state saved to {path}" : "")
            : $"finished {summary.Step} steps";
        string accuracy = summary.FinalEvaluation is { } final
            ? string.Create(CultureInfo.InvariantCulture, $", held-out accuracy {final.Score.Accuracy:P2} (exact sequences {final.Score.SequenceAccuracy:P2})")
            : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{title}: {how} in {FormatDuration(summary.Elapsed)}, {summary.TokensPerSecond:N0} tokens/s{accuracy}");
    }

    /// <summary>Updates the progress bar's text at most ten times a second, with the mean loss since the last update.</summary>
    private sealed class LiveReporter(IAnsiConsole console, ProgressTask task, string title) : ITrainingProgress
    {
        private static readonly long RefreshTicks = Stopwatch.Frequency / 10;
        private long _lastRefresh;
        private double _lossSum;
        private int _lossCount;
        private EvaluationResult? _lastEvaluation;

        public void OnStep(in TrainingStepReport report)
        {
            _lossSum += report.Loss;
            _lossCount++;
            long now = Stopwatch.GetTimestamp();
            if (now - _lastRefresh < RefreshTicks && report.Step < report.TotalSteps) return;
            _lastRefresh = now;
            task.Description = Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"{title}  loss {_lossSum / _lossCount:F4}  {FormatAccuracy(_lastEvaluation)}  {report.TokensPerSecond:N0} tok/s  ETA {FormatDuration(report.Remaining)}"));
            task.Value = report.Step;
            _lossSum = 0;
            _lossCount = 0;
        }

        public void OnEvaluation(EvaluationResult evaluation)
        {
            _lastEvaluation = evaluation;
            console.MarkupLine("[grey]" + Markup.Escape(DescribeEvaluation(title, evaluation)) + "[/]");
        }

        public void OnCheckpoint(string path, long step) { }
    }

    /// <summary>Prints one line per 1/<see cref="PlainLinesPerRun"/> of the run with the mean loss over that stretch.</summary>
    private sealed class PlainReporter(IAnsiConsole console, string title, int totalSteps) : ITrainingProgress
    {
        private readonly int _every = Math.Max(1, (totalSteps + PlainLinesPerRun - 1) / PlainLinesPerRun);
        private double _lossSum;
        private int _lossCount;
        private EvaluationResult? _lastEvaluation;

        public void OnStep(in TrainingStepReport report)
        {
            _lossSum += report.Loss;
            _lossCount++;
            if (report.Step % _every != 0 && report.Step != report.TotalSteps) return;
            WritePlain(console, string.Create(CultureInfo.InvariantCulture,
                $"{title}  step {report.Step}/{report.TotalSteps}  loss {_lossSum / _lossCount:F4}  {FormatAccuracy(_lastEvaluation)}  lr {report.LearningRate:0.###e+0}  |g| {report.GradientNorm:F3}  {report.TokensPerSecond:N0} tok/s  ETA {FormatDuration(report.Remaining)}"));
            _lossSum = 0;
            _lossCount = 0;
        }

        public void OnEvaluation(EvaluationResult evaluation)
        {
            _lastEvaluation = evaluation;
            WritePlain(console, DescribeEvaluation(title, evaluation));
        }

        public void OnCheckpoint(string path, long step) =>
            WritePlain(console, string.Create(CultureInfo.InvariantCulture, $"{title}  saved training state at step {step} to {path}"));
    }
}
