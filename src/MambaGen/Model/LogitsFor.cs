namespace MambaGen;

/// <summary>Which positions a forward pass computes logits for.</summary>
public enum LogitsFor
{
    /// <summary>Every position: batch × length × Vocab values (what training and scoring need).</summary>
    AllPositions,

    /// <summary>
    /// The last position of each sequence only: batch × Vocab values, the next-token distribution after a prompt. The
    /// output head (a Vocab × D product per position, most of a small model's forward) then runs on batch rows instead
    /// of batch × length.
    /// </summary>
    LastPosition,
}
