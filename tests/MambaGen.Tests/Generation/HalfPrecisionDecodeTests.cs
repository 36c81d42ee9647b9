using MambaGen.Cpu;
using MambaGen.Generation;
using MambaGen.Tests.Model;
using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Generation;

/// <summary>
/// Decode steps with 16-bit weights (<c>UseHalfPrecisionWeights</c>). Two checks per variant and format:
/// <list type="number">
/// <item>Independent: a model whose fp32 parameters were rounded to the format beforehand, decoding in fp32, gives the
/// logits of the same rounded model decoding from its 16-bit copy, to fp32 summation-order tolerance (the copy of an
/// already rounded value is exact, so only the order of additions differs).</item>
/// <item>Against the unrounded fp32 path: the logits move by an amount on the order of the format's relative rounding
/// u (2⁻⁸ for bfloat16, 2⁻¹¹ for IEEE half), and do move (the 16-bit weights are really in use).</item>
/// </list>
/// Batches of sequences with different prompt lengths are prefilled alone (fp32, unchanged) and then stepped together,
/// as <see cref="GenerationSession"/> does, so the multi-row product is covered. The vector path is the machine's; CI runs
/// these tests again with AVX-512, AVX2 and all intrinsics switched off.
/// </summary>
public class HalfPrecisionDecodeTests
{
    // Same weights, same fp32 kernels except the order of additions: as DecodeParityTests, 1e-5 of the row's largest logit.
    private const double SummationTolerance = 1e-5;

    // Each weight moves by at most u relative. A product's output moves by at most u·Σ|x·w|, which for these random
    // models is a few times |output|; through two or three layers and the head the logits moved by at most 1.5·u of the
    // row's largest logit in every case measured (0.76–1.48 u over both formats and all five variants). 8·u leaves a
    // factor of five.
    private const double RoundingToleranceInU = 8;

    private static double UnitRoundoff(HalfPrecision format) => format == HalfPrecision.BFloat16 ? Math.ScaleB(1, -8) : Math.ScaleB(1, -11);

    /// <summary>The logits after the prefill and after each of <paramref name="steps"/> batched one-token steps.</summary>
    private static List<float[]> DecodeLogits(IMambaModel model, int[][] sequences, int[] promptLengths, int steps)
    {
        var decoder = (IDecodingModel)model;
        int vocab = decoder.VocabularySize, batch = promptLengths.Length;
        var state = decoder.CreateDecodeState(batch);
        var single = decoder.CreateDecodeState(1);
        var logits = new float[batch * vocab];
        var all = new List<float[]>();
        for (int i = 0; i < batch; i++)
        {
            single.Reset();
            decoder.Advance(single, sequences[i].AsSpan(0, promptLengths[i]), logits.AsSpan(i * vocab, vocab));
            state.CopySequenceFrom(single, 0, i);
        }
        all.Add(logits.ToArray());
        for (int step = 0; step < steps; step++)
        {
            var next = Enumerable.Range(0, batch).Select(i => sequences[i][promptLengths[i] + step]).ToArray();
            decoder.Advance(state, next, logits);
            all.Add(logits.ToArray());
        }
        return all;
    }

    /// <summary>Largest |a − b| of each row over the row's largest |b|, the worst row of every step after the prefill.</summary>
    private static double WorstRelativeError(List<float[]> actual, List<float[]> expected, int vocab)
    {
        double worst = 0;
        for (int step = 1; step < expected.Count; step++)
            for (int row = 0; row < expected[step].Length / vocab; row++)
            {
                var e = expected[step].AsSpan(row * vocab, vocab);
                double scale = 0;
                foreach (float v in e) scale = Math.Max(scale, Math.Abs(v));
                worst = Math.Max(worst, MaxAbsDifference(actual[step].AsSpan(row * vocab, vocab), e) / scale);
            }
        return worst;
    }

