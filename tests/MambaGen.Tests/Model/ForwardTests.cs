using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Model;

public class ForwardTests
{
    // Tolerance: the generated model runs in fp32 (matrix products over at most 80 terms, a scan over ≤ 9 steps with
    // |h| = O(1), logits of magnitude ≲ 3), so its rounding error is a few 1e-6; 1e-4 absolute leaves room for that
    // while any wrong formula (a missing bias, a transposed weight, an off-by-one in the conv window) moves logits
    // by ≳ 1e-2 with the perturbed parameters used here.
    private const double Tolerance = 1e-4;

    private static void MatchesReference(IMambaModel model, int batch, int length, int seed)
    {
        Perturb(model.Parameters, seed);
        var tokens = RandomTokens(batch * length, model.Shape.Vocab, seed);
        var expected = ReferenceMamba.Forward(model.Parameters, tokens, batch);
        var actual = model.Forward(tokens, batch);
        double error = MaxAbsDifference(actual, expected);
        Assert.True(error <= Tolerance, $"max |logit − reference| = {error:E3} > {Tolerance:E0}");
        // The comparison is meaningful only if the logits are not all tiny.
        Assert.True(expected.Max(Math.Abs) > 0.05, "logits too small for the tolerance to mean anything");
    }

    [Fact] public void OddWidthMatchesReference() => MatchesReference(OddWidthModel.Create(1), batch: 3, length: 7, seed: 1);
    [Fact] public void BiasedUntiedMatchesReference() => MatchesReference(BiasedUntiedModel.Create(2), batch: 2, length: 9, seed: 2);
    [Fact] public void DeltaOnlyMatchesReference() => MatchesReference(DeltaOnlyModel.Create(3), batch: 2, length: 6, seed: 3);
    [Fact] public void BcOnlyMatchesReference() => MatchesReference(BcOnlyModel.Create(4), batch: 2, length: 9, seed: 4);
    [Fact] public void LtiMatchesReference() => MatchesReference(LtiModel.Create(5), batch: 2, length: 8, seed: 5);
    [Fact] public void DeltaAndBMatchesReference() => MatchesReference(DeltaAndBModel.Create(6), batch: 1, length: 5, seed: 6);
    [Fact] public void COnlyMatchesReference() => MatchesReference(COnlyModel.Create(7), batch: 2, length: 5, seed: 7);
    [Fact] public void GlobalNamespaceModelMatchesReference() => MatchesReference(GlobalNamespaceModel.Create(12), batch: 2, length: 3, seed: 12);
    [Fact] public void NestedInternalModelMatchesReference() => MatchesReference(Nested.InnerModel.Create(8), batch: 1, length: 4, seed: 8);

    [Fact]
    public void UnperturbedInitialisationMatchesReference()
    {
        // mamba_ssm's own initial values (tiny embedding, unit norms, D = 1) as a second, realistic operating point.
        var model = BiasedUntiedModel.Create(9);
        var tokens = RandomTokens(10, BiasedUntiedModel.Vocab, 9);
        double error = MaxAbsDifference(model.Forward(tokens, 1), ReferenceMamba.Forward(model.Parameters, tokens, 1));
        Assert.True(error <= Tolerance, $"max error {error:E3}");
    }

    [Fact]
    public void BatchRowsAreIndependentSequences()
    {
        var model = OddWidthModel.Create(10);
        Perturb(model.Parameters, 10);
        var tokens = RandomTokens(3 * 5, OddWidthModel.Vocab, 10);
        var batched = model.Forward(tokens, 3);
        for (int b = 0; b < 3; b++)
        {
            var single = model.Forward(tokens.AsSpan(b * 5, 5).ToArray(), 1);
            // Same kernels on the same rows: bit-identical apart from the matrix product's blocking, so 1e-6.
            Assert.True(MaxAbsDifference(batched.AsSpan(b * 5 * OddWidthModel.Vocab, 5 * OddWidthModel.Vocab), single) <= 1e-6);
        }
    }

    [Fact]
    public void SpanOverloadWritesTheSameLogits()
    {
        var model = DeltaOnlyModel.Create(11);
        var tokens = RandomTokens(8, DeltaOnlyModel.Vocab, 11);
        var logits = new float[8 * DeltaOnlyModel.Vocab];
        model.Forward(tokens, 2, logits);
        Assert.Equal(model.Forward(tokens, 2), logits);
    }

    /// <summary>
    /// Forward with <see cref="LogitsFor.LastPosition"/> against the last row of each sequence of the full forward. Both run
    /// the same layers on the same rows and the same final norm; the head's product differs only in how many rows it
    /// has. In these small models both products take the matrix product's row-by-row path, which computes a row the
    /// same way whatever the row count, so the logits must be bit-identical.
    /// </summary>
    private static void LastPositionMatchesFullForward(IMambaModel model, Func<int[], int, LogitsFor, float[]> forward, int batch, int length, int seed)
    {
        Perturb(model.Parameters, seed);
        int vocab = model.Shape.Vocab;
        var tokens = RandomTokens(batch * length, vocab, seed);
        var all = forward(tokens, batch, LogitsFor.AllPositions);
        var last = forward(tokens, batch, LogitsFor.LastPosition);
        Assert.Equal(batch * length * vocab, all.Length);
        Assert.Equal(batch * vocab, last.Length);
        for (int b = 0; b < batch; b++)
            Assert.Equal(all.AsSpan(((b + 1) * length - 1) * vocab, vocab).ToArray(), last.AsSpan(b * vocab, vocab).ToArray());
    }

