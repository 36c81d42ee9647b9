namespace MambaGen.Generation;

/// <summary>
/// A model that continues token sequences from a recurrent state: what the generation loop needs. Every generated
/// model implements it (on the CPU so far).
/// </summary>
public interface IDecodingModel
{
    /// <summary>Width of the logits (the padded vocabulary).</summary>
    int VocabularySize { get; }

    /// <summary>The end-of-sequence id of the loaded config.json, else of the declaration; null when neither names one.</summary>
    int? EndOfSequenceId { get; }

    /// <summary>A zero state for <paramref name="batch"/> sequences.</summary>
    IDecodeState CreateDecodeState(int batch);

    /// <summary>
    /// Feeds <paramref name="tokens"/> (state.Batch sequences of equal length, row-major) through the model from
    /// <paramref name="state"/>, updates it, and writes the logits after each sequence's last token into
    /// <paramref name="lastLogits"/> (state.Batch × <see cref="VocabularySize"/>).
    /// </summary>
    void Advance(IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits);
}

/// <summary>The recurrent state of a batch of sequences (per layer and sequence: the convolution history and the SSM state).</summary>
public interface IDecodeState
{
    /// <summary>Sequences decoded side by side.</summary>
    int Batch { get; }

    /// <summary>Back to the zero state.</summary>
    void Reset();

    /// <summary>
    /// Makes sequence <paramref name="sequence"/> of this state a copy of sequence <paramref name="sourceSequence"/> of
    /// <paramref name="source"/>, a state of the same model. This is how prompts of different lengths share a batch:
    /// each is prefilled on its own, then copied into its slot.
    /// </summary>
    void CopySequenceFrom(IDecodeState source, int sourceSequence, int sequence);
}

/// <summary>
/// A decode state whose backend can take a greedy step where the logits are: only the picked ids come back (the GPU
/// backend's states; <see cref="GenerationSession"/> uses it for greedy decoding without a repetition penalty).
/// </summary>
public interface IGreedyDecodeState : IDecodeState
{
    /// <summary>
    /// Feeds <paramref name="tokens"/> (one id per sequence) and writes into <paramref name="next"/> each sequence's most
    /// likely next id among those below <paramref name="vocabularyLimit"/>, the first on ties: the id the host's argmax
    /// would pick from the same logits.
    /// </summary>
    void StepGreedy(ReadOnlySpan<int> tokens, Span<int> next, int vocabularyLimit);
}
