namespace MambaGen.Tests.Reference;

/// <summary>
/// The generated backward against PyTorch autograd: tests/fixtures' reference.safetensors holds the float64 gradient
/// of HF's mean cross-entropy (labels −1 ignored) for every parameter, keyed like model.safetensors.
/// Per tensor we require max|g − g_ref| ≤ 1e-4 · max|g_ref| (the project's 1e-4 relative bound, taken per tensor
/// against its largest entry so that near-zero entries do not turn fp32 rounding into huge ratios). HF's own fp32
/// run stays within 1.1e-6 of the fp64 gradients on these fixtures (tests/fixtures/summary.json); a wrong term in
/// any op (a missing softplus derivative, an unscaled tied-head share) is off by far more than 1e-4.
/// </summary>
public class HfGradientParityTests
{
    private const float RelativeTolerance = 1e-4f;

    [Fact]
    public void TinyA_TiedHead() => AssertGradientsMatch("hf-tiny-a", HfTinyA.Load);

    [Fact]
    public void TinyB_BiasesAndUntiedHead() => AssertGradientsMatch("hf-tiny-b", HfTinyB.Load);

    [Fact]
    public void TinyBf16() => AssertGradientsMatch("hf-tiny-bf16", HfTinyBf16.Load);

    private static void AssertGradientsMatch<TModel>(string fixtureName, Func<string, TModel> load) where TModel : IMambaModel
    {
        using var fixture = new Fixture(fixtureName);
        var model = load(fixture.Directory);
        int batch = fixture.Shape("input_ids")[0];
        var gradients = new float[model.Parameters.Values.Length];

        float loss = model.ForwardBackward(fixture.Ints("input_ids"), fixture.Ints("labels"), batch, gradients);

        float expectedLoss = fixture.Floats("loss")[0];
        Assert.True(Math.Abs(loss - expectedLoss) <= 1e-5f * Math.Max(1f, Math.Abs(expectedLoss)),
            $"{fixtureName}: loss {loss} vs HF {expectedLoss}");
        var failures = new List<string>();
        foreach (var tensor in model.Parameters.Layout.Tensors)
        {
            var expected = fixture.Floats("grad." + tensor.Key);
            var actual = ParameterLayout.Part(gradients, tensor.Offset, tensor.Length);
            float scale = 0;
            foreach (float g in expected) scale = Math.Max(scale, Math.Abs(g));
            float error = Fixture.MaxAbsDifference(actual, expected);
            if (error > RelativeTolerance * scale)
                failures.Add($"{tensor.Key}: max error {error:E2} vs max |grad| {scale:E2}");
        }
        Assert.True(failures.Count == 0, $"{fixtureName}: gradients differ from PyTorch autograd:\n" + string.Join("\n", failures));
    }
}
