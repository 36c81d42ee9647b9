using System.Diagnostics;
using MambaGen.Tasks;
using MambaGen.Training;
using Spectre.Console;

namespace MambaGen.Samples;

/// <summary>One generated model type taking part in a comparison.</summary>
/// <param name="Name">Short name used in tables, results and state file names (letters, digits, '-').</param>
/// <param name="Shape">The type's constants (which of Δ, B, C are selective, sizes).</param>
/// <param name="Create">The type's <c>Create(seed)</c>.</param>
internal sealed record Variant(string Name, MambaShape Shape, Func<int, IMambaModel> Create);

/// <summary>How one variant's run ended.</summary>
/// <param name="Steps">Updates completed in all (including any before a resume).</param>
/// <param name="Seconds">Wall time of this invocation's training and final evaluation.</param>
/// <param name="Score">Held-out score of the final weights; default when cancelled.</param>
/// <param name="Cancelled">Ctrl+C stopped the run before its last step.</param>
internal sealed record VariantOutcome(
    Variant Variant, IMambaModel Model, long Steps, double Seconds, TaskScore Score,
    float[] LossHistory, IReadOnlyList<EvaluationResult> Evaluations, bool Cancelled)
{
    public int Parameters => Model.Parameters.TrainableLength;
}

/// <summary>Trains every variant with the same budget and data, one after another, with console progress.</summary>
internal static class VariantTraining
{
    /// <summary>How each variant's training state file ends: <c>{sample}-{variant}.state.safetensors</c>.</summary>
    public const string StateFileSuffix = ".state.safetensors";

    /// <summary>
    /// Trains <paramref name="variant"/> on <paramref name="task"/> (resuming from its state file when asked) and
    /// scores it on the held-out set. With 0 steps the freshly initialised model is only scored, on the same set.
    /// </summary>
    public static VariantOutcome Train(Variant variant, ISequenceTask task, CommonSettings settings, string sampleName, CancellationToken cancellationToken)
    {
        // On a GPU the model trains there (parameters, gradients and moments on the device); a data-parallel rank
        // uses the GPU of its local rank.
        var created = variant.Create(settings.Seed);
        var device = DataParallelLauncher.Rank is { } rank ? Device.Cuda(rank.LocalRank) : settings.Device;
        var model = device == Device.Cpu ? created : created.To(device);
        if (settings.Steps == 0)
        {
            long start = Stopwatch.GetTimestamp();
            var score = TaskScore.Evaluate(model, task, settings.EvaluationSequences, settings.Batch, Trainer.HeldOutRandom((ulong)settings.Seed));
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(variant.Name)}: untrained, held-out accuracy {score.Accuracy:P2}[/]");
            return new VariantOutcome(variant, model, 0, Stopwatch.GetElapsedTime(start).TotalSeconds, score, [], [], Cancelled: false);
        }

        string? statePath = settings.CheckpointDirectory is { } directory
            ? Path.Combine(directory, $"{sampleName}-{variant.Name}{StateFileSuffix}")
            : null;
        using var group = DataParallelLauncher.Join(model);
        using var trainer = new Trainer(model, task, new TrainingOptions
        {
            Steps = settings.Steps,
            BatchSize = settings.Batch,
            LearningRate = settings.LearningRate,
            WarmupSteps = settings.Steps / 10,
            Seed = (ulong)settings.Seed,
            EvaluationInterval = settings.EvaluationEvery,
            EvaluationSequences = settings.EvaluationSequences,
            CheckpointPath = statePath,
            CheckpointInterval = settings.CheckpointEvery,
        }, group);
        if (settings.Resume && File.Exists(statePath))
        {
            trainer.LoadCheckpoint(statePath);
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(variant.Name)}: resuming from {Markup.Escape(statePath)} at step {trainer.Step}[/]");
        }
        else if (settings.Resume)
        {
            // Variants after the interrupted one never started; say so rather than look like a silent restart.
            AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(variant.Name)}: no saved state at {Markup.Escape(statePath!)}; starting from step 0[/]");
        }
        var summary = DataParallelLauncher.IsResultRank
            ? TrainingConsole.Run(trainer, variant.Name, cancellationToken)
            : trainer.Run(null, cancellationToken);
        return new VariantOutcome(variant, model, summary.Step, summary.Elapsed.TotalSeconds,
            summary.FinalEvaluation?.Score ?? default, trainer.LossHistory.ToArray(), trainer.Evaluations.ToList(), summary.Cancelled);
    }

    /// <summary>
    /// Trains the variants in order and stops after the first one Ctrl+C interrupts. Returns the outcomes, the
    /// interrupted one last, and whether all finished.
    /// </summary>
    public static (List<VariantOutcome> Outcomes, bool Complete) TrainAll(
        IReadOnlyList<Variant> variants, ISequenceTask task, CommonSettings settings, string sampleName, CancellationToken cancellationToken)
    {
        var outcomes = new List<VariantOutcome>();
        foreach (var variant in variants)
        {
            var outcome = Train(variant, task, settings, sampleName, cancellationToken);
            outcomes.Add(outcome);
            if (outcome.Cancelled)
            {
                string saved = settings.CheckpointDirectory is null
                    ? "nothing was saved (pass --checkpoint-dir to keep training state)"
                    : $"training state is in {settings.CheckpointDirectory}; run again with the same flags and --resume to continue";
                AnsiConsole.MarkupLine($"[yellow]Interrupted during {Markup.Escape(variant.Name)}: {Markup.Escape(saved)}. No results were written.[/]");
                return (outcomes, false);
            }
        }
        return (outcomes, true);
    }
}
