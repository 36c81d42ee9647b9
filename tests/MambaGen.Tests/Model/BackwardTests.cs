using MambaGen.Numerics;
using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Model;

/// <summary>
/// The generated backward pass against central finite differences of the independent double-precision reference's
/// loss, tensor by tensor, for every variant declared in TestModels.cs.
/// </summary>
[Collection(AllocationMeasurements.Name)]
public class BackwardTests
{
    // Central differences of the double reference with step 1e-4 have truncation error ~ε²·|f‴| ≈ 1e-8 and rounding
    // error ~1e-16/ε ≈ 1e-12, so they are exact to far below what is tested. The analytic gradients are fp32: their
    // error relative to the tensor's largest gradient is ~1e-6 (sums over ≤ 100 terms). An entry passes when
    // |analytic − numeric| ≤ 1e-3·(largest |gradient| in its tensor) + 1e-6, loose enough for fp32 and 100× tighter
    // than the error of any dropped term or wrong factor, which changes gradients by O(1) relative.
    private const double Step = 1e-4;
    private const double RelativeTolerance = 1e-3;
    private const double AbsoluteTolerance = 1e-6;
    private const int EntriesPerTensor = 5;

    private static void GradientsMatchFiniteDifferences(IMambaModel model, int batch, int length, int seed)
    {
        Perturb(model.Parameters, seed, scale: 0.2);
        int vocab = model.Shape.Vocab;
        var tokens = RandomTokens(batch * length, vocab, seed);
        var targets = RandomTokens(batch * length, vocab, seed + 1);
        targets[1] = -1; // an unscored position
        var gradients = new float[model.Parameters.Values.Length];
        float loss = model.ForwardBackward(tokens, targets, batch, gradients);

        var weights = ReferenceMamba.Weights.From(model.Parameters);
        double referenceLoss = ReferenceMamba.Loss(weights, tokens, targets, batch);
        Assert.True(Math.Abs(loss - referenceLoss) <= 1e-5 * Math.Max(1, referenceLoss), $"loss {loss} vs reference {referenceLoss}");

        var random = new Xoshiro256((ulong)seed);
        var failures = new List<string>();
        foreach (var tensor in model.Parameters.Layout.Tensors)
        {
            var analytic = ParameterLayout.Part(gradients, tensor.Offset, tensor.Length);
            // A few random entries plus the largest one, so every tensor is checked where its gradient is not tiny.
            var entries = Enumerable.Range(0, EntriesPerTensor).Select(_ => random.NextInt(tensor.Length)).ToList();
            int largest = 0;
            for (int i = 1; i < analytic.Length; i++) if (Math.Abs(analytic[i]) > Math.Abs(analytic[largest])) largest = i;
            entries.Add(largest);

            var values = weights[tensor.Key];
            double scale = Math.Abs(analytic[largest]);
            foreach (int i in entries.Distinct())
            {
                double original = values[i];
                values[i] = original + Step;
                double up = ReferenceMamba.Loss(weights, tokens, targets, batch);
                values[i] = original - Step;
                double down = ReferenceMamba.Loss(weights, tokens, targets, batch);
                values[i] = original;
                double numeric = (up - down) / (2 * Step);
                if (Math.Abs(analytic[i] - numeric) > RelativeTolerance * Math.Max(scale, Math.Abs(numeric)) + AbsoluteTolerance)
                    failures.Add($"{tensor.Key}[{i}]: analytic {analytic[i]:E4}, numeric {numeric:E4}");
            }
            Assert.True(scale > 0 || tensor.Key.EndsWith("bias"), $"{tensor.Key}: gradient identically zero");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact] public void OddWidthGradients() => GradientsMatchFiniteDifferences(OddWidthModel.Create(1), batch: 2, length: 5, seed: 1);
    [Fact] public void BiasedUntiedGradients() => GradientsMatchFiniteDifferences(BiasedUntiedModel.Create(2), batch: 2, length: 4, seed: 2);
    [Fact] public void DeltaOnlyGradients() => GradientsMatchFiniteDifferences(DeltaOnlyModel.Create(3), batch: 2, length: 5, seed: 3);
    [Fact] public void BcOnlyGradients() => GradientsMatchFiniteDifferences(BcOnlyModel.Create(4), batch: 2, length: 6, seed: 4);
    [Fact] public void LtiGradients() => GradientsMatchFiniteDifferences(LtiModel.Create(5), batch: 2, length: 5, seed: 5);
    [Fact] public void DeltaAndBGradients() => GradientsMatchFiniteDifferences(DeltaAndBModel.Create(6), batch: 1, length: 6, seed: 6);
    [Fact] public void COnlyGradients() => GradientsMatchFiniteDifferences(COnlyModel.Create(7), batch: 2, length: 4, seed: 7);

    [Fact]
    public void LongSequencesCrossScanChunkBoundaries()
    {
        // N = 4 gives ScanChunk = 64; 150 steps make three chunks, the last one partial, so the backward pass
        // recomputes h from two stored snapshots.
        GradientsMatchFiniteDifferences(Nested.InnerModel.Create(8), batch: 1, length: 150, seed: 8);
    }

    [Fact]
    public void RepeatedCallsAllocateNothingAndGiveIdenticalResults()
    {
        var model = BiasedUntiedModel.Create(9);
        var tokens = RandomTokens(2 * 7, BiasedUntiedModel.Vocab, 9);
        var targets = RandomTokens(2 * 7, BiasedUntiedModel.Vocab, 10);
        var first = new float[BiasedUntiedModel.Layout.TotalLength];
        var again = new float[first.Length];
        float firstLoss = model.ForwardBackward(tokens, targets, 2, first);
        float againLoss = 0;
        long allocated = Allocations.LeastOf(() => Allocations.During(() =>
        {
            for (int repeat = 0; repeat < 5; repeat++) againLoss = model.ForwardBackward(tokens, targets, 2, again);
        }));
        Assert.Equal(0, allocated);
        Assert.Equal(firstLoss, againLoss);
        Assert.Equal(first, again); // channel blocks own their sums: no scheduling-dependent rounding
    }

    [Fact]
    public void NothingScoredGivesZeroLossAndGradient()
    {
        var model = LtiModel.Create(11);
        var gradients = Enumerable.Repeat(1f, LtiModel.Layout.SingleSegmentLength).ToArray();
        Assert.Equal(0f, model.ForwardBackward([1, 2, 3], [-1, -1, -1], 1, gradients));
        Assert.All(gradients, g => Assert.Equal(0f, g));
    }

    [Fact]
    public void InvalidTrainingInputIsRejected()
    {
        var model = LtiModel.Create();
        var gradients = new float[LtiModel.Layout.TotalLength];
        Assert.Throws<ArgumentException>(() => model.ForwardBackward([1, 2], [1], 1, gradients));
        var badTarget = Assert.Throws<ArgumentOutOfRangeException>(() => model.ForwardBackward([1, 2], [1, -2], 1, gradients));
        Assert.Contains("targets[1] = -2", badTarget.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.ForwardBackward([1, 2], [1, LtiModel.Vocab], 1, gradients));
        Assert.Throws<ArgumentException>(() => model.ForwardBackward([1, 2], [1, 2], 1, new float[3]));
        Assert.Throws<ArgumentException>(() => model.ForwardBackward([1, 2, 3], [1, 2, 3], 2, gradients));
    }
}