    private static void Check<TModel>(Func<int, TModel> create, Func<MambaParameters, TModel> fromParameters,
        Action<TModel, HalfPrecision?> use, int seed, int[] promptLengths, int steps) where TModel : IMambaModel
    {
        var model = create(seed);
        Perturb(model.Parameters, seed);
        int vocab = ((IDecodingModel)model).VocabularySize;
        var sequences = promptLengths.Select((length, i) => RandomTokens(length + steps, vocab, seed * 10 + i)).ToArray();
        var fp32 = DecodeLogits(model, sequences, promptLengths, steps);
        foreach (var format in new[] { HalfPrecision.BFloat16, HalfPrecision.Float16 })
        {
            string what = $"{typeof(TModel).Name} {format}";
            var bits = new ushort[model.Parameters.Values.Length];
            HalfWeights.Round(model.Parameters.Values, bits, format);
            var rounded = new MambaParameters(model.Parameters.Layout, bits.Select(b => HalfWeights.Widen(b, format)).ToArray());

            var roundedFp32 = DecodeLogits(fromParameters(rounded), sequences, promptLengths, steps);
            var roundedHalf = fromParameters(rounded);
            use(roundedHalf, format);
            double independent = WorstRelativeError(DecodeLogits(roundedHalf, sequences, promptLengths, steps), roundedFp32, vocab);
            Assert.True(independent <= SummationTolerance, $"{what}: 16-bit decode of rounded weights vs fp32 decode of them: {independent:E3} > {SummationTolerance}");

            use(model, format);
            var half = DecodeLogits(model, sequences, promptLengths, steps);
            use(model, null);
            // A prefill of more than one token is fp32 whatever the option: its logits are unchanged. (A one-token prompt's
            // prefill is a one-token step like any other.)
            for (int i = 0; i < promptLengths.Length; i++)
                if (promptLengths[i] > 1)
                    Assert.Equal(fp32[0].AsSpan(i * vocab, vocab), half[0].AsSpan(i * vocab, vocab));
            double error = WorstRelativeError(half, fp32, vocab);
            double bound = RoundingToleranceInU * UnitRoundoff(format);
            Assert.True(error <= bound, $"{what}: 16-bit vs fp32 decode: {error:E3} of the largest logit > {bound:E3}");
            Assert.True(error > 0, $"{what}: the 16-bit decode equals the fp32 one exactly, so the 16-bit weights were not used.");
        }
        // Turned off again, decoding is the fp32 path exactly.
        Assert.Equal(fp32.SelectMany(l => l), DecodeLogits(model, sequences, promptLengths, steps).SelectMany(l => l));
    }

    [Fact]
    public void OddWidth() => Check(OddWidthModel.Create, OddWidthModel.FromParameters, (m, f) => m.UseHalfPrecisionWeights(f), 21, [7, 1, 4], 5);

    [Fact]
    public void BiasedUntied() => Check(BiasedUntiedModel.Create, BiasedUntiedModel.FromParameters, (m, f) => m.UseHalfPrecisionWeights(f), 22, [3], 6);

    [Fact]
    public void Ablations()
    {
        Check(DeltaOnlyModel.Create, DeltaOnlyModel.FromParameters, (m, f) => m.UseHalfPrecisionWeights(f), 23, [5, 2], 4);
        Check(BcOnlyModel.Create, BcOnlyModel.FromParameters, (m, f) => m.UseHalfPrecisionWeights(f), 24, [3, 9], 4);
        Check(LtiModel.Create, LtiModel.FromParameters, (m, f) => m.UseHalfPrecisionWeights(f), 25, [4, 1], 4);
    }

    [Fact]
    public void CopyFollowsParameterChanges()
    {
        var model = OddWidthModel.Create(26);
        Perturb(model.Parameters, 26);
        model.UseHalfPrecisionWeights(HalfPrecision.BFloat16);
        Assert.Equal(HalfPrecision.BFloat16, model.DecodeWeightPrecision);
        var tokens = RandomTokens(4, OddWidthModel.Vocab, 3);
        var before = DecodeLogits(model, [tokens], [2], 2);
        Perturb(model.Parameters, 27);
        model.Parameters.MarkChanged();
        var after = DecodeLogits(model, [tokens], [2], 2);
        // A fresh model made from the changed parameters, in 16-bit from the start, is what the old one must now equal.
        var fresh = OddWidthModel.FromParameters(new MambaParameters(model.Parameters.Layout, model.Parameters.Values.ToArray()));
        fresh.UseHalfPrecisionWeights(HalfPrecision.BFloat16);
        Assert.Equal(DecodeLogits(fresh, [tokens], [2], 2).SelectMany(l => l), after.SelectMany(l => l));
        Assert.NotEqual(before[2], after[2]);
        model.UseHalfPrecisionWeights(null);
        Assert.Null(model.DecodeWeightPrecision);
    }
}
