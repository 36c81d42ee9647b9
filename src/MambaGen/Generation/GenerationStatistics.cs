namespace MambaGen.Generation;

/// <summary>
/// What a generation run has done so far. Prefill reads the prompts (and picks the first token from their last
/// logits); decode is every later step: one token per unfinished sequence through the recurrent state, then sampling.
/// </summary>
public sealed record GenerationStatistics(int PrefillTokens, TimeSpan PrefillTime, int DecodeTokens, TimeSpan DecodeTime, int GeneratedTokens)
{
    /// <summary>Prompt tokens read per second (0 before the prefill).</summary>
    public double PrefillTokensPerSecond => PrefillTime > TimeSpan.Zero ? PrefillTokens / PrefillTime.TotalSeconds : 0;

    /// <summary>Tokens fed through one-token steps per second (0 before the first step).</summary>
    public double DecodeTokensPerSecond => DecodeTime > TimeSpan.Zero ? DecodeTokens / DecodeTime.TotalSeconds : 0;
}

/// <summary>Why a sequence stopped.</summary>
public enum FinishReason
{
    /// <summary>It reached <see cref="GenerationOptions.MaxNewTokens"/>.</summary>
    Length,
    /// <summary>It generated the end-of-sequence id or one of <see cref="GenerationOptions.StopTokenIds"/>.</summary>
    StopToken,
    /// <summary>The caller ended it (<see cref="GenerationSession.EndSequence"/>), e.g. on a stop string.</summary>
    Ended,
}
