using System.Text;

namespace MambaGen.Text;

/// <summary>
/// Turns token ids, given one at a time as a model generates them, into text pieces. A byte-level token can end
/// in the middle of a UTF-8 character (an emoji is often two or three tokens), so bytes that do not yet form a
/// whole character are held back until the token that completes them arrives. The pieces joined equal
/// <see cref="MambaTokenizer.Decode"/> of all the ids once <see cref="Flush"/> has been called: bytes that can
/// never form a character become U+FFFD, as Hugging Face's decoding does.
/// </summary>
/// <remarks>Not thread-safe: one decoder follows one sequence.</remarks>
public sealed class StreamingDecoder
{
    private readonly MambaTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    // .NET's UTF-8 decoder keeps an incomplete trailing sequence between calls and replaces invalid bytes by
    // U+FFFD per maximal ill-formed subsequence, the same rule as Rust's from_utf8_lossy that tokenizers uses.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    internal StreamingDecoder(MambaTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>
    /// Adds one token and returns the text it completes: possibly empty (its bytes wait for the rest of a
    /// character), possibly more than the token alone (it completes bytes held from earlier tokens).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is not a token of the tokenizer.</exception>
    public string Append(int tokenId) => DecodeBytes(_tokenizer.TokenBytes(tokenId, _skipSpecialTokens), flush: false);

    /// <summary>
    /// Ends the sequence: returns U+FFFD for bytes still held (they never completed a character), or "" when
    /// none are. The decoder is then ready for a new sequence.
    /// </summary>
    public string Flush() => DecodeBytes([], flush: true);

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        int count = _utf8.GetCharCount(bytes, flush);
        if (count > _chars.Length) _chars = new char[Math.Max(count, 2 * _chars.Length)];
        int written = _utf8.GetChars(bytes, _chars, flush);
        return new string(_chars, 0, written);
    }
}
