using System.Text.Json;

namespace MambaGen.Text;

/// <summary>
/// A token the tokenizer.json lists under "added_tokens". <c>Normalized</c> says whether it is found in the
/// normalised text (true) or in the text as given (false).
/// </summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

/// <summary>
/// What MambaTokenizer needs from a Hugging Face tokenizer.json, read and checked. Only the byte-level BPE
/// configuration of GPT-NeoX (which the Mamba checkpoints ship) is accepted; anything else is refused with the
/// file, the setting and what was expected, rather than tokenized differently from Hugging Face.
/// </summary>
internal sealed class TokenizerFile
{
    public required string Path { get; init; }
    public required Dictionary<string, int> Vocabulary { get; init; }
    public required List<string> Merges { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required bool NormalizeNfc { get; init; }

    private const string Expected = "a byte-level BPE tokenizer as GPT-NeoX and the Mamba checkpoints use " +
        "(model BPE, ByteLevel pre-tokenizer and decoder, NFC or no normalizer)";

    public static TokenizerFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist; expected a Hugging Face tokenizer.json.", path);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Tokenizer file '{path}' is not valid JSON ({e.Message}); expected a Hugging Face tokenizer.json.", e);
        }
        using (document)
        {
            return new Reader(path).ReadRoot(document.RootElement);
        }
    }

    /// <summary>Reads one file; every error names the file and the JSON path of the offending setting.</summary>
    private sealed class Reader(string path)
    {
        public TokenizerFile ReadRoot(JsonElement root)
        {
            if (root.ValueKind != JsonValueKind.Object) throw Invalid("the top level", "a JSON object", root);
            var model = Property(root, "model", JsonValueKind.Object, "model");
            string modelType = OptionalString(model, "type", "model.type") ?? "(none)";
            if (modelType != "BPE")
                throw new InvalidDataException($"Tokenizer file '{path}' has model type '{modelType}'; expected {Expected}.");
            RequireNullOrValue(model, "dropout", "model.dropout", JsonValueKind.Number, e => e.GetDouble() == 0);
            RequireNullOrValue(model, "continuing_subword_prefix", "model.continuing_subword_prefix", JsonValueKind.String, e => e.GetString() == "");
            RequireNullOrValue(model, "end_of_word_suffix", "model.end_of_word_suffix", JsonValueKind.String, e => e.GetString() == "");
            RequireNullOrValue(model, "byte_fallback", "model.byte_fallback", JsonValueKind.False, _ => true);
            RequireNullOrValue(model, "ignore_merges", "model.ignore_merges", JsonValueKind.False, _ => true);

            CheckComponent(root, "normalizer", allowNull: true, "NFC");
            CheckByteLevel(root, "pre_tokenizer", allowNull: false);
            CheckByteLevel(root, "decoder", allowNull: false);
            CheckByteLevel(root, "post_processor", allowNull: true);

            var vocabulary = ReadVocabulary(Property(model, "vocab", JsonValueKind.Object, "model.vocab"));
            var merges = ReadMerges(Property(model, "merges", JsonValueKind.Array, "model.merges"), vocabulary);
            var addedTokens = root.TryGetProperty("added_tokens", out var added) && added.ValueKind != JsonValueKind.Null
                ? ReadAddedTokens(added, vocabulary)
                : [];
            return new TokenizerFile
            {
                Path = path,
                Vocabulary = vocabulary,
                Merges = merges,
                AddedTokens = addedTokens,
                NormalizeNfc = root.TryGetProperty("normalizer", out var n) && n.ValueKind == JsonValueKind.Object,
            };
        }

        private Dictionary<string, int> ReadVocabulary(JsonElement vocab)
        {
            var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
            var seenIds = new HashSet<int>();
            foreach (var entry in vocab.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw Invalid($"model.vocab[\"{entry.Name}\"]", "a non-negative integer id", entry.Value);
                if (!seenIds.Add(id))
                    throw new InvalidDataException($"Tokenizer file '{path}': id {id} appears twice in model.vocab (again for \"{entry.Name}\"); expected unique ids.");
                vocabulary[entry.Name] = id;
            }
            for (int b = 0; b < 256; b++)
            {
                if (!vocabulary.ContainsKey(ByteLevel.CharForByte[b].ToString()))
                    throw new InvalidDataException($"Tokenizer file '{path}': model.vocab has no token for byte 0x{b:X2} ('{ByteLevel.CharForByte[b]}'); expected {Expected}, whose vocabulary holds all 256 byte symbols.");
            }
            return vocabulary;
        }

        private List<string> ReadMerges(JsonElement merges, Dictionary<string, int> vocabulary)
        {
            var result = new List<string>(merges.GetArrayLength());
            int index = 0;
            foreach (var merge in merges.EnumerateArray())
            {
                // GPT-NeoX's files write "left right"; tokenizers 0.20 and later write ["left", "right"].
                string[] parts = merge.ValueKind switch
                {
                    JsonValueKind.String => merge.GetString()!.Split(' '),
                    JsonValueKind.Array => merge.EnumerateArray().Select(p => p.ValueKind == JsonValueKind.String ? p.GetString()! : "").ToArray(),
                    _ => [],
                };
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                    throw Invalid($"model.merges[{index}]", "\"left right\" or [\"left\", \"right\"]", merge);
                foreach (var part in parts)
                {
                    if (!vocabulary.ContainsKey(part))
                        throw new InvalidDataException($"Tokenizer file '{path}': model.merges[{index}] uses \"{part}\", which is not in model.vocab.");
                }
                result.Add(parts[0] + " " + parts[1]);
                index++;
            }
            return result;
        }

        private List<AddedToken> ReadAddedTokens(JsonElement added, Dictionary<string, int> vocabulary)
        {
            if (added.ValueKind != JsonValueKind.Array) throw Invalid("added_tokens", "an array", added);
            var tokens = new List<AddedToken>();
            var modelTokenById = vocabulary.ToDictionary(v => v.Value, v => v.Key);
            var addedIds = new HashSet<int>();
            int index = 0;
            foreach (var token in added.EnumerateArray())
            {
                string where = $"added_tokens[{index++}]";
                if (token.ValueKind != JsonValueKind.Object) throw Invalid(where, "an object", token);
                var idElement = Property(token, "id", JsonValueKind.Number, where + ".id");
                if (!idElement.TryGetInt32(out int id) || id < 0) throw Invalid(where + ".id", "a non-negative integer", idElement);
                string content = Property(token, "content", JsonValueKind.String, where + ".content").GetString()!;
                if (content.Length == 0) throw Invalid(where + ".content", "a non-empty string", token);
                foreach (var flag in new[] { "single_word", "lstrip", "rstrip" })
                {
                    if (token.TryGetProperty(flag, out var value) && value.ValueKind == JsonValueKind.True)
                        throw new InvalidDataException($"Tokenizer file '{path}': {where} (\"{content}\") sets {flag}: true, which MambaTokenizer does not support; expected false as in GPT-NeoX.");
                }
                bool special = OptionalBool(token, "special", where + ".special") ?? false;
                bool normalized = OptionalBool(token, "normalized", where + ".normalized") ?? !special;
                if (modelTokenById.TryGetValue(id, out var modelToken) && modelToken != content)
                    throw new InvalidDataException($"Tokenizer file '{path}': {where} gives id {id} to \"{content}\", but model.vocab gives it to \"{modelToken}\".");
                if (!addedIds.Add(id))
                    throw new InvalidDataException($"Tokenizer file '{path}': {where} repeats id {id}; expected unique ids in added_tokens.");
                tokens.Add(new AddedToken(id, content, special, normalized));
            }
            return tokens;
        }

        private void CheckByteLevel(JsonElement root, string name, bool allowNull)
        {
            var component = CheckComponent(root, name, allowNull, "ByteLevel");
            if (component is not { } byteLevel) return;
            // The decoder and post-processor ignore add_prefix_space for ids and text; the pre-tokenizer does not.
            if (name == "pre_tokenizer" && byteLevel.TryGetProperty("add_prefix_space", out var prefix) && prefix.ValueKind == JsonValueKind.True)
                throw new InvalidDataException($"Tokenizer file '{path}': pre_tokenizer.add_prefix_space is true; expected false as in GPT-NeoX.");
            if (name == "pre_tokenizer" && byteLevel.TryGetProperty("use_regex", out var regex) && regex.ValueKind == JsonValueKind.False)
                throw new InvalidDataException($"Tokenizer file '{path}': pre_tokenizer.use_regex is false; expected true as in GPT-NeoX.");
        }

        /// <summary>The component's object when its "type" is the one expected; null where null is allowed.</summary>
        private JsonElement? CheckComponent(JsonElement root, string name, bool allowNull, string expectedType)
        {
            if (!root.TryGetProperty(name, out var component) || component.ValueKind == JsonValueKind.Null)
            {
                if (allowNull) return null;
                throw new InvalidDataException($"Tokenizer file '{path}' has no {name}; expected a {expectedType} {name} ({Expected}).");
            }
            string? type = component.ValueKind == JsonValueKind.Object ? OptionalString(component, "type", name + ".type") : null;
            if (type != expectedType)
                throw new InvalidDataException($"Tokenizer file '{path}' has {name} of type '{type ?? component.ValueKind.ToString()}'; expected {expectedType}{(allowNull ? " or none" : "")} ({Expected}).");
            return component;
        }

        private void RequireNullOrValue(JsonElement parent, string name, string where, JsonValueKind kind, Func<JsonElement, bool> accepted)
        {
            if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return;
            if (value.ValueKind != kind || !accepted(value))
                throw new InvalidDataException($"Tokenizer file '{path}': {where} is {value.GetRawText()}, which MambaTokenizer does not support; expected null ({Expected}).");
        }

        private JsonElement Property(JsonElement parent, string name, JsonValueKind kind, string where)
        {
            if (!parent.TryGetProperty(name, out var value))
                throw new InvalidDataException($"Tokenizer file '{path}' has no {where}; expected {kind.ToString().ToLowerInvariant()} there ({Expected}).");
            if (value.ValueKind != kind) throw Invalid(where, "a JSON " + kind.ToString().ToLowerInvariant(), value);
            return value;
        }

        private string? OptionalString(JsonElement parent, string name, string where)
        {
            if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != JsonValueKind.String) throw Invalid(where, "a string", value);
            return value.GetString();
        }

        private bool? OptionalBool(JsonElement parent, string name, string where)
        {
            if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw Invalid(where, "true or false", value);
            return value.GetBoolean();
        }

        private InvalidDataException Invalid(string where, string expected, JsonElement actual)
        {
            string text = actual.GetRawText();
            if (text.Length > 80) text = text[..80] + "…";
            return new InvalidDataException($"Tokenizer file '{path}': {where} is {text}; expected {expected}.");
        }
    }
}
