namespace MambaGen.Cpu;

/// <summary>Checks of caller input shared by every generated model, with messages that say what was expected.</summary>
public static class ModelInput
{
    /// <summary>
    /// Checks that <paramref name="tokens"/> holds <paramref name="batch"/> equally long, non-empty sequences of ids in
    /// [0, <paramref name="vocab"/>) and returns the sequence length.
    /// </summary>
    public static int RequireTokenBatch(ReadOnlySpan<int> tokens, int batch, int vocab, string parameterName = "tokens")
    {
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be at least 1, was {batch}.");
        if (tokens.Length == 0) throw new ArgumentException("At least one token is needed.", parameterName);
        if (tokens.Length % batch != 0)
            throw new ArgumentException($"{parameterName} has {tokens.Length} ids, which is not a whole number of sequences for batch {batch}.", parameterName);
        RequireTokenIds(tokens, vocab, parameterName);
        return tokens.Length / batch;
    }

    /// <summary>Checks every id lies in [0, <paramref name="vocab"/>).</summary>
    public static void RequireTokenIds(ReadOnlySpan<int> tokens, int vocab, string parameterName = "tokens")
    {
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(parameterName, tokens[i], $"{parameterName}[{i}] = {tokens[i]} is outside the vocabulary [0, {vocab}).");
    }

    /// <summary>Checks an output buffer has exactly the expected number of values.</summary>
    public static void RequireLength(int actual, int expected, string parameterName)
    {
        if (actual != expected)
            throw new ArgumentException($"{parameterName} has {actual} values, expected {expected}.", parameterName);
    }

    /// <summary>Checks there is one target per token, each an id in [0, <paramref name="vocab"/>) or −1 (not scored).</summary>
    public static void RequireTargets(ReadOnlySpan<int> targets, int tokenCount, int vocab, string parameterName = "targets")
    {
        if (targets.Length != tokenCount)
            throw new ArgumentException($"{parameterName} has {targets.Length} ids, expected one per token ({tokenCount}).", parameterName);
        for (int i = 0; i < targets.Length; i++)
            if (targets[i] != CrossEntropy.Unscored && (uint)targets[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(parameterName, targets[i],
                    $"{parameterName}[{i}] = {targets[i]} is neither an id in [0, {vocab}) nor {CrossEntropy.Unscored} (not scored).");
    }
}
