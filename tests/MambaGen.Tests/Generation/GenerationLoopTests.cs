using MambaGen.Generation;

namespace MambaGen.Tests.Generation;

/// <summary>The generation loop (GenerationSession, TokenGenerator) against a scripted model whose next token is known.</summary>
public class GenerationLoopTests
{
    private static ScriptedModel Model(int? eos = null) => new(10, eos, new Dictionary<int, int[]>
    {
        [1] = [5, 6, 2, 7, 8],
        [3] = [4, 4, 9],
        [4] = [2, 2, 2],
    });

    [Fact]
    public void StopTokenIdsEndTheSequenceAndAreIncluded()
    {
        var model = Model();
        Assert.Equal([5, 6, 2], TokenGenerator.Generate(model, [1, 1], new GenerationOptions { StopTokenIds = [2] }));
        // Prefill of the prompt, then one step per new token except the last: the stop token is never fed back.
        Assert.Equal([[1, 1], [5], [6]], model.Calls);
    }

    [Fact]
    public void MaxNewTokensBoundsTheOutput()
    {
        Assert.Equal([5, 6, 2, 7], TokenGenerator.Generate(Model(), [1], new GenerationOptions { MaxNewTokens = 4 }));
        Assert.Empty(TokenGenerator.Generate(Model(), [1], new GenerationOptions { MaxNewTokens = 0 }));
    }

    [Fact]
    public void EndOfSequenceComesFromTheModelUnlessOverriddenOrSwitchedOff()
    {
        Assert.Equal([5, 6, 2, 7], TokenGenerator.Generate(Model(eos: 7), [1]));
        Assert.Equal([5, 6], TokenGenerator.Generate(Model(eos: 7), [1], new GenerationOptions { EndOfSequenceId = 6 }));
        Assert.Equal([5, 6, 2, 7, 8, 8], TokenGenerator.Generate(Model(eos: 7), [1], new GenerationOptions { StopAtEndOfSequence = false, MaxNewTokens = 6 }));
    }

    [Fact]
    public void BatchOfDifferentPromptLengthsStopsEachSequenceOnItsOwn()
    {
        var model = Model();
        var session = new GenerationSession(model, [[1, 0, 0], [3], [4, 0]], new GenerationOptions { StopTokenIds = [9, 2], MaxNewTokens = 4 });
        var outputs = session.Run();
        Assert.Equal([5, 6, 2], outputs[0]);
        Assert.Equal([4, 4, 9], outputs[1]);
        Assert.Equal([2], outputs[2]);
        Assert.Equal(FinishReason.StopToken, session.FinishReasonOf(0));
        // Each prompt is prefilled alone; then the running sequences step together: the third stopped at its first token,
        // so it is never fed again.
        Assert.Equal([[1, 0, 0], [3], [4, 0], [5, 4], [6, 4]], model.Calls);
        var stats = session.Statistics;
        Assert.Equal(6, stats.PrefillTokens);
        Assert.Equal(4, stats.DecodeTokens); // two steps with two sequences still running
        Assert.Equal(7, stats.GeneratedTokens);
    }

    [Fact]
    public void EndSequenceStopsOneSequence()
    {
        var session = new GenerationSession(Model(), [[1], [3]], new GenerationOptions { MaxNewTokens = 3 });
        var next = new int[2];
        Assert.True(session.Step(next));
        Assert.Equal([5, 4], next);
        session.EndSequence(0);
        Assert.True(session.Step(next));
        Assert.Equal([-1, 4], next);
        Assert.True(session.Step(next));
        Assert.False(session.Step(next));
        Assert.Equal(FinishReason.Ended, session.FinishReasonOf(0));
        Assert.Equal(FinishReason.Length, session.FinishReasonOf(1));
    }

    [Fact]
    public void LongPromptsArePrefilledInChunks()
    {
        var model = Model();
        var prompt = new int[GenerationSession.PrefillChunk * 2 + 5];
        prompt[0] = 1;
        TokenGenerator.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 1 });
        Assert.Equal([GenerationSession.PrefillChunk, GenerationSession.PrefillChunk, 5], model.Calls.Select(c => c.Length));
    }

    [Fact]
    public void RepetitionPenaltyFollowsHuggingFacesRule()
    {
        // Hand-computed: logits (2, 1.5, -1, -0.5); ids 0 and 3 seen. Penalty 1.5: 2/1.5 = 1.333 < 1.5, so greedy picks 1;
        // -0.5·1.5 = -0.75 < -1? No: -0.75 > -1, so id 3 still beats id 2. Penalty 2.5: -0.5·2.5 = -1.25 < -1.
        float[] logits = [2f, 1.5f, -1f, -0.5f];
        MambaGen.Cpu.TokenSampler.ApplyRepetitionPenalty(logits, [0, 3], 1.5f);
        Assert.Equal([2f / 1.5f, 1.5f, -1f, -0.75f], logits);
        float[] again = [2f, 1.5f, -1f, -0.5f];
        MambaGen.Cpu.TokenSampler.ApplyRepetitionPenalty(again, [0, 3], 2.5f);
        Assert.Equal(-1.25f, again[3]);
    }

    [Fact]
    public async Task StreamingYieldsTokensInOrderAndHonoursCancellation()
    {
        var tokens = new List<int>();
        await foreach (int token in TokenGenerator.GenerateStreamingAsync(Model(), [1], new GenerationOptions { MaxNewTokens = 4 }))
            tokens.Add(token);
        Assert.Equal([5, 6, 2, 7], tokens);

        using var cancel = new CancellationTokenSource();
        var seen = new List<int>();
        var model = Model();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (int token in TokenGenerator.GenerateStreamingAsync(model, [1], new GenerationOptions { MaxNewTokens = 100 }, cancel.Token))
            {
                seen.Add(token);
                if (seen.Count == 2) cancel.Cancel();
            }
        });
        Assert.Equal([5, 6], seen);
        Assert.Equal(2, model.Calls.Count); // prefill and one step; nothing ran after the cancellation
    }

    [Fact]
    public void BadInputIsRejectedBeforeAnyWork()
    {
        var model = Model();
        Assert.Throws<ArgumentException>(() => TokenGenerator.Generate(model, []));
        Assert.Throws<ArgumentNullException>(() => TokenGenerator.Generate(model, null!));
        Assert.Contains("prompt[1] = 10", Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1, 10])).Message);
        Assert.Contains("prompts[1]", Assert.Throws<ArgumentException>(() => TokenGenerator.GenerateBatch(model, [[1], []])).Message);
        var huge = Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { MaxNewTokens = int.MaxValue }));
        Assert.Contains("MaxNewTokens", huge.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { Temperature = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { MinP = 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { RepetitionPenalty = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { StopTokenIds = [10] }));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenGenerator.Generate(model, [1], new GenerationOptions { EndOfSequenceId = -1 }));
        // Streaming checks on the call, not at the first MoveNextAsync.
        Assert.Throws<ArgumentException>(() => TokenGenerator.GenerateStreamingAsync(model, []));
        Assert.Empty(model.Calls);
    }
}
