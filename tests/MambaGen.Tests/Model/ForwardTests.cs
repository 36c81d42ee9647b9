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
