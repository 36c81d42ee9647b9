namespace MambaGen.Cpu;

/// <summary>Feeds tokens through a model's recurrent state and writes the logits after each sequence's last token.</summary>
public delegate void AdvanceTokens(ReadOnlySpan<int> tokens, Span<float> lastLogits);

/// <summary>The generation loop shared by every generated model: prefill, then one recurrent step per new token.</summary>
public static class TokenGeneration
{
    /// <summary>
    /// Reads <paramref name="prompt"/> in one <paramref name="advance"/> call, then picks up to
    /// <paramref name="maxNewTokens"/> tokens with <paramref name="sampler"/>, feeding each back. Returns the new tokens
    /// only; stops after emitting <paramref name="stopToken"/> (included) when it is not null.
    /// </summary>
    public static int[] Generate(ReadOnlySpan<int> prompt, int maxNewTokens, int vocab, TokenSampler sampler, int? stopToken, AdvanceTokens advance)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(advance);
        if (prompt.IsEmpty) throw new ArgumentException("The prompt needs at least one token.", nameof(prompt));
        ModelInput.RequireTokenIds(prompt, vocab, nameof(prompt));
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "maxNewTokens must be ≥ 0.");
        if (maxNewTokens == 0) return [];

        var logits = new float[vocab];
        var generated = new int[maxNewTokens];
        advance(prompt, logits);
        int count = 0;
        while (true)
        {
            int next = sampler.Next(logits);
            generated[count++] = next;
            if (count == maxNewTokens || next == stopToken) break;
            advance(new ReadOnlySpan<int>(in next), logits);
        }
        return count == maxNewTokens ? generated : generated.AsSpan(0, count).ToArray();
    }
}
