using MambaGen.Tasks;

namespace MambaGen.Tests.Tasks;

public class TaskScoreTests
{
    [Fact]
    public void CountsArgmaxHitsOverScoredPositionsAndWholeSequences()
    {
        // Two sequences of three positions, vocabulary 3. Scored: seq 0 positions 1, 2; seq 1 position 2.
        float[] logits =
        [
            9, 9, 9,    0, 5, 1,    2, 1, 0,   // seq 0: pos 1 predicts 1, pos 2 predicts 0
            0, 0, 0,    0, 0, 0,    1, 0, 3,   // seq 1: pos 2 predicts 2
        ];
        int[] targets = [-1, 1, 2, -1, -1, 2];
        var score = TaskScore.Measure(logits, targets, batch: 2, vocab: 3);
        Assert.Equal(3, score.ScoredTokens);
        Assert.Equal(2, score.CorrectTokens);
        Assert.Equal(2, score.Sequences);
        Assert.Equal(1, score.CorrectSequences);
        Assert.Equal(2.0 / 3, score.Accuracy, 12);
        Assert.Equal(0.5, score.SequenceAccuracy, 12);
        // Cross-entropy by hand: −log softmax(target).
        double expected = (Math.Log(Math.Exp(0) + Math.Exp(5) + Math.Exp(1)) - 5)
                        + (Math.Log(Math.Exp(2) + Math.Exp(1) + Math.Exp(0)) - 0)
                        + (Math.Log(Math.Exp(1) + Math.Exp(0) + Math.Exp(3)) - 3);
        Assert.Equal(expected, score.LossSum, 5);
        Assert.Equal(expected / 3, score.MeanLoss, 5);
        Assert.Equal(6, (score + score).ScoredTokens);
    }

    [Fact]
    public void LargeLogitsDoNotOverflowTheLoss()
    {
        var score = TaskScore.Measure([1000f, 0f], [1], batch: 1, vocab: 2);
        Assert.Equal(1000, score.LossSum, 3);
    }

    [Fact]
    public void RejectsInconsistentInput()
    {
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() => TaskScore.Measure(new float[5], [0, 1], 1, 3)).ParamName);
        Assert.Equal("targets", Assert.Throws<ArgumentException>(() => TaskScore.Measure(new float[6], [0, 3], 1, 3)).ParamName);
        Assert.Equal("targets", Assert.Throws<ArgumentException>(() => TaskScore.Measure(new float[9], [0, 1, 2], 2, 3)).ParamName);
    }
}

public class TaskEvaluationTests
{
    [Fact]
    public void EvaluateScoresFreshSequencesInBatchesIncludingAPartialLastOne()
    {
        var task = new InductionHeadsTask(12, 5);
        var model = new MambaGen.Tests.Training.FakeLinearModel(task.VocabSize, seed: 2);
        var whole = TaskScore.Evaluate(model, task, sequences: 10, batchSize: 4, new MambaGen.Numerics.Xoshiro256(8));
        Assert.Equal(10, whole.Sequences);
        Assert.Equal(10, whole.ScoredTokens);

        // The same sequences scored one by one, by hand, give the same counts.
        var random = new MambaGen.Numerics.Xoshiro256(8);
        var expected = default(TaskScore);
        foreach (int batch in new[] { 4, 4, 2 })
        {
            var tokens = new int[batch * 12];
            var targets = new int[tokens.Length];
            task.Fill(random, tokens, targets, batch);
            for (int b = 0; b < batch; b++)
            {
                var one = tokens.AsSpan(b * 12, 12).ToArray();
                expected += TaskScore.Measure(model.Forward(one, 1), targets.AsSpan(b * 12, 12), 1, task.VocabSize);
            }
        }
        Assert.Equal(expected.CorrectTokens, whole.CorrectTokens);
        Assert.Equal(expected.LossSum, whole.LossSum, 6);
    }
}
