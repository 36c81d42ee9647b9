namespace MambaGen.Checkpoints;

/// <summary>
/// How strictly <see cref="MambaCheckpoint.Load"/> checks what it reads. A generated model's <c>Load(dir)</c> uses
/// the defaults; to relax them, load the parameters yourself and wrap them:
/// <c>MyModel.FromParameters(MambaCheckpoint.Load(dir, MyModel.ModelShape, new CheckpointLoadOptions { AllowNonFiniteWeights = true }))</c>.
/// </summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>The defaults: every check on.</summary>
    public static CheckpointLoadOptions Default { get; } = new();

    /// <summary>
    /// Accept NaN and ±∞ among the weights (by default the first one found is an error naming the tensor and the
    /// element). Useful only to inspect a broken checkpoint: such a model's outputs are NaN wherever they touch it.
    /// </summary>
    public bool AllowNonFiniteWeights { get; init; }

    /// <summary>
    /// Keep a 16-bit checkpoint's weights 16-bit in memory, for inference only: the projection matrices
    /// (<see cref="ParameterTensor.ProductOnly"/>: in_proj, x_proj, out_proj, an untied lm_head), which must all be
    /// stored in one 16-bit dtype (BF16 or F16), are kept exactly as the file holds them and get no fp32 copy; the other
    /// tensors are kept in that format and in fp32. The CPU then reads the products from the 16-bit values in every
    /// pass (<see cref="Cpu.HalfGemv"/>); a GPU in bf16 arithmetic uploads them as they are (fp16 ones rounded to bf16).
    /// mamba-2.8b in BF16 then takes about 6 GB of host memory instead of 11 GB of fp32 masters. Training, saving and
    /// fp32 GPU arithmetic are refused with an error that names this option.
    /// </summary>
    public bool KeepSixteenBitWeights { get; init; }

    /// <summary>
    /// The longest parameter segment the loaded layout may have (<see cref="ParameterLayout.MaxSegmentLength"/> unless a
    /// test asks for shorter ones, so that a small checkpoint exercises the storage mamba-2.8b needs).
    /// </summary>
    internal int MaxSegmentLength { get; init; } = ParameterLayout.MaxSegmentLength;
}
