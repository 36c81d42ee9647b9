using MambaGen.Generation;

namespace MambaGen.Text.Tests;

/// <summary>A stand-in model that, whatever it is fed, next favours the following id of a fixed list (the last repeats).</summary>
internal sealed class ReplayModel(int vocab, int? eos, params int[] ids) : IDecodingModel
{
    private int _step;
    public int VocabularySize => vocab;
    public int? EndOfSequenceId => eos;
    public IDecodeState CreateDecodeState(int batch) => new NoState(batch);
    public void Advance(IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits)
    {
        lastLogits.Clear();
        lastLogits[ids[Math.Min(_step++, ids.Length - 1)]] = 1f;
    }

    private sealed class NoState(int batch) : IDecodeState
    {
        public int Batch => batch;
        public void Reset() { }
        public void CopySequenceFrom(IDecodeState source, int sourceSequence, int sequence) { }
    }
}
