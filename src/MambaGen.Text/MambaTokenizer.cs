using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace MambaGen.Text;

/// <summary>
/// The tokenizer of a Mamba checkpoint: the byte-level BPE of GPT-NeoX read from a Hugging Face tokenizer.json.
/// Encodings and decodings equal Hugging Face <c>tokenizers</c>' on the fixture corpus (docs/text-generation.md).
/// The BPE itself is Microsoft.ML.Tokenizers'; this class configures it the way the file describes.
/// </summary>
public sealed class MambaTokenizer
{
    private const string EndOfTextToken = "<|endoftext|>";
    private const string PaddingToken = "<|padding|>";

    private readonly BpeTokenizer _bpe;
    private readonly bool _normalizeNfc;
    // Added tokens with normalized: false are found in the text as given, before NFC, as Hugging Face does;
    // null when there are none. NFC could otherwise merge a token's last character with a combining mark after it.
    private readonly Regex? _unnormalizedAddedTokens;
    private readonly Dictionary<string, int> _unnormalizedAddedIds;
    private readonly byte[]?[] _bytesById;
    private readonly bool[] _isSpecial;

    private MambaTokenizer(TokenizerFile file, ConfigIds configIds)
    {
        SourcePath = file.Path;
        _normalizeNfc = file.NormalizeNfc;
        if (_normalizeNfc && !NfcIsAvailable)
            throw new PlatformNotSupportedException($"Tokenizer file '{file.Path}' asks for NFC normalisation, but this process cannot normalise Unicode: globalization-invariant mode is on (InvariantGlobalization or DOTNET_SYSTEM_GLOBALIZATION_INVARIANT), where .NET leaves text unchanged. Turn it off (and install ICU) to tokenize as Hugging Face does.");
        var addedTokens = file.AddedTokens.ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);
        _bpe = BpeTokenizer.Create(new BpeOptions(file.Vocabulary)
        {
            Merges = file.Merges,
            ByteLevel = true,
            SpecialTokens = addedTokens,
            PreTokenizer = new RegexPreTokenizer(SplitPattern.Value, addedTokens),
        });

