using MambaGen.Generation;
using MambaGen.Tests.Model;
using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Generation;

/// <summary>
/// The batched decode path GenerationSession uses — each prompt prefilled alone, copied into its slot of a batched
/// state, then one-token steps for the whole batch — gives, at every step, the logits of the full forward pass over that
/// sequence's tokens so far.
/// </summary>
public class DecodeParityTests
{
    // Same fp32 kernels, different grouping of the sums (chunked scan vs whole sequence): rounding only. Relative to the
    // largest logit of the row, 1e-5 is about 100 float32 ulps.
    private const double RelativeTolerance = 1e-5;

    private static void BatchedDecodeMatchesForward(IMambaModel model, int[] promptLengths, int steps, int seed)
    {
        var decoder = (IDecodingModel)model;
        int vocab = decoder.VocabularySize, batch = promptLengths.Length;
        var sequences = promptLengths.Select((length, i) => RandomTokens(length + steps, vocab, seed * 10 + i)).ToArray();
        var state = decoder.CreateDecodeState(batch);
        var single = decoder.CreateDecodeState(1);
        var logits = new float[batch * vocab];
        for (int i = 0; i < batch; i++)
        {
            single.Reset();
            decoder.Advance(single, sequences[i].AsSpan(0, promptLengths[i]), logits.AsSpan(i * vocab, vocab));
            state.CopySequenceFrom(single, 0, i);
        }
        for (int step = 0; ; step++)
        {
            for (int i = 0; i < batch; i++)
            {
                int consumed = promptLengths[i] + step;
                var full = model.Forward(sequences[i][..consumed], 1);
                var expected = full.AsSpan((consumed - 1) * vocab, vocab);
                double scale = 0;
                foreach (float v in expected) scale = Math.Max(scale, Math.Abs(v));
                double error = MaxAbsDifference(logits.AsSpan(i * vocab, vocab), expected);
                Assert.True(error <= RelativeTolerance * scale,
                    $"{model.GetType().Name}, sequence {i} after {consumed} tokens: max error {error:E3} > {RelativeTolerance} × {scale:F3}");
            }
            if (step == steps) break;
            var next = Enumerable.Range(0, batch).Select(i => sequences[i][promptLengths[i] + step]).ToArray();
            decoder.Advance(state, next, logits);
        }
    }

    [Fact]
    public void OddWidthBatchOfThreeDifferentPromptLengths()
    {
        var model = OddWidthModel.Create(11);
        Perturb(model.Parameters, 11);
        BatchedDecodeMatchesForward(model, [7, 1, 4], steps: 6, seed: 1);
    }

    [Fact]
    public void BiasedUntiedBatchOfTwo()
    {
        var model = BiasedUntiedModel.Create(12);
        Perturb(model.Parameters, 12);
        BatchedDecodeMatchesForward(model, [2, 9], steps: 5, seed: 2);
    }

    [Fact]
    public void Ablations()
    {
        var delta = DeltaOnlyModel.Create(13); Perturb(delta.Parameters, 13);
        BatchedDecodeMatchesForward(delta, [5, 3], steps: 4, seed: 3);
        var bc = BcOnlyModel.Create(14); Perturb(bc.Parameters, 14);   // K = 8: history longer than the shorter prompt
        BatchedDecodeMatchesForward(bc, [3, 10, 1], steps: 9, seed: 4);
        var lti = LtiModel.Create(15); Perturb(lti.Parameters, 15);
        BatchedDecodeMatchesForward(lti, [4, 6], steps: 4, seed: 5);
    }

    [Fact]
    public void CopyingBetweenStatesOfDifferentModelsIsRejected()
    {
        var odd = (IDecodingModel)OddWidthModel.Create();
        var lti = (IDecodingModel)LtiModel.Create();
        var ex = Assert.Throws<ArgumentException>(() => odd.CreateDecodeState(2).CopySequenceFrom(lti.CreateDecodeState(1), 0, 0));
        Assert.Contains("not a state of this model", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => odd.CreateDecodeState(2).CopySequenceFrom(odd.CreateDecodeState(1), 0, 2));
    }
}