    [Fact]
    public void LastPositionLogitsOfEveryVariant()
    {
        var odd = OddWidthModel.Create(21);
        LastPositionMatchesFullForward(odd, odd.Forward, batch: 3, length: 7, seed: 21);
        var biased = BiasedUntiedModel.Create(22);
        LastPositionMatchesFullForward(biased, biased.Forward, batch: 2, length: 9, seed: 22);
        var delta = DeltaOnlyModel.Create(23);
        LastPositionMatchesFullForward(delta, delta.Forward, batch: 4, length: 5, seed: 23);
        var bc = BcOnlyModel.Create(24);
        LastPositionMatchesFullForward(bc, bc.Forward, batch: 2, length: 6, seed: 24);
        var lti = LtiModel.Create(25);
        LastPositionMatchesFullForward(lti, lti.Forward, batch: 3, length: 4, seed: 25);
        var cOnly = COnlyModel.Create(26);
        LastPositionMatchesFullForward(cOnly, cOnly.Forward, batch: 2, length: 1, seed: 26);
    }

    [Fact]
    public void LastPositionLogitsWhenTheFullHeadIsBlocked()
    {
        // 3 × 20 rows make the full head's product (60 × 29 × 40 multiply-adds) big enough for the packed, blocked
        // path, while the last positions' (3 rows) stay row by row: the two sum each dot product in a different order,
        // so the logits agree to float rounding of a 40-term dot product (|terms| ≲ 1), not bit for bit.
        var model = BiasedUntiedModel.Create(28);
        Perturb(model.Parameters, 28);
        const int batch = 3, length = 20, vocab = BiasedUntiedModel.Vocab;
        var tokens = RandomTokens(batch * length, vocab, 28);
        var all = model.Forward(tokens, batch);
        var last = model.Forward(tokens, batch, LogitsFor.LastPosition);
        for (int b = 0; b < batch; b++)
        {
            double error = MaxAbsDifference(last.AsSpan(b * vocab, vocab), all.AsSpan(((b + 1) * length - 1) * vocab, vocab));
            Assert.True(error <= 1e-5, $"sequence {b}: max |last − full| = {error:E3}");
        }
    }

    [Fact]
    public void LastPositionSpanOverloadChecksItsBuffer()
    {
        var model = DeltaOnlyModel.Create(27);
        var tokens = RandomTokens(6, DeltaOnlyModel.Vocab, 27);
        var logits = new float[2 * DeltaOnlyModel.Vocab];
        model.Forward(tokens, 2, logits, LogitsFor.LastPosition);
        Assert.Equal(model.Forward(tokens, 2, LogitsFor.LastPosition), logits);
        // A buffer sized for every position is the wrong size for the last positions, and the message says so.
        var wrong = Assert.Throws<ArgumentException>(() => model.Forward(tokens, 2, new float[6 * DeltaOnlyModel.Vocab], LogitsFor.LastPosition));
        Assert.Contains("logits", wrong.Message);
        var undefined = Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(tokens, 2, (LogitsFor)7));
        Assert.Equal("logitsFor", undefined.ParamName);
    }

    [Fact]
    public void InvalidInputIsRejectedWithClearMessages()
    {
        var model = OddWidthModel.Create();
        var notDivisible = Assert.Throws<ArgumentException>(() => model.Forward(new int[7], 2));
        Assert.Contains("batch 2", notDivisible.Message);
        var outOfVocab = Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2, OddWidthModel.Vocab], 1));
        Assert.Contains("tokens[2] = 40", outOfVocab.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, -1], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2], 0));
        Assert.Throws<ArgumentException>(() => model.Forward([], 1));
        Assert.Throws<ArgumentNullException>(() => model.Forward(null!, 1));
        var wrongOutput = Assert.Throws<ArgumentException>(() => model.Forward([1, 2], 1, new float[3]));
        Assert.Contains("logits", wrongOutput.Message);
    }

    [Fact]
    public void ConstantsDescribeTheDeclaration()
    {
        Assert.Equal(40, OddWidthModel.Vocab); // 37 padded to a multiple of 8
        Assert.Equal(26, OddWidthModel.DInner);
        Assert.Equal(3 + 2 * 5, OddWidthModel.XProjRows);
        Assert.Equal(0, LtiModel.XProjRows);
        Assert.Equal(1, DeltaOnlyModel.DtRank); // auto: ceil(12 / 16)
        Assert.Equal(1, DeltaOnlyModel.XProjRows); // Δ only: just dt_low
        Assert.False(DeltaOnlyModel.SelectiveB);
        Assert.Equal(AInit.Random, BcOnlyModel.AInit);
        Assert.Equal(1e-5f, OddWidthModel.NormEpsilon);
        Assert.Same(OddWidthModel.ModelShape, OddWidthModel.Create().Shape);
        Assert.Equal(OddWidthModel.Layout.TotalLength, OddWidthModel.Create().Parameters.Values.Length);
        Assert.False(BiasedUntiedModel.Layout.TryGet("backbone.layers.0.mixer.conv1d.bias", out _));
        Assert.False(LtiModel.Layout.TryGet("backbone.layers.0.mixer.x_proj.weight", out _));
        Assert.True(LtiModel.Layout.TryGet("backbone.layers.0.mixer.B", out _));
    }

    [Fact]
    public void FromParametersSharesAndChecksTheLayout()
    {
        var source = OddWidthModel.Create(3);
        var wrapped = OddWidthModel.FromParameters(source.Parameters);
        Assert.Same(source.Parameters, wrapped.Parameters);
        var mismatch = Assert.Throws<ArgumentException>(() => OddWidthModel.FromParameters(LtiModel.Create().Parameters));
        Assert.Contains("DModel", mismatch.Message);
    }
}
