using System.CommandLine;
using System.CommandLine.Parsing;

namespace MambaGen.Samples;

/// <summary>Settings every training sample takes from its command line.</summary>
/// <param name="Steps">Optimizer updates per variant; 0 only evaluates the freshly initialised models.</param>
/// <param name="Seed">Seeds the weights, the training data and (offset) the held-out sequences.</param>
/// <param name="CheckpointDirectory">Where each variant's training state is kept; null keeps none.</param>
/// <param name="Resume">Continue each variant from its state file in <paramref name="CheckpointDirectory"/> when there is one.</param>
internal sealed record CommonSettings(
    int Steps, int Batch, float LearningRate, int Seed, int EvaluationSequences, int EvaluationEvery,
    string OutputDirectory, string? CheckpointDirectory, int CheckpointEvery, bool Resume, Device Device, int Gpus);

/// <summary>
/// The flags both training samples share (steps, batch, learning rate, seed, evaluation, output, checkpoints,
/// device), with their validation. Each sample passes its own defaults and adds its task flags beside these.
/// </summary>
internal sealed class CommonOptions
{
    private readonly Option<int> _steps;
    private readonly Option<int> _batch;
    private readonly Option<float> _learningRate;
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the weights, the training data and the held-out set", DefaultValueFactory = _ => 0 };
    private readonly Option<int> _evaluationSequences;
    private readonly Option<int> _evaluationEvery;
    private readonly Option<string> _output = new("--output") { Description = "Folder for the results (JSON and SVG)", DefaultValueFactory = _ => "results" };
    private readonly Option<string?> _checkpointDirectory = new("--checkpoint-dir") { Description = "Folder for each variant's training state (saved periodically, at the end and on Ctrl+C)" };
    private readonly Option<int> _checkpointEvery = new("--checkpoint-every") { Description = "Save training state every this many steps (0: only at the end or on Ctrl+C)", DefaultValueFactory = _ => 100 };
    private readonly Option<bool> _resume = new("--resume") { Description = "Continue each variant from its state in --checkpoint-dir (same flags required)" };
    private readonly Option<string> _device = new("--device") { Description = "Where to train: cpu, cuda or cuda:N (an NVIDIA GPU)", DefaultValueFactory = _ => "cpu" };
    private readonly Option<int> _gpus = new("--gpus")
    {
        Description = "Train data-parallel on this many GPUs of this machine, one process each, through NCCL (needs --device cuda; --batch is the global batch)",
        DefaultValueFactory = _ => 1,
    };

    public CommonOptions(int steps, int batch, float learningRate, int evaluationSequences, int evaluationEvery)
    {
        _steps = new("--steps") { Description = "Optimizer updates per variant (0: evaluate the untrained models only)", DefaultValueFactory = _ => steps };
        _batch = new("--batch") { Description = "Sequences per update and per evaluation batch", DefaultValueFactory = _ => batch };
        _learningRate = new("--lr") { Description = "Peak learning rate (linear warm-up over the first 10% of steps, then cosine decay to 10%)", DefaultValueFactory = _ => learningRate };
        _evaluationSequences = new("--eval-sequences") { Description = "Held-out sequences per evaluation", DefaultValueFactory = _ => evaluationSequences };
        _evaluationEvery = new("--eval-every") { Description = "Evaluate on the held-out set every this many steps (0: only at the end)", DefaultValueFactory = _ => evaluationEvery };

        RequireAtLeast(_steps, 0);
        RequireAtLeast(_batch, 1);
        RequireAtLeast(_evaluationSequences, 1);
        RequireAtLeast(_evaluationEvery, 0);
        RequireAtLeast(_checkpointEvery, 0);
        RequireAtLeast(_seed, 0);
        RequireAtLeast(_gpus, 1);
        _learningRate.Validators.Add(result =>
        {
            float value = result.GetValueOrDefault<float>();
            if (!(value > 0 && float.IsFinite(value))) result.AddError($"--lr must be a finite number > 0, was {value}.");
        });
        _device.Validators.Add(result =>
        {
            try { Device.Parse(result.GetValueOrDefault<string>()); }
            catch (FormatException error) { result.AddError($"--device: {error.Message}"); }
        });
    }

