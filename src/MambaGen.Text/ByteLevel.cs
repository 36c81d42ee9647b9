using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace MambaGen.Text;

/// <summary>
/// The two fixed pieces of GPT-2-style byte-level BPE that a tokenizer.json does not spell out: the table that
/// shows each byte as a printable character, and the regular expression that splits text into words.
/// </summary>
internal static class ByteLevel
{
    /// <summary>
    /// The character that stands for each byte in a byte-level vocabulary (GPT-2's <c>bytes_to_unicode</c>):
    /// printable Latin-1 bytes stand for themselves, the other 68 bytes take U+0100 onwards in byte order.
    /// </summary>
    public static readonly IReadOnlyList<char> CharForByte = BuildCharForByte();

    /// <summary>The byte a character of a byte-level token stands for, or none for any other character.</summary>
    public static readonly IReadOnlyDictionary<char, byte> ByteForChar =
        Enumerable.Range(0, 256).ToDictionary(b => CharForByte[b], b => (byte)b);

    private static char[] BuildCharForByte()
    {
        var table = new char[256];
        char next = '\u0100';
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
            table[b] = printable ? (char)b : next++;
        }
        return table;
    }

    /// <summary>
    /// The bytes a token decodes to, as Hugging Face's ByteLevel decoder takes them: through the table when
    /// every character of the token is in it, else the token's own UTF-8 (added tokens such as space runs).
    /// </summary>
    public static byte[] TokenBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!ByteForChar.TryGetValue(token[i], out bytes[i])) return Encoding.UTF8.GetBytes(token);
        }
        return bytes;
    }

    /// <summary>
    /// GPT-2's split pattern, which Hugging Face's ByteLevel pre-tokenizer (use_regex: true) applies to Unicode
    /// code points. .NET's \p{L} and \p{N} test single UTF-16 units, so they miss letters and digits outside the
    /// Basic Multilingual Plane (𝐀, 𝟏, CJK Extension B): "x𝐀's" would split differently. Each class is widened
    /// here with the surrogate pairs of those code points, taken from .NET's own Unicode tables.
    /// </summary>
    public static Regex CreateSplitPattern()
    {
        string supplementaryLetters = SupplementaryPairs(IsLetter);
        string supplementaryNumbers = SupplementaryPairs(IsNumber);
        string letter = $@"(?:\p{{L}}|{supplementaryLetters})";
        string number = $@"(?:\p{{N}}|{supplementaryNumbers})";
        string other = $@"(?:(?!{supplementaryLetters}|{supplementaryNumbers})[^\s\p{{L}}\p{{N}}])";
        string pattern = $@"'s|'t|'re|'ve|'m|'ll|'d| ?{letter}+| ?{number}+| ?{other}+|\s+(?!\S)|\s+";
        return new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    private static bool IsLetter(UnicodeCategory category) => category is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
        or UnicodeCategory.OtherLetter;

    private static bool IsNumber(UnicodeCategory category) => category is UnicodeCategory.DecimalDigitNumber
        or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    /// <summary>An alternation matching the surrogate pair of every supplementary code point in the category.</summary>
    private static string SupplementaryPairs(Func<UnicodeCategory, bool> include)
    {
        var alternatives = new List<string>();
        for (int high = 0xD800; high <= 0xDBFF; high++)
        {
            var lowRanges = new StringBuilder();
            int runStart = -1;
            for (int low = 0xDC00; low <= 0xDFFF + 1; low++)
            {
                bool inside = low <= 0xDFFF
                    && include(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32((char)high, (char)low)));
                if (inside && runStart < 0) runStart = low;
                if (!inside && runStart >= 0)
                {
                    lowRanges.Append($@"\u{runStart:X4}-\u{low - 1:X4}");
                    runStart = -1;
                }
            }
            if (lowRanges.Length > 0) alternatives.Add($@"\u{high:X4}[{lowRanges}]");
        }
        return "(?:" + string.Join("|", alternatives) + ")";
    }
}
