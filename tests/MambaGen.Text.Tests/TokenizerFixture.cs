using System.Text.Json;

namespace MambaGen.Text.Tests;

/// <summary>
/// tests/fixtures/tokenizer: a GPT-NeoX-style tokenizer.json trained with Hugging Face tokenizers, and what that
/// library returned for each corpus text (make_tokenizer_fixtures.py, run on the GPU machine).
/// </summary>
public static class TokenizerFixture
{
    public static readonly string Directory = Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer");
    public static readonly string TokenizerPath = Path.Combine(Directory, "tokenizer.json");

    public sealed record EncodeCase(string Name, string Text, int[] Ids, string Decoded, string DecodedSkipSpecial, string[]? StreamPieces);
    public sealed record DecodeCase(int[] Ids, string Decoded, string DecodedSkipSpecial);

    private static readonly Lazy<JsonElement> Root = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory, "tokenizer_cases.json"))).RootElement);

    private static readonly Lazy<MambaTokenizer> SharedTokenizer = new(() => MambaTokenizer.FromFile(TokenizerPath));

    public static MambaTokenizer Tokenizer => SharedTokenizer.Value;

    public static IReadOnlyList<EncodeCase> EncodeCases { get; } = Root.Value.GetProperty("cases").EnumerateArray()
        .Select(c => new EncodeCase(
            c.GetProperty("name").GetString()!,
            c.GetProperty("text").GetString()!,
            Ints(c.GetProperty("ids")),
            c.GetProperty("decoded").GetString()!,
            c.GetProperty("decoded_skip_special").GetString()!,
            c.TryGetProperty("stream_pieces", out var p) ? p.EnumerateArray().Select(x => x.GetString()!).ToArray() : null))
        .ToArray();

    public static IReadOnlyList<DecodeCase> DecodeCases { get; } = Root.Value.GetProperty("decode_cases").EnumerateArray()
        .Select(c => new DecodeCase(Ints(c.GetProperty("ids")), c.GetProperty("decoded").GetString()!, c.GetProperty("decoded_skip_special").GetString()!))
        .ToArray();

    public static IReadOnlyDictionary<string, int> SpecialTokens { get; } = Root.Value.GetProperty("special_tokens").EnumerateObject()
        .ToDictionary(p => p.Name, p => p.Value.GetInt32());

    public static int VocabularySizeWithAddedTokens => Root.Value.GetProperty("vocab_size_with_added_tokens").GetInt32();

    /// <summary>
    /// tokenizer_cases_native.json: texts where a plain ML.Tokenizers configuration went wrong, with ids from
    /// Hugging Face's Rust library through Tokenizers.DotNet (crosscheck/, run off the GPU machine).
    /// </summary>
    public static IReadOnlyList<(string Text, int[] Ids)> NativeCases { get; } =
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory, "tokenizer_cases_native.json"))).RootElement
            .GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids"))))
            .ToArray();

    public static TheoryData<int> NativeCaseIndices() => new(Enumerable.Range(0, NativeCases.Count));

    public static TheoryData<string> EncodeCaseNames() => new(EncodeCases.Select(c => c.Name));
    public static TheoryData<int> DecodeCaseIndices() => new(Enumerable.Range(0, DecodeCases.Count));

    public static EncodeCase Case(string name) => EncodeCases.Single(c => c.Name == name);

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
