namespace MambaGen.Generation;

/// <summary>
/// How to continue a prompt. The defaults give greedy decoding of up to 256 tokens that stops at the model's
/// end-of-sequence token. Sampling follows Hugging Face's <c>generate</c>: the repetition penalty first, then the
/// temperature, then top-k, top-p and min-p, in that order.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>The most new tokens a call may ask for. Larger values throw rather than run out of memory.</summary>
    public const int MaxNewTokensLimit = 1 << 20;

    /// <summary>The longest prompt accepted, in tokens. Prompts are prefilled in chunks, so memory stays bounded.</summary>
    public const int MaxPromptTokens = 1 << 20;

    /// <summary>New tokens to generate at most, in [0, <see cref="MaxNewTokensLimit"/>].</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>0 picks the most likely token (greedy); a positive value samples from softmax(logits / temperature).</summary>
    public float Temperature { get; init; }

    /// <summary>Sample only among this many most likely tokens; 0 keeps all. Ignored when greedy.</summary>
    public int TopK { get; init; }

    /// <summary>Sample only from the smallest set of most likely tokens whose probability reaches this, in (0, 1]. Ignored when greedy.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Drop tokens whose probability is below this fraction of the most likely one's, in [0, 1). Ignored when greedy.</summary>
    public float MinP { get; init; }

    /// <summary>
    /// Makes tokens already in the prompt or the output less likely: a positive logit is divided by the penalty, a negative
    /// one multiplied (Hugging Face's rule). 1 switches it off; values above 1 penalise. Applies to greedy decoding too.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Token ids that end a sequence when generated (the id itself is part of the output).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Seed of the sampling generator: the same seed gives the same tokens. Null draws a fresh seed per call.</summary>
    public int? Seed { get; init; }

    /// <summary>Whether the end-of-sequence token stops a sequence (it is part of the output, as in Hugging Face).</summary>
    public bool StopAtEndOfSequence { get; init; } = true;

    /// <summary>
    /// The end-of-sequence id to stop at. Null takes the model's: <c>eos_token_id</c> from the loaded config.json, or the
    /// declared constant when the config has none.
    /// </summary>
    public int? EndOfSequenceId { get; init; }

    /// <summary>
    /// Only ids below this are generated; null allows the model's whole vocabulary. The text layer sets it to the
    /// tokenizer's size, so rows the checkpoint padded its embedding with are never picked.
    /// </summary>
    public int? VocabularyLimit { get; init; }

    /// <summary>True when no randomness is involved: the most likely token every step.</summary>
    public bool IsGreedy => Temperature == 0f;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of range for a model of <paramref name="vocab"/> tokens.</summary>
    public void Validate(int vocab)
    {
        if (MaxNewTokens is < 0 or > MaxNewTokensLimit)
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, $"MaxNewTokens must be in [0, {MaxNewTokensLimit}], was {MaxNewTokens}.");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"Temperature must be finite and ≥ 0 (0 = greedy), was {Temperature}.");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, $"TopK must be ≥ 0 (0 = no limit), was {TopK}.");
        if (!(TopP > 0 && TopP <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, $"TopP must be in (0, 1], was {TopP}.");
        if (!(MinP >= 0 && MinP < 1))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, $"MinP must be in [0, 1), was {MinP}.");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, $"RepetitionPenalty must be finite and > 0 (1 = off), was {RepetitionPenalty}.");
        ArgumentNullException.ThrowIfNull(StopTokenIds, nameof(StopTokenIds));
        foreach (int id in StopTokenIds)
            if ((uint)id >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(StopTokenIds), id, $"StopTokenIds holds {id}, outside the vocabulary [0, {vocab}).");
        if (VocabularyLimit is int limit && (limit < 1 || limit > vocab))
            throw new ArgumentOutOfRangeException(nameof(VocabularyLimit), limit, $"VocabularyLimit must be in [1, {vocab}] (the model's vocabulary), was {limit}.");
        if (EndOfSequenceId is int eos && (uint)eos >= (uint)vocab)
            throw new ArgumentOutOfRangeException(nameof(EndOfSequenceId), eos, $"EndOfSequenceId = {eos} is outside the vocabulary [0, {vocab}).");
    }
}