    /// <summary>Adds the shared flags to <paramref name="command"/>, with the checks that need several of them.</summary>
    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { _steps, _batch, _learningRate, _seed, _evaluationSequences, _evaluationEvery, _output, _checkpointDirectory, _checkpointEvery, _resume, _device, _gpus })
            command.Options.Add(option);
        command.Validators.Add(result =>
        {
            if (result.GetValue(_gpus) is > 1 and int gpus)
            {
                if (!IsCuda(result.GetValue(_device)))
                    result.AddError($"--gpus {gpus} trains on GPUs: add --device cuda.");
                if (result.GetValue(_batch) % gpus != 0)
                    result.AddError($"--batch ({result.GetValue(_batch)}) is the global batch and must split evenly over --gpus {gpus}.");
            }
            if (result.GetValue(_resume) && result.GetValue(_checkpointDirectory) is not { } directory)
                result.AddError("--resume needs --checkpoint-dir (the folder holding the saved training state).");
            else if (result.GetValue(_resume) && ResumeProblem(result.GetValue(_checkpointDirectory)!) is { } problem)
                result.AddError(problem);
            // A command validator sees only the values written on the command line (an omitted --steps reads 0 here,
            // although its default is positive), so only an explicit --steps 0 counts.
            if (result.GetValue(_resume) && result.GetResult(_steps) is { Implicit: false } steps && steps.GetValueOrDefault<int>() == 0)
                result.AddError("--resume continues training, so it needs --steps >= 1.");
        });
    }

    /// <summary>
    /// Why <paramref name="directory"/> cannot be resumed from, or null: a missing or empty folder is almost always a
    /// mistyped path, and silently starting from step 0 would throw away the run the user meant to continue.
    /// </summary>
    private static string? ResumeProblem(string directory)
    {
        if (!Directory.Exists(directory))
            return $"--resume: the --checkpoint-dir '{directory}' does not exist, so there is nothing to resume (mistyped? without --resume training starts afresh).";
        if (!Directory.EnumerateFiles(directory, "*" + VariantTraining.StateFileSuffix).Any())
            return $"--resume: '{directory}' holds no saved training state (files named <sample>-<variant>{VariantTraining.StateFileSuffix}); " +
                "check the path, or run without --resume to start afresh.";
        return null;
    }

    public CommonSettings Read(ParseResult result) => new(
        result.GetValue(_steps), result.GetValue(_batch), result.GetValue(_learningRate), result.GetValue(_seed),
        result.GetValue(_evaluationSequences), result.GetValue(_evaluationEvery), result.GetValue(_output)!,
        result.GetValue(_checkpointDirectory), result.GetValue(_checkpointEvery), result.GetValue(_resume), Device.Parse(result.GetValue(_device)!), result.GetValue(_gpus));

    private static bool IsCuda(string? device)
    {
        try { return device is not null && Device.Parse(device).Kind == DeviceKind.Cuda; }
        catch (FormatException) { return false; } // the --device validator reports it
    }

    /// <summary>An int flag that must be at least <paramref name="minimum"/>.</summary>
    public static Option<int> RequireAtLeast(Option<int> option, int minimum)
    {
        option.Validators.Add(result =>
        {
            int value = result.GetValueOrDefault<int>();
            if (value < minimum) result.AddError($"{option.Name} must be >= {minimum}, was {value}.");
        });
        return option;
    }

    /// <summary>A vocabulary flag that must fit the generated models' <see cref="Architecture.Vocab"/> logits.</summary>
    public static Option<int> RequireVocabulary(Option<int> option, int minimum, int maximum)
    {
        option.Validators.Add(result =>
        {
            int value = result.GetValueOrDefault<int>();
            if (value < minimum || value > maximum)
                result.AddError($"{option.Name} must be in {minimum}..{maximum} (the variants are generated with Vocab = {Architecture.Vocab}; change Architecture.Vocab in samples/Shared for more), was {value}.");
        });
        return option;
    }

    /// <summary>
    /// <c>--variants</c>: names from <paramref name="variants"/> (any case, space- or comma-separated), all by default.
    /// </summary>
    public static Option<string[]> VariantsOption(IReadOnlyList<Variant> variants)
    {
        var option = new Option<string[]>("--variants")
        {
            Description = $"Variants to train, e.g. --variants {variants[0].Name},{variants[^1].Name} (default: all of {string.Join(", ", variants.Select(v => v.Name))})",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => variants.Select(v => v.Name).ToArray(),
        };
        option.Validators.Add(result =>
        {
            var names = SplitNames(result.GetValueOrDefault<string[]>()).ToList();
            if (names.Count == 0) result.AddError("--variants needs at least one variant name.");
            foreach (string name in names)
                if (!variants.Any(v => string.Equals(v.Name, name, StringComparison.OrdinalIgnoreCase)))
                    result.AddError($"--variants: unknown variant '{name}'; choose from {string.Join(", ", variants.Select(v => v.Name))}.");
        });
        return option;
    }

    /// <summary>The chosen variants in declaration order (validated by <see cref="VariantsOption"/>).</summary>
    public static IReadOnlyList<Variant> SelectedVariants(ParseResult result, Option<string[]> option, IReadOnlyList<Variant> variants)
    {
        var names = SplitNames(result.GetValue(option)!).ToHashSet(StringComparer.OrdinalIgnoreCase);
        return variants.Where(v => names.Contains(v.Name)).ToList();
    }

    private static IEnumerable<string> SplitNames(string[] values) =>
        values.SelectMany(value => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
