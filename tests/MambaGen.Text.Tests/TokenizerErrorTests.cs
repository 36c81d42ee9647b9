using System.Text.Json.Nodes;

namespace MambaGen.Text.Tests;

/// <summary>Bad files and bad ids: each a specific exception naming the file (or id) and what was expected.</summary>
public class TokenizerErrorTests
{
    private static JsonNode FixtureJson() => JsonNode.Parse(File.ReadAllText(TokenizerFixture.TokenizerPath))!;

    private static InvalidDataException LoadFails(JsonNode json, params string[] messageParts)
    {
        using var dir = new TempDirectory();
        string path = dir.Write("tokenizer.json", json.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => MambaTokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        foreach (var part in messageParts) Assert.Contains(part, e.Message);
        return e;
    }

    [Fact]
    public void Missing_file()
    {
        string path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid(), "tokenizer.json");
        var e = Assert.Throws<FileNotFoundException>(() => MambaTokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FileName);
    }

    [Fact]
    public void Not_json_and_truncated_json()
    {
        using var dir = new TempDirectory();
        string garbage = dir.Write("garbage.json", "this is not json");
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => MambaTokenizer.FromFile(garbage)).Message);
        string text = File.ReadAllText(TokenizerFixture.TokenizerPath);
        string truncated = dir.Write("truncated.json", text[..(text.Length / 2)]);
        var e = Assert.Throws<InvalidDataException>(() => MambaTokenizer.FromFile(truncated));
        Assert.Contains(truncated, e.Message);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void Another_model_type(string type)
    {
        var json = FixtureJson();
        json["model"]!["type"] = type;
        LoadFails(json, $"model type '{type}'", "byte-level BPE");
    }

    [Fact]
    public void Another_pre_tokenizer_decoder_normalizer_or_post_processor()
    {
        var json = FixtureJson();
        json["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁"}""");
        LoadFails(json, "pre_tokenizer of type 'Metaspace'", "expected ByteLevel");

        json = FixtureJson();
        json["decoder"] = null;
        LoadFails(json, "has no decoder");

        json = FixtureJson();
        json["normalizer"] = JsonNode.Parse("""{"type": "NFKC"}""");
        LoadFails(json, "normalizer of type 'NFKC'", "expected NFC or none");

        json = FixtureJson();
        json["post_processor"] = JsonNode.Parse("""{"type": "TemplateProcessing", "single": []}""");
        LoadFails(json, "post_processor of type 'TemplateProcessing'");
    }

    [Fact]
    public void Byte_level_settings_that_change_the_encoding()
    {
        var json = FixtureJson();
        json["pre_tokenizer"]!["add_prefix_space"] = true;
        LoadFails(json, "pre_tokenizer.add_prefix_space is true");

        json = FixtureJson();
        json["pre_tokenizer"]!["use_regex"] = false;
        LoadFails(json, "pre_tokenizer.use_regex is false");

        json = FixtureJson();
        json["model"]!["dropout"] = 0.1;
        LoadFails(json, "model.dropout is 0.1");

        json = FixtureJson();
        json["added_tokens"]![0]!["lstrip"] = true;
        LoadFails(json, "added_tokens[0]", "lstrip: true");
    }

    [Fact]
    public void Damaged_vocabulary_or_merges()
    {
        var json = FixtureJson();
        json["model"]!["vocab"]!.AsObject().Remove("Ġ");
        LoadFails(json, "no token for byte 0x20");

        json = FixtureJson();
        json["model"]!["merges"]!.AsArray().Add("Ġ nosuchtoken");
        LoadFails(json, "\"nosuchtoken\", which is not in model.vocab");

        json = FixtureJson();
        json["model"]!["merges"]!.AsArray().Add("justone");
        LoadFails(json, "model.merges[", "expected \"left right\"");

        json = FixtureJson();
        json["model"]!["vocab"]!["a"] = "zero";
        LoadFails(json, "model.vocab[\"a\"]", "non-negative integer id");

        json = FixtureJson();
        json["model"]!["vocab"]!["a"] = json["model"]!["vocab"]!["b"]!.GetValue<int>();
        LoadFails(json, "appears twice in model.vocab");

        json = FixtureJson();
        json["model"]!.AsObject().Remove("merges");
        LoadFails(json, "has no model.merges");
    }

    [Fact]
    public void Damaged_added_tokens()
    {
        var json = FixtureJson();
        json["added_tokens"]![0]!["id"] = 5; // model.vocab gives id 5 to another token
        LoadFails(json, "added_tokens[0] gives id 5 to \"<|endoftext|>\"");

        json = FixtureJson();
        json["added_tokens"]![1]!["id"] = json["added_tokens"]![2]!["id"]!.GetValue<int>();
        LoadFails(json, "repeats id");
    }

    [Fact]
    public void Directory_errors()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-such-checkpoint-" + Guid.NewGuid());
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => MambaTokenizer.FromDirectory(missing)).Message);

        using var dir = new TempDirectory();
        var e = Assert.Throws<FileNotFoundException>(() => MambaTokenizer.FromDirectory(dir.Path));
        Assert.Contains("has no tokenizer.json", e.Message);
    }

    [Theory]
    [InlineData("""{"eos_token_id": 100000}""", "eos_token_id to 100000, which is not a token")]
    [InlineData("""{"pad_token_id": -1}""", "pad_token_id to -1, which is not a token")]
    [InlineData("""{"eos_token_id": "zero"}""", "eos_token_id to \"zero\"; expected an integer")]
    [InlineData("""[1, 2]""", "is not a JSON object")]
    [InlineData("""{"eos_token_id": """, "is not valid JSON")]
    public void Bad_config_json(string config, string messagePart)
    {
        using var dir = new TempDirectory();
        File.Copy(TokenizerFixture.TokenizerPath, Path.Combine(dir.Path, "tokenizer.json"));
        string configPath = dir.Write("config.json", config);
        var e = Assert.Throws<InvalidDataException>(() => MambaTokenizer.FromDirectory(dir.Path));
        Assert.Contains(configPath, e.Message);
        Assert.Contains(messagePart, e.Message);
    }

    [Fact]
    public void Decode_refuses_ids_outside_the_vocabulary()
    {
        var tokenizer = TokenizerFixture.Tokenizer;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([3, tokenizer.VocabularySize]));
        Assert.Contains($"Token id {tokenizer.VocabularySize} is not in the vocabulary", e.Message);
        Assert.Contains(TokenizerFixture.TokenizerPath, e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
        Assert.Throws<ArgumentNullException>(() => tokenizer.Encode(null!));
    }
}

/// <summary>NFC needs ICU; without it (globalization-invariant mode) .NET would leave text unnormalised.</summary>
public class NormalizationAvailabilityTests
{
    [Fact]
    public void A_tokenizer_that_needs_nfc_loads_only_where_nfc_works()
    {
        if (MambaTokenizer.NfcIsAvailable)
        {
            Assert.Equal(TokenizerFixture.Case("combining_acute").Ids, MambaTokenizer.FromFile(TokenizerFixture.TokenizerPath).Encode(TokenizerFixture.Case("combining_acute").Text));
        }
        else
        {
            var e = Assert.Throws<PlatformNotSupportedException>(() => MambaTokenizer.FromFile(TokenizerFixture.TokenizerPath));
            Assert.Contains("globalization-invariant", e.Message);
        }
    }
}
