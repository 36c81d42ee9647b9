namespace MambaGen.Tests.Reference;

/// <summary>
/// Logits of types declared from an HF config.json, loaded from HF's own save_pretrained output, against
/// transformers' float64 forward. Tolerance 1e-4 absolute (the project's bar): our forward runs in fp32, whose
/// rounding over 2–3 layers of these sizes stays near 1e-6 (HF's own fp32 run differs from fp64 by ≤ 1.3e-6,
/// tests/fixtures/summary.json), so 1e-4 leaves room for different but valid summation orders while catching
/// any real formula error (a wrong softplus, eps or residual changes logits by ≥ 1e-3).
/// </summary>
public class HfLogitsParityTests
{
    private const float Tolerance = 1e-4f;

    [Fact]
    public void TinyA_OddWidth_TiedHead() => AssertLogitsMatch("hf-tiny-a", HfTinyA.Load, batch: 2);

    [Fact]
    public void TinyB_ProjectionBiases_UntiedHead() => AssertLogitsMatch("hf-tiny-b", HfTinyB.Load, batch: 2);

    [Fact]
    public void TinyBf16_Bfloat16Weights() => AssertLogitsMatch("hf-tiny-bf16", HfTinyBf16.Load, batch: 2);

    private static void AssertLogitsMatch<TModel>(string fixtureName, Func<string, TModel> load, int batch) where TModel : IMambaModel
    {
        using var fixture = new Fixture(fixtureName);
        var model = load(fixture.Directory);
        float[] logits = model.Forward(fixture.Ints("input_ids"), batch);
        float maxError = Fixture.MaxAbsDifference(logits, fixture.Floats("logits"));
        Assert.True(maxError <= Tolerance, $"{fixtureName}: max |logits − HF fp64| = {maxError:E3} > {Tolerance:E0}");
    }
}
