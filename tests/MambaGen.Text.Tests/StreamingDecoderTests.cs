namespace MambaGen.Text.Tests;

/// <summary>The streaming decoder against the full decode (itself checked against Hugging Face) and HF's DecodeStream.</summary>
public class StreamingDecoderTests
{
    private static MambaTokenizer Tokenizer => TokenizerFixture.Tokenizer;

    private static List<string> Stream(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var decoder = Tokenizer.CreateStreamingDecoder(skipSpecialTokens);
        var pieces = ids.Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());
        return pieces;
    }

    /// <summary>True when the text holds no half of a surrogate pair (a split astral character).</summary>
    private static bool IsWellFormedUtf16(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else if (char.IsSurrogate(text[i])) return false;
        }
        return true;
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.EncodeCaseNames), MemberType = typeof(TokenizerFixture))]
    public void Pieces_join_to_the_full_decode_and_split_no_character(string name)
    {
        var c = TokenizerFixture.Case(name);
        foreach (bool skip in new[] { false, true })
        {
            var pieces = Stream(c.Ids, skip);
            Assert.Equal(skip ? c.DecodedSkipSpecial : c.Decoded, string.Concat(pieces));
            Assert.All(pieces, p => Assert.True(IsWellFormedUtf16(p), $"piece {p} splits a surrogate pair"));
            // The corpus is valid text: a U+FFFD in a piece could only come from a character cut in two.
            Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.EncodeCaseNames), MemberType = typeof(TokenizerFixture))]
    public void Pieces_end_wherever_hugging_face_decode_stream_pieces_end(string name)
    {
        // HF's DecodeStream waits while the decoded text ends in an incomplete character, also when the token
        // before it completed other characters ("a" + the first byte of "ï"); ours releases the complete part
        // at once. So our pieces are the same text cut at least as finely: every end of theirs is one of ours.
        var c = TokenizerFixture.Case(name);
        Assert.NotNull(c.StreamPieces);
        var ours = Stream(c.Ids);
        Assert.Equal(string.Concat(c.StreamPieces), string.Concat(ours));
        var ourEnds = RunningLengths(ours).ToHashSet();
        Assert.All(RunningLengths(c.StreamPieces), end => Assert.Contains(end, ourEnds));
    }

    private static IEnumerable<int> RunningLengths(IEnumerable<string> pieces)
    {
        int total = 0;
        foreach (var piece in pieces) yield return total += piece.Length;
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.EncodeCaseNames), MemberType = typeof(TokenizerFixture))]
    public void Text_is_released_as_soon_as_its_characters_are_complete(string name)
    {
        var c = TokenizerFixture.Case(name);
        var decoder = Tokenizer.CreateStreamingDecoder();
        string emitted = "";
        for (int k = 1; k <= c.Ids.Length; k++)
        {
            emitted += decoder.Append(c.Ids[k - 1]);
            // A prefix decodes with a trailing U+FFFD exactly when it ends inside a character (valid corpus).
            string prefix = Tokenizer.Decode(c.Ids[..k]);
            Assert.Equal(prefix.TrimEnd('\uFFFD'), emitted);
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.DecodeCaseIndices), MemberType = typeof(TokenizerFixture))]
    public void Invalid_utf8_becomes_the_same_replacement_characters_as_hugging_face(int index)
    {
        var c = TokenizerFixture.DecodeCases[index];
        var pieces = Stream(c.Ids);
        Assert.Equal(c.Decoded, string.Concat(pieces));
        Assert.All(pieces, p => Assert.True(IsWellFormedUtf16(p)));
        Assert.Equal(c.DecodedSkipSpecial, string.Concat(Stream(c.Ids, skipSpecialTokens: true)));
    }

    [Fact]
    public void A_character_cut_at_the_end_is_held_then_flushed_as_one_replacement_character()
    {
        // An emoji that takes several tokens: stop before its last one.
        var c = TokenizerFixture.Case("emoji_simple");
        int cut = Enumerable.Range(1, c.Ids.Length - 1).First(k => Tokenizer.Decode(c.Ids[..k]).EndsWith('\uFFFD'));
        var decoder = Tokenizer.CreateStreamingDecoder();
        string emitted = string.Concat(c.Ids[..cut].Select(decoder.Append));
        string expected = Tokenizer.Decode(c.Ids[..cut]);
        Assert.Equal(expected.TrimEnd('\uFFFD'), emitted);
        Assert.Equal("\uFFFD", decoder.Flush());
        // After a flush the decoder starts clean: the whole case decodes as if new.
        Assert.Equal(c.Decoded, string.Concat(c.Ids.Select(decoder.Append)) + decoder.Flush());
    }

    [Fact]
    public void An_id_outside_the_vocabulary_is_refused_by_name()
    {
        var decoder = Tokenizer.CreateStreamingDecoder();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Append(Tokenizer.VocabularySize));
        Assert.Contains($"Token id {Tokenizer.VocabularySize}", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Append(-1));
    }
}
