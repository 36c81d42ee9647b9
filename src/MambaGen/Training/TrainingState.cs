using MambaGen.Tasks;

namespace MambaGen.Training;

/// <summary>One evaluation on the held-out set, taken after <paramref name="Step"/> completed updates.</summary>
public sealed record EvaluationResult(long Step, TaskScore Score);

/// <summary>
/// Everything needed to continue a run bit-for-bit: weights, AdamW moments, completed steps, the data stream's
/// random state, plus identities that refuse a resume with another model variant or other options, and the
/// history (per-step loss, evaluations) so curves survive a resume.
/// </summary>
internal sealed record TrainingState(
    long Step,
    ulong[] DataRandomState,
    string ModelShape,
    string OptionsFingerprint,
    float[] Parameters,
    float[] FirstMoment,
    float[] SecondMoment,
    float[] LossHistory,
    EvaluationResult[] Evaluations);

/// <summary>
/// How training state is stored on disk; the trainer uses <see cref="SafeTensorsTrainingStateFormat"/>.
/// </summary>
internal interface ITrainingStateFormat
{
    /// <summary>Writes atomically: on failure the previous file at <paramref name="path"/> is untouched.</summary>
    void Write(string path, TrainingState state);

    /// <summary>
    /// Reads and checks a state file. Throws <see cref="InvalidDataException"/> naming the file and what is wrong
    /// when it is truncated, corrupt or not a training state.
    /// </summary>
    TrainingState Read(string path);
}
