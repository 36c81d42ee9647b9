using MambaGen.Cpu;
using MambaGen.Generation;

namespace MambaGen.Tests.Generation;

/// <summary>
/// GenerationSession with a state that picks greedy tokens itself (<see cref="IGreedyDecodeState"/>, as the GPU's
/// does): it is used for greedy decoding without a repetition penalty and gives the tokens of the host's pick; sampling
/// and the penalty keep copying logits. The stand-in's pick is the host's argmax of the scripted logits, so the tests
/// check which path the session takes and what it passes, not the GPU kernel (the GPU tests do that).
/// </summary>
public class DevicePickTests
{
    private static readonly Dictionary<int, int[]> Scripts = new()
    {
        [1] = [5, 6, 2, 7, 8],
        [3] = [4, 4, 9],
        [4] = [2, 2, 2],
    };

    private static readonly int[][] Prompts = [[1, 0, 0], [3], [4, 0]];

    [Fact]
    public void GreedyStepsPickOnTheStateAndGiveTheHostsTokens()
    {
        var options = new GenerationOptions { StopTokenIds = [9, 2], MaxNewTokens = 4 };
        var expected = TokenGenerator.GenerateBatch(new ScriptedModel(10, null, Scripts), Prompts, options);
        var model = new PickingModel(new ScriptedModel(10, null, Scripts));
        Assert.Equal(expected, TokenGenerator.GenerateBatch(model, Prompts, options));
        // The three prompts' prefills copy logits (the first token is picked from them); both later steps pick on the state.
        Assert.Equal(3, model.LogitCalls);
        Assert.Equal([10, 10], model.Limits);
    }

    [Fact]
    public void TheVocabularyLimitReachesThePick()
    {
        var options = new GenerationOptions { MaxNewTokens = 4, VocabularyLimit = 6, StopAtEndOfSequence = false };
        var expected = TokenGenerator.Generate(new ScriptedModel(10, null, Scripts), [1], options);
        var model = new PickingModel(new ScriptedModel(10, null, Scripts));
        Assert.Equal(expected, TokenGenerator.Generate(model, [1], options));
        Assert.Equal([6, 6, 6], model.Limits);
    }

    [Theory]
    [InlineData(0.7f, 1f)]
    [InlineData(0f, 1.3f)]
    public void SamplingAndTheRepetitionPenaltyKeepCopyingLogits(float temperature, float penalty)
    {
        var options = new GenerationOptions { MaxNewTokens = 4, Temperature = temperature, RepetitionPenalty = penalty, Seed = 5 };
        var expected = TokenGenerator.GenerateBatch(new ScriptedModel(10, null, Scripts), Prompts, options);
        var model = new PickingModel(new ScriptedModel(10, null, Scripts));
        Assert.Equal(expected, TokenGenerator.GenerateBatch(model, Prompts, options));
        Assert.Empty(model.Limits);
    }

    /// <summary>The scripted model behind states that pick greedily themselves; counts each kind of call.</summary>
    private sealed class PickingModel(ScriptedModel inner) : IDecodingModel
    {
        public int LogitCalls { get; private set; }
        public List<int> Limits { get; } = [];
        public ScriptedModel Scripted => inner;

        public int VocabularySize => inner.VocabularySize;
        public int? EndOfSequenceId => inner.EndOfSequenceId;

        public IDecodeState CreateDecodeState(int batch) => new State(this, inner.CreateDecodeState(batch));

        public void Advance(IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits)
        {
            LogitCalls++;
            inner.Advance(((State)state).Inner, tokens, lastLogits);
        }

        private sealed class State(PickingModel owner, IDecodeState state) : IGreedyDecodeState
        {
            public IDecodeState Inner { get; } = state;
            public int Batch => Inner.Batch;
            public void Reset() => Inner.Reset();
            public void CopySequenceFrom(IDecodeState source, int sourceSequence, int sequence) =>
                Inner.CopySequenceFrom(((State)source).Inner, sourceSequence, sequence);

            public void StepGreedy(ReadOnlySpan<int> tokens, Span<int> next, int vocabularyLimit)
            {
                owner.Limits.Add(vocabularyLimit);
                int vocab = owner.VocabularySize;
                var logits = new float[Batch * vocab];
                owner.Scripted.Advance(Inner, tokens, logits);
                for (int b = 0; b < Batch; b++) next[b] = TokenSampler.ArgMax(logits.AsSpan(b * vocab, vocabularyLimit));
            }
        }
    }
}
