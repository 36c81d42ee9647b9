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

    /// <summary>
    /// What both displays share: the mean loss over the steps since the last report, and the latest held-out
    /// evaluation (shown as accuracy on every later report).
    /// </summary>
    private abstract class Reporter(string title) : ITrainingProgress
    {
        private double _lossSum;
        private int _lossCount;
        private EvaluationResult? _lastEvaluation;

        protected string Title => title;

        public void OnStep(in TrainingStepReport report)
        {
            _lossSum += report.Loss;
            _lossCount++;
            if (!IsDue(report)) return;
            Show(report, string.Create(CultureInfo.InvariantCulture, $"loss {_lossSum / _lossCount:F4}  {FormatAccuracy(_lastEvaluation)}"));
            _lossSum = 0;
            _lossCount = 0;
        }

        public void OnEvaluation(EvaluationResult evaluation)
        {
            _lastEvaluation = evaluation;
            ShowEvaluation(DescribeEvaluation(title, evaluation));
        }

        public abstract void OnCheckpoint(string path, long step);

        /// <summary>Whether this step gets a report (the last step always does).</summary>
        protected abstract bool IsDue(in TrainingStepReport report);

        /// <summary>Shows a step report; <paramref name="lossAndAccuracy"/> is the shared "loss … acc …" text.</summary>
        protected abstract void Show(in TrainingStepReport report, string lossAndAccuracy);

        protected abstract void ShowEvaluation(string line);
    }

    /// <summary>Updates the progress bar's text at most ten times a second.</summary>
    private sealed class LiveReporter(IAnsiConsole console, ProgressTask task, string title) : Reporter(title)
    {
        private static readonly long RefreshTicks = Stopwatch.Frequency / 10;
        private long _lastRefresh;

        protected override bool IsDue(in TrainingStepReport report)
        {
            long now = Stopwatch.GetTimestamp();
            if (now - _lastRefresh < RefreshTicks && report.Step < report.TotalSteps) return false;
            _lastRefresh = now;
            return true;
        }

        protected override void Show(in TrainingStepReport report, string lossAndAccuracy)
        {
            task.Description = Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"{Title}  {lossAndAccuracy}  {report.TokensPerSecond:N0} tok/s  ETA {FormatDuration(report.Remaining)}"));
            task.Value = report.Step;
        }

        protected override void ShowEvaluation(string line) => console.MarkupLine("[grey]" + Markup.Escape(line) + "[/]");

        public override void OnCheckpoint(string path, long step) { }
    }

    /// <summary>Prints one line per 1/<see cref="PlainLinesPerRun"/> of the run.</summary>
    private sealed class PlainReporter(IAnsiConsole console, string title, int totalSteps) : Reporter(title)
    {
        private readonly int _every = Math.Max(1, (totalSteps + PlainLinesPerRun - 1) / PlainLinesPerRun);

        protected override bool IsDue(in TrainingStepReport report) => report.Step % _every == 0 || report.Step == report.TotalSteps;

        protected override void Show(in TrainingStepReport report, string lossAndAccuracy) =>
            WritePlain(console, string.Create(CultureInfo.InvariantCulture,
                $"{Title}  step {report.Step}/{report.TotalSteps}  {lossAndAccuracy}  lr {report.LearningRate:0.###e+0}  |g| {report.GradientNorm:F3}  {report.TokensPerSecond:N0} tok/s  ETA {FormatDuration(report.Remaining)}"));

        protected override void ShowEvaluation(string line) => WritePlain(console, line);

        public override void OnCheckpoint(string path, long step) =>
            WritePlain(console, string.Create(CultureInfo.InvariantCulture, $"{Title}  saved training state at step {step} to {path}"));
    }
}
