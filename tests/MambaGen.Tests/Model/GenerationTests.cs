using MambaGen.Cpu;
using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Model;

public class GenerationTests
{
    // The recurrent path and the full forward pass run the same fp32 kernels over the same numbers in a different
    // grouping (one token per call vs whole sequences), so they agree to rounding: 1e-4 absolute on logits of size ≲ 3.
    private const double Tolerance = 1e-4;

    [Fact]
    public void GreedyTokensAreTheArgmaxOfForwardOnTheGrowingSequence()
    {
        var model = OddWidthModel.Create(1);
        Perturb(model.Parameters, 1, scale: 0.3); // sharper logits: the argmax is not decided by rounding
        var prompt = RandomTokens(5, OddWidthModel.Vocab, 1);
        var generated = model.Generate(prompt, maxNewTokens: 8);
        Assert.Equal(8, generated.Length);
        var sequence = prompt.ToList();
        foreach (var token in generated)
        {
            var logits = model.Forward(sequence.ToArray(), 1);
            var last = logits.AsSpan((sequence.Count - 1) * OddWidthModel.Vocab, OddWidthModel.Vocab);
            Assert.Equal(TokenSampler.ArgMax(last), token);
            sequence.Add(token);
        }
    }

    /// <summary>
    /// Feeds the tokens in chunks through a decode state (<paramref name="startDecoding"/> makes one for a batch and
    /// returns its Advance) and compares each chunk's last-token logits with the full forward pass at that position.
    /// </summary>
    private static void DecodeMatchesForward(IMambaModel model, int batch, int[] chunkLengths, Func<int, Action<int[], float[]>> startDecoding)
    {
        int total = chunkLengths.Sum(), vocab = model.Shape.Vocab;
        var tokens = RandomTokens(batch * total, vocab, total);
        var full = model.Forward(tokens, batch);
        var advance = startDecoding(batch);
        int position = 0;
        foreach (int chunk in chunkLengths)
        {
            var piece = new int[batch * chunk];
            for (int b = 0; b < batch; b++)
                Array.Copy(tokens, b * total + position, piece, b * chunk, chunk);
            var last = new float[batch * vocab];
            advance(piece, last);
            position += chunk;
            for (int b = 0; b < batch; b++)
            {
                var expected = full.AsSpan((b * total + position - 1) * vocab, vocab);
                double error = MaxAbsDifference(last.AsSpan(b * vocab, vocab), expected);
                Assert.True(error <= Tolerance, $"sequence {b} after {position} tokens: error {error:E3}");
            }
        }
    }

    [Fact]
    public void DecodeStepsMatchTheFullForwardPass()
    {
        var model = OddWidthModel.Create(2);
        Perturb(model.Parameters, 2);
        DecodeMatchesForward(model, 1, [4, 1, 1, 1, 1, 1], batch => { var state = model.CreateDecodeState(batch); return (t, l) => model.Advance(state, t, l); });
    }

    [Fact]
    public void ChunkedPrefillCarriesConvolutionAndScanStateAcrossCalls()
    {
        // K = 8: chunks shorter than K − 1 exercise the convolution history shifting through several calls.
        var model = BcOnlyModel.Create(3);
        Perturb(model.Parameters, 3);
        DecodeMatchesForward(model, 2, [2, 3, 1, 5, 1], batch => { var state = model.CreateDecodeState(batch); return (t, l) => model.Advance(state, t, l); });
    }

    [Fact]
    public void DecodingWorksForEveryVariant()
    {
        var delta = DeltaOnlyModel.Create(4); Perturb(delta.Parameters, 4);
        DecodeMatchesForward(delta, 2, [3, 1, 1, 2], batch => { var state = delta.CreateDecodeState(batch); return (t, l) => delta.Advance(state, t, l); });
        var lti = LtiModel.Create(5); Perturb(lti.Parameters, 5);
        DecodeMatchesForward(lti, 1, [1, 1, 4, 1], batch => { var state = lti.CreateDecodeState(batch); return (t, l) => lti.Advance(state, t, l); });
        var biased = BiasedUntiedModel.Create(6); Perturb(biased.Parameters, 6);
        DecodeMatchesForward(biased, 3, [5, 1, 1], batch => { var state = biased.CreateDecodeState(batch); return (t, l) => biased.Advance(state, t, l); });
    }

    [Fact]
    public void ResetReturnsToTheEmptyState()
    {
        var model = OddWidthModel.Create(7);
        Perturb(model.Parameters, 7);
        var state = model.CreateDecodeState();
        var first = new float[OddWidthModel.Vocab];
        var again = new float[OddWidthModel.Vocab];
        model.Advance(state, [1, 2, 3], first);
        model.Advance(state, [4], again);
        Assert.Equal(4, state.Position);
        state.Reset();
        Assert.Equal(0, state.Position);
        model.Advance(state, [1, 2, 3], again);
        Assert.Equal(first, again);
    }

    [Fact]
    public void SamplingIsReproducibleAndRespectsTopK()
    {
        var model = OddWidthModel.Create(8);
        Perturb(model.Parameters, 8);
        int[] prompt = [3, 1, 4];
        var a = model.Generate(prompt, 10, temperature: 1.5f, seed: 42);
        Assert.Equal(a, model.Generate(prompt, 10, temperature: 1.5f, seed: 42));
        // topK = 1 leaves only the argmax, whatever the temperature.
        Assert.Equal(model.Generate(prompt, 10), model.Generate(prompt, 10, temperature: 2f, topK: 1, seed: 3));
    }

    [Fact]
    public void GenerateValidatesItsArguments()
    {
        var model = OddWidthModel.Create();
        Assert.Throws<ArgumentNullException>(() => model.Generate(null!, 3));
        Assert.Throws<ArgumentException>(() => model.Generate([], 3));
        var outOfVocab = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1, 99], 3));
        Assert.Contains("prompt[1] = 99", outOfVocab.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1], -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1], 3, temperature: -1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1], 3, topP: 0f));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1], 3, topK: -2));
        Assert.Empty(model.Generate([1], 0));
        var state = model.CreateDecodeState(2);
        Assert.Throws<ArgumentException>(() => model.Advance(state, [1, 2, 3], new float[2 * OddWidthModel.Vocab]));
        Assert.Throws<ArgumentException>(() => model.Advance(state, [1, 2], new float[OddWidthModel.Vocab]));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateDecodeState(0));
    }
}
