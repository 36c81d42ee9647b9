using System.Text.Json;
using MambaGen.Cpu;
using MambaGen.Generation;
using MambaGen.Tests.Model;
using MambaGen.Tests.Reference;
using static MambaGen.Tests.Model.ModelTestSupport;

namespace MambaGen.Tests.Generation;

/// <summary>Generation on real generated models: transformers' greedy output, seeds, batches, the repetition penalty.</summary>
public class ModelGenerationTests
{
    internal static string FixturePath(params string[] parts) => Path.Combine([Fixture.Root, .. parts]);

    /// <summary>
    /// tests/fixtures/generation/greedy_generate.json: transformers 5.17 generate(do_sample=False) on hf-tiny-a, in float32
    /// (the checkpoint's dtype); the smallest top-1/top-2 logit gap over all steps is 8.5e-3, far above fp32 rounding.
    /// </summary>
    [Fact]
    public void GreedyEqualsTransformersGenerate()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(FixturePath("generation", "greedy_generate.json")));
        var model = HfTinyA.Load(FixturePath("hf-tiny-a"));
        int newTokens = json.RootElement.GetProperty("new_tokens").GetInt32();
        Assert.Equal(json.RootElement.GetProperty("eos_token_id").GetInt32(), ((IDecodingModel)model).EndOfSequenceId);
        foreach (var @case in json.RootElement.GetProperty("cases").EnumerateArray())
        {
            var prompt = @case.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var reference = @case.GetProperty("float32");
            int[] Ids(string name) => reference.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(Ids("greedy_no_eos"), model.Generate(prompt, new GenerationOptions { MaxNewTokens = newTokens, StopAtEndOfSequence = false }));
            Assert.Equal(Ids("greedy_eos"), model.Generate(prompt, new GenerationOptions { MaxNewTokens = newTokens }));
        }
    }

    [Fact]
    public void SameSeedSameTokensAndBatchEqualsSingleRuns()
    {
        var model = OddWidthModel.Create(21);
        Perturb(model.Parameters, 21, scale: 0.3);
        var options = new GenerationOptions { MaxNewTokens = 12, Temperature = 1.2f, TopP = 0.95f, MinP = 0.02f, Seed = 5, StopAtEndOfSequence = false };
        int[][] prompts = [[3, 1, 4, 1, 5], [9], [2, 6, 5]];
        var first = model.Generate(prompts[0], options);
        Assert.Equal(first, model.Generate(prompts[0], options));
        Assert.NotEqual(first, model.Generate(prompts[0], options with { Seed = 6 })); // 12 draws at T = 1.2: a collision is negligible
        // Sequence i of a batch samples with seed + i, so it equals a batch of one with that seed.
        var batch = model.GenerateBatch(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(model.Generate(prompts[i], options with { Seed = 5 + i }), batch[i]);
    }

    [Fact]
    public void SequencesThatStopLeaveTheBatchWithoutChangingTheOthers()
    {
        var model = OddWidthModel.Create(24);
        Perturb(model.Parameters, 24, scale: 0.3);
        int[][] prompts = [[3, 1, 4], [9], [2, 6, 5, 3], [7, 7]];
        var options = new GenerationOptions { MaxNewTokens = 10, Temperature = 1f, Seed = 8, StopAtEndOfSequence = false };
        var alone = prompts.Select((prompt, i) => model.Generate(prompt, options with { Seed = 8 + i })).ToArray();
        // Stop ids taken from the runs alone so that sequences 1 and 2 stop early, at different steps (and 0 and 3 run on).
        int stopOne = alone[1][2], stopTwo = alone[2][5];
        options = options with { StopTokenIds = [stopOne, stopTwo] };
        alone = prompts.Select((prompt, i) => model.Generate(prompt, options with { Seed = 8 + i })).ToArray();
        Assert.True(alone[1].Length <= 3 && alone[2].Length <= 6, "the stop ids end sequences 1 and 2 early");

        var counting = new RowCountingModel(model);
        var batch = new GenerationSession(counting, prompts, options).Run();
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(alone[i], batch[i]);
        // After one prefill call per (short) prompt, each decode step feeds exactly the sequences still running.
        var expectedRows = Enumerable.Range(1, alone.Max(a => a.Length) - 1).Select(step => alone.Count(a => a.Length > step)).ToArray();
        Assert.Equal(expectedRows, counting.Rows.Skip(prompts.Length));
        Assert.Contains(expectedRows, rows => rows < prompts.Length);
    }

    /// <summary>Passes everything to a model and records the rows of the state of each call.</summary>
    private sealed class RowCountingModel(IDecodingModel inner) : IDecodingModel
    {
        public List<int> Rows { get; } = [];
        public int VocabularySize => inner.VocabularySize;
        public int? EndOfSequenceId => inner.EndOfSequenceId;
        public IDecodeState CreateDecodeState(int batch) => inner.CreateDecodeState(batch);
        public void Advance(IDecodeState state, ReadOnlySpan<int> tokens, Span<float> lastLogits)
        {
            Rows.Add(state.Batch);
            inner.Advance(state, tokens, lastLogits);
        }
    }

    [Fact]
    public void GreedyBatchEqualsGreedyPerPrompt()
    {
        var model = BiasedUntiedModel.Create(22);
        Perturb(model.Parameters, 22, scale: 0.3);
        int[][] prompts = [[1, 2, 3, 4, 5, 6, 7], [8], [9, 10, 11]];
        var options = new GenerationOptions { MaxNewTokens = 10 };
        var batch = model.GenerateBatch(prompts, options);
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(model.Generate(prompts[i], options), batch[i]);
    }

    [Fact]
    public void RepetitionPenaltyMatchesAReferenceLoopOverTheFullForward()
    {
        // Reference: full forward over the growing sequence, HF's penalty applied here in double, argmax.
        var model = OddWidthModel.Create(23);
        Perturb(model.Parameters, 23, scale: 0.3);
        const float penalty = 1.8f;
        int[] prompt = [4, 4, 7, 1];
        var sequence = prompt.ToList();
        var expected = new List<int>();
        for (int step = 0; step < 10; step++)
        {
            var logits = model.Forward(sequence.ToArray(), 1).AsSpan((sequence.Count - 1) * OddWidthModel.Vocab, OddWidthModel.Vocab).ToArray();
            var scores = logits.Select((l, id) => sequence.Contains(id) ? (l > 0 ? l / (double)penalty : l * (double)penalty) : l).ToList();
            int next = scores.IndexOf(scores.Max());
            expected.Add(next);
            sequence.Add(next);
        }
        var actual = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 10, RepetitionPenalty = penalty, StopAtEndOfSequence = false });
        Assert.Equal(expected, actual);
        // The penalty must matter here, or this test would not tell anything.
        Assert.NotEqual(actual, model.Generate(prompt, new GenerationOptions { MaxNewTokens = 10, StopAtEndOfSequence = false }));
    }

    [Fact]
    public async Task StreamingOnAModelGivesTheSameTokensAsGenerate()
    {
        var model = OddWidthModel.Create(24);
        Perturb(model.Parameters, 24, scale: 0.3);
        var options = new GenerationOptions { MaxNewTokens = 9, Temperature = 0.8f, Seed = 3, StopAtEndOfSequence = false };
        var streamed = new List<int>();
        await foreach (int token in model.GenerateStreamingAsync([5, 3], options)) streamed.Add(token);
        Assert.Equal(model.Generate([5, 3], options), streamed);
    }

    [Fact]
    public void HugeMaxNewTokensIsAClearErrorNotOutOfMemory()
    {
        var model = OddWidthModel.Create();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1], int.MaxValue));
        Assert.Contains($"[0, {GenerationOptions.MaxNewTokensLimit}]", ex.Message);
    }
}
