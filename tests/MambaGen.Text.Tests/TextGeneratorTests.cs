using MambaGen.Generation;

namespace MambaGen.Text.Tests;

/// <summary>
/// A random-weight model whose vocabulary fits the tokenizer fixture (1,607 ids, padded to 1,608): it tests the
/// plumbing — encoding, streaming, stop strings, statistics, cancellation — not the quality of the text.
/// </summary>
[MambaModel(DModel = 16, Layers = 2, Vocab = 1607, PadVocabMultiple = 8)]
[SelectiveSsm(DState = 4, Expand = 2)]
public partial class FixtureVocabModel { }

public class TextGeneratorTests
{
    private static MambaTokenizer Tokenizer => TokenizerFixture.Tokenizer;

    private static readonly Lazy<FixtureVocabModel> Model = new(() => FixtureVocabModel.Create(seed: 3));

    private const string Text = "Grüße 🎉👩‍💻 naïve — done";

    private static int Eos => Tokenizer.EndOfSequenceId!.Value;

    private static TextGenerator Replaying(string text, bool thenEos = true)
    {
        var ids = Tokenizer.Encode(text).ToList();
        ids.Add(thenEos ? Eos : ids[^1]);
        return new TextGenerator(new ReplayModel(Tokenizer.VocabularySize, Eos, [.. ids]), Tokenizer);
    }

    private static async Task<List<string>> Collect(IAsyncEnumerable<string> pieces)
    {
        var list = new List<string>();
        await foreach (var piece in pieces) list.Add(piece);
        return list;
    }

    [Fact]
    public async Task PiecesJoinToTheTextAndNeverSplitACharacter()
    {
        // The emoji and the accented letters take several byte-level tokens each in this tokenizer.
        Assert.True(Tokenizer.Encode(Text).Length > Text.EnumerateRunes().Count() / 2);
        var pieces = await Collect(Replaying(Text).GenerateAsync("x"));
        Assert.Equal(Text, string.Concat(pieces));
        foreach (var piece in pieces)
        {
            Assert.DoesNotContain('\uFFFD', piece);
            Assert.False(char.IsHighSurrogate(piece[^1]), $"piece '{piece}' ends inside a surrogate pair");
            Assert.False(char.IsLowSurrogate(piece[0]), $"piece '{piece}' starts inside a surrogate pair");
        }
        Assert.True(pieces.Count > 3);
    }

    [Fact]
    public async Task TheEndOfSequenceTokenEndsTheTextAndIsNotEmitted()
    {
        var run = Replaying("ab cd").Start("x", new GenerationOptions { MaxNewTokens = 50 });
        Assert.Equal("ab cd", string.Concat(await Collect(run.StreamAsync())));
        Assert.Equal(FinishReason.StopToken, run.FinishReason);
        Assert.Equal(Eos, run.GeneratedTokens[^1]);
    }

    [Theory]
    [InlineData("naïve", "Grüße 🎉👩‍💻 ")]
    [InlineData("🎉", "Grüße ")]
    [InlineData("e 🎉", "Grüß")]
    [InlineData(" — d", "Grüße 🎉👩‍💻 naïve")]
    public async Task StopStringsEndTheTextBeforeThem(string stop, string expected)
    {
        var run = Replaying(Text).Start("x", stopStrings: ["never appears", stop]);
        var pieces = await Collect(run.StreamAsync());
        Assert.Equal(expected, string.Concat(pieces));
        Assert.True(run.StoppedAtStopString);
        Assert.Equal(FinishReason.Ended, run.FinishReason);
        Assert.Equal(expected, Replaying(Text).Generate("x", stopStrings: [stop]));
    }

    [Fact]
    public void AStopStringThatNeverCompletesIsReleasedAtTheEnd()
    {
        // "don" is held back while it may become "done!" — then the text ends, and it is emitted.
        Assert.Equal(Text, Replaying(Text).Generate("x", stopStrings: ["done!"]));
    }

    [Fact]
    public async Task RandomModelStreamsWhatTheTokensDecodeTo()
    {
        var generator = new TextGenerator(Model.Value, Tokenizer);
        var options = new GenerationOptions { MaxNewTokens = 40, Temperature = 1f, Seed = 11, StopAtEndOfSequence = false };
        var run = generator.Start("The quick brown fox", options);
        var text = string.Concat(await Collect(run.StreamAsync()));
        Assert.Equal(Tokenizer.Decode(run.GeneratedTokens, skipSpecialTokens: true), text);
        Assert.Equal(Tokenizer.Encode("The quick brown fox"), run.PromptTokens);
        var stats = run.Statistics;
        Assert.Equal(run.PromptTokens.Count, stats.PrefillTokens);
        Assert.Equal(40, stats.GeneratedTokens);
        Assert.Equal(39, stats.DecodeTokens);
        Assert.True(stats.PrefillTime > TimeSpan.Zero && stats.DecodeTime > TimeSpan.Zero);
        // The padding id 1607 exists in the model but not in the tokenizer: it is never generated.
        Assert.All(run.GeneratedTokens, id => Assert.InRange(id, 0, Tokenizer.VocabularySize - 1));
        Assert.Equal(text, generator.Generate("The quick brown fox", options));
    }

    [Fact]
    public void PaddingIdsAreNeverPicked()
    {
        // A model whose favourite is the padding id 1607: the generator picks among the tokenizer's ids instead.
        var generator = new TextGenerator(new ReplayModel(Tokenizer.VocabularySize + 1, null, Tokenizer.VocabularySize), Tokenizer);
        var run = generator.Start("x", new GenerationOptions { MaxNewTokens = 3, StopAtEndOfSequence = false });
        run.ReadToEnd();
        Assert.Equal([0, 0, 0], run.GeneratedTokens);
    }

    [Fact]
    public async Task CancellationStopsTheStream()
    {
        var generator = new TextGenerator(Model.Value, Tokenizer);
        using var cancel = new CancellationTokenSource();
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in generator.GenerateAsync("Hello", new GenerationOptions { MaxNewTokens = 10_000, StopAtEndOfSequence = false }, cancellationToken: cancel.Token))
                if (++pieces == 2) cancel.Cancel();
        });
        Assert.Equal(2, pieces);
    }

    [Fact]
    public void BadInputIsAClearError()
    {
        var generator = new TextGenerator(Model.Value, Tokenizer);
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() => generator.Start("")).Message);
        Assert.Throws<ArgumentException>(() => generator.Start("x", stopStrings: [""]));
        Assert.Throws<ArgumentOutOfRangeException>(() => generator.Start("x", new GenerationOptions { TopP = 2 }));
        var tooSmall = Assert.Throws<ArgumentException>(() => new TextGenerator(new ReplayModel(100, null, 1), Tokenizer));
        Assert.Contains("1607 tokens", tooSmall.Message);
        var run = generator.Start("x", new GenerationOptions { MaxNewTokens = 1 });
        run.ReadToEnd();
        Assert.Throws<InvalidOperationException>(() => run.ReadToEnd());
    }
}
