using System.Text.Json.Nodes;

namespace MambaGen.Text.Tests;

/// <summary>Encodings and decodings against Hugging Face tokenizers' own (the fixture), exactly.</summary>
public class TokenizerTests
{
    private static MambaTokenizer Tokenizer => TokenizerFixture.Tokenizer;

    [Theory]
    [MemberData(nameof(TokenizerFixture.EncodeCaseNames), MemberType = typeof(TokenizerFixture))]
    public void Encode_equals_hugging_face(string name)
    {
        var c = TokenizerFixture.Case(name);
        Assert.Equal(c.Ids, Tokenizer.Encode(c.Text));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.EncodeCaseNames), MemberType = typeof(TokenizerFixture))]
    public void Decode_equals_hugging_face_with_and_without_special_tokens(string name)
    {
        var c = TokenizerFixture.Case(name);
        Assert.Equal(c.Decoded, Tokenizer.Decode(c.Ids));
        Assert.Equal(c.DecodedSkipSpecial, Tokenizer.Decode(c.Ids, skipSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.DecodeCaseIndices), MemberType = typeof(TokenizerFixture))]
    public void Decode_of_arbitrary_ids_equals_hugging_face_including_invalid_utf8(int index)
    {
        var c = TokenizerFixture.DecodeCases[index];
        Assert.Equal(c.Decoded, Tokenizer.Decode(c.Ids));
        Assert.Equal(c.DecodedSkipSpecial, Tokenizer.Decode(c.Ids, skipSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixture.NativeCaseIndices), MemberType = typeof(TokenizerFixture))]
    public void Supplementary_plane_letters_and_nfc_next_to_added_tokens_encode_as_hugging_face(int index)
    {
        // Letters and digits outside the BMP must count as letters and digits in the split pattern, and NFC must
        // not join an added token with a combining mark after it.
        var (text, ids) = TokenizerFixture.NativeCases[index];
        Assert.Equal(ids, Tokenizer.Encode(text));
    }

    [Fact]
    public void The_fixture_exercises_what_it_claims()
    {
        // Guards against a fixture that would make the tests above pass trivially.
        var cases = TokenizerFixture.EncodeCases;
        Assert.Contains(cases, c => c.Ids.Length == 0);
        Assert.Contains(cases, c => c.Decoded != c.Text);                                  // NFC changed the text
        Assert.Contains(cases, c => c.Ids.Contains(TokenizerFixture.SpecialTokens["<|endoftext|>"]));
        Assert.Contains(cases, c => c.Decoded != c.DecodedSkipSpecial);
        Assert.Contains(cases, c => c.Text.Any(char.IsSurrogate));
        Assert.True(TokenizerFixture.DecodeCases.Count(c => c.Decoded.Contains('\uFFFD')) >= 20);
    }

    [Fact]
    public void Special_token_ids_and_vocabulary_size_come_from_the_file()
    {
        Assert.Equal(TokenizerFixture.VocabularySizeWithAddedTokens, Tokenizer.VocabularySize);
        Assert.Equal(TokenizerFixture.SpecialTokens, Tokenizer.SpecialTokens);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|endoftext|>"], Tokenizer.EndOfSequenceId);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|endoftext|>"], Tokenizer.BeginningOfSequenceId);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|padding|>"], Tokenizer.PaddingId);
        Assert.Equal(TokenizerFixture.TokenizerPath, Tokenizer.SourcePath);
    }

    [Fact]
    public void Merges_in_the_newer_pair_form_give_the_same_encodings()
    {
        // tokenizers 0.20 and later write merges as ["left", "right"]; GPT-NeoX's file (and the fixture) "left right".
        var json = JsonNode.Parse(File.ReadAllText(TokenizerFixture.TokenizerPath))!;
        var merges = json["model"]!["merges"]!.AsArray();
        var pairs = new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m!.GetValue<string>().Split(' ').Select(p => (JsonNode)p!).ToArray())).ToArray());
        json["model"]!["merges"] = pairs;
        using var dir = new TempDirectory();
        string path = dir.Write("tokenizer.json", json.ToJsonString());
        var tokenizer = MambaTokenizer.FromFile(path);
        foreach (var c in TokenizerFixture.EncodeCases) Assert.Equal(c.Ids, tokenizer.Encode(c.Text));
    }

    [Fact]
    public void FromDirectory_takes_special_ids_from_config_json()
    {
        using var dir = new TempDirectory();
        File.Copy(TokenizerFixture.TokenizerPath, Path.Combine(dir.Path, "tokenizer.json"));
        dir.Write("config.json", """{"model_type": "mamba", "eos_token_id": 1, "bos_token_id": null, "pad_token_id": 0}""");
        var tokenizer = MambaTokenizer.FromDirectory(dir.Path);
        Assert.Equal(1, tokenizer.EndOfSequenceId);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|endoftext|>"], tokenizer.BeginningOfSequenceId); // null: the file's
        Assert.Equal(0, tokenizer.PaddingId);
        Assert.Equal(TokenizerFixture.Case("added_mixed").Ids, tokenizer.Encode(TokenizerFixture.Case("added_mixed").Text));
    }

    [Fact]
    public void FromDirectory_without_config_json_uses_the_tokenizer_file_alone()
    {
        using var dir = new TempDirectory();
        File.Copy(TokenizerFixture.TokenizerPath, Path.Combine(dir.Path, "tokenizer.json"));
        var tokenizer = MambaTokenizer.FromDirectory(dir.Path);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|endoftext|>"], tokenizer.EndOfSequenceId);
        Assert.Equal(TokenizerFixture.SpecialTokens["<|padding|>"], tokenizer.PaddingId);
    }
}
