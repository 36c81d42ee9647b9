using MambaGen.Generation;

namespace MambaGen.Tests.Generation;

/// <summary>
/// A stand-in model for testing the generation loop. A sequence whose prompt starts with id p follows
/// <c>scripts[p]</c>: after its n-th Advance its logits are 1 at scripts[p][n] (the last entry repeats) and 0
/// elsewhere. Every call is recorded, so tests can check what was fed.
/// </summary>
internal sealed class ScriptedModel(int vocab, int? eos, IReadOnlyDictionary<int, int[]> scripts) : IDecodingModel
{
    public List<int[]> Calls { get; } = [];

    public int VocabularySize => vocab;
    public int? EndOfSequenceId => eos;

    public IDecodeState CreateDecodeState(int batch) => new State(batch);

    public void Advance(IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits)
    {
        var s = (State)state;
        Calls.Add(tokens.ToArray());
        lastLogits.Clear();
        int length = tokens.Length / s.Batch;
        for (int i = 0; i < s.Batch; i++)
        {
            s.Key[i] ??= tokens[i * length];
            var script = scripts[s.Key[i]!.Value];
            lastLogits[i * vocab + script[Math.Min(s.Steps[i]++, script.Length - 1)]] = 1f;
        }
    }

    private sealed class State(int batch) : IDecodeState
    {
        public int Batch { get; } = batch;
        public int[] Steps { get; } = new int[batch];
        public int?[] Key { get; } = new int?[batch];
        public void Reset() { Array.Clear(Steps); Array.Clear(Key); }
        public void CopySequenceFrom(IDecodeState source, int sourceSequence, int sequence)
        {
            Steps[sequence] = ((State)source).Steps[sourceSequence];
            Key[sequence] = ((State)source).Key[sourceSequence];
        }
    }
}