        _unnormalizedAddedIds = file.AddedTokens.Where(t => !t.Normalized).ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);
        if (_unnormalizedAddedIds.Count > 0)
        {
            // Longest first: .NET takes the first alternative that matches, Hugging Face the longest token.
            var alternatives = _unnormalizedAddedIds.Keys.OrderByDescending(c => c.Length).Select(Regex.Escape);
            _unnormalizedAddedTokens = new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
        }

        VocabularySize = Math.Max(file.Vocabulary.Values.Max(), file.AddedTokens.Select(t => t.Id).DefaultIfEmpty(-1).Max()) + 1;
        _bytesById = new byte[]?[VocabularySize];
        _isSpecial = new bool[VocabularySize];
        foreach (var (token, id) in file.Vocabulary) _bytesById[id] = ByteLevel.TokenBytes(token);
        foreach (var token in file.AddedTokens)
        {
            _bytesById[token.Id] = ByteLevel.TokenBytes(token.Content);
            _isSpecial[token.Id] = token.Special;
        }

        SpecialTokens = file.AddedTokens.Where(t => t.Special).ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);
        int? endOfText = SpecialTokens.TryGetValue(EndOfTextToken, out int eot) ? eot : null;
        EndOfSequenceId = CheckedConfigId(configIds.EndOfSequence, "eos_token_id", configIds.Path) ?? endOfText;
        BeginningOfSequenceId = CheckedConfigId(configIds.BeginningOfSequence, "bos_token_id", configIds.Path) ?? endOfText;
        PaddingId = CheckedConfigId(configIds.Padding, "pad_token_id", configIds.Path)
            ?? (SpecialTokens.TryGetValue(PaddingToken, out int pad) ? pad : null);
    }

    private static readonly Lazy<Regex> SplitPattern = new(ByteLevel.CreateSplitPattern);

    /// <summary>False in globalization-invariant mode, where string.Normalize returns non-ASCII text unchanged.</summary>
    internal static bool NfcIsAvailable { get; } = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00e9";

    /// <summary>The tokenizer.json this tokenizer was read from.</summary>
    public string SourcePath { get; }

    /// <summary>One more than the largest token id (model vocabulary and added tokens).</summary>
    public int VocabularySize { get; }

    /// <summary>The added tokens marked special (such as &lt;|endoftext|&gt;), by content.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>The end-of-sequence id: config.json's eos_token_id if given, else &lt;|endoftext|&gt;'s id, else null.</summary>
    public int? EndOfSequenceId { get; }

    /// <summary>The beginning-of-sequence id: config.json's bos_token_id if given, else &lt;|endoftext|&gt;'s id, else null.</summary>
    public int? BeginningOfSequenceId { get; }

    /// <summary>The padding id: config.json's pad_token_id if given, else &lt;|padding|&gt;'s id, else null.</summary>
    public int? PaddingId { get; }

    /// <summary>Reads a Hugging Face tokenizer.json of the byte-level BPE kind GPT-NeoX and Mamba use.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not JSON, is damaged, or describes another kind of tokenizer.</exception>
    /// <exception cref="PlatformNotSupportedException">The file needs NFC and the process runs globalization-invariant.</exception>
    public static MambaTokenizer FromFile(string tokenizerJsonPath) =>
        new(TokenizerFile.Read(tokenizerJsonPath), ConfigIds.None);

    /// <summary>
    /// Reads a checkpoint directory's tokenizer.json, and its config.json when present for eos_token_id,
    /// bos_token_id and pad_token_id (these take precedence over the tokenizer's own special tokens).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    /// <exception cref="FileNotFoundException">The directory has no tokenizer.json.</exception>
    /// <exception cref="InvalidDataException">tokenizer.json or config.json is damaged or of an unsupported kind.</exception>
    public static MambaTokenizer FromDirectory(string checkpointDirectory)
    {
        ArgumentNullException.ThrowIfNull(checkpointDirectory);
        if (!Directory.Exists(checkpointDirectory))
            throw new DirectoryNotFoundException($"Checkpoint directory '{checkpointDirectory}' does not exist; expected a folder holding tokenizer.json.");
        string tokenizerPath = Path.Combine(checkpointDirectory, "tokenizer.json");
        if (!File.Exists(tokenizerPath))
            throw new FileNotFoundException($"Checkpoint directory '{checkpointDirectory}' has no tokenizer.json; expected the Hugging Face tokenizer file that Mamba checkpoints ship.", tokenizerPath);
        var file = TokenizerFile.Read(tokenizerPath);
        return new MambaTokenizer(file, ConfigIds.Read(Path.Combine(checkpointDirectory, "config.json")));
    }

    /// <summary>The token ids of <paramref name="text"/>, exactly as Hugging Face tokenizers encodes it.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int start = 0;
        if (_unnormalizedAddedTokens is not null)
        {
            foreach (Match match in _unnormalizedAddedTokens.Matches(text))
            {
                EncodeNormalizedSegment(text.AsSpan(start, match.Index - start), ids);
                ids.Add(_unnormalizedAddedIds[match.Value]);
                start = match.Index + match.Length;
            }
        }
        EncodeNormalizedSegment(text.AsSpan(start), ids);
        return ids.ToArray();
    }

    private void EncodeNormalizedSegment(ReadOnlySpan<char> segment, List<int> ids)
    {
        if (segment.IsEmpty) return;
        string text = _normalizeNfc ? segment.ToString().Normalize(NormalizationForm.FormC) : segment.ToString();
        ids.AddRange(_bpe.EncodeToIds(text));
    }

    /// <summary>
    /// The text of <paramref name="ids"/>, exactly as Hugging Face tokenizers decodes it: bytes that do not form
    /// valid UTF-8 become U+FFFD. With <paramref name="skipSpecialTokens"/>, special added tokens are left out.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not a token of this tokenizer.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (int id in ids)
        {
            CheckId(id);
            if (!(skipSpecialTokens && _isSpecial[id])) kept.Add(id);
        }
        return _bpe.Decode(kept, considerSpecialTokens: true);
    }

    /// <summary>A decoder that turns ids given one at a time into text pieces that never split a character.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The bytes one token stands for (empty for a skipped special token).</summary>
    internal ReadOnlySpan<byte> TokenBytes(int id, bool skipSpecialTokens)
    {
        CheckId(id);
        return skipSpecialTokens && _isSpecial[id] ? [] : _bytesById[id];
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabularySize || _bytesById[id] is null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is not in the vocabulary of '{SourcePath}' (ids 0 to {VocabularySize - 1}).");
    }

    private int? CheckedConfigId(int? id, string name, string? configPath)
    {
        if (id is not { } value) return null;
        if ((uint)value >= (uint)VocabularySize || _bytesById[value] is null)
            throw new InvalidDataException($"'{configPath}' sets {name} to {value}, which is not a token of '{SourcePath}' (ids 0 to {VocabularySize - 1}).");
        return value;
    }

    /// <summary>The special token ids a checkpoint's config.json states.</summary>
    private sealed record ConfigIds(string? Path, int? EndOfSequence, int? BeginningOfSequence, int? Padding)
    {
        public static readonly ConfigIds None = new(null, null, null, null);

        public static ConfigIds Read(string path)
        {
            if (!File.Exists(path)) return None;
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllBytes(path));
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"'{path}' is not a JSON object; expected a checkpoint config.json.");
                return new ConfigIds(path, Id(root, "eos_token_id", path), Id(root, "bos_token_id", path), Id(root, "pad_token_id", path));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"'{path}' is not valid JSON ({e.Message}); expected a checkpoint config.json.", e);
            }
        }

        private static int? Id(JsonElement root, string name, string path)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int id))
                throw new InvalidDataException($"'{path}' sets {name} to {value.GetRawText()}; expected an integer token id or null.");
            return id;
        }
    }
}
