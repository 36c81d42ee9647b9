using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace MambaGen.Generators.Parsing
{
    /// <summary>A parsed JSON value. Transient: config reading turns it into an equatable record right away.</summary>
    internal abstract class JsonValue
    {
        /// <summary>Short description for messages, e.g. <c>a string "768"</c>.</summary>
        public abstract string Describe();
    }

    internal sealed class JsonObject : JsonValue
    {
        private readonly List<KeyValuePair<string, JsonValue>> _members;

        public JsonObject(List<KeyValuePair<string, JsonValue>> members) => _members = members;

        /// <summary>The value of <paramref name="name"/>; the last one wins when a name repeats, as in Python's json module.</summary>
        public JsonValue? Get(string name)
        {
            for (int i = _members.Count - 1; i >= 0; i--)
                if (_members[i].Key == name) return _members[i].Value;
            return null;
        }

        public bool Has(string name) => Get(name) is not null;

        public override string Describe() => "an object";
    }

    internal sealed class JsonArray : JsonValue
    {
        public JsonArray(List<JsonValue> items) => Items = items;

        public IReadOnlyList<JsonValue> Items { get; }

        public override string Describe() => Items.Count == 0 ? "an empty array" : "an array of " + Items.Count;
    }

    internal sealed class JsonString : JsonValue
    {
        public JsonString(string value) => Value = value;

        public string Value { get; }

        public override string Describe() => "the string \"" + (Value.Length <= 40 ? Value : Value.Substring(0, 40) + "…") + "\"";
    }

    internal sealed class JsonNumber : JsonValue
    {
        public JsonNumber(string text, double value)
        {
            Text = text;
            Value = value;
        }

        /// <summary>The number as written, for messages.</summary>
        public string Text { get; }

        public double Value { get; }

        /// <summary>The value as an int when it is a whole number in range (Python may write 2 as 2.0).</summary>
        public int? AsInt() =>
            Value >= int.MinValue && Value <= int.MaxValue && Math.Floor(Value) == Value ? (int)Value : null;

        public override string Describe() => "the number " + Text;
    }

    internal sealed class JsonBool : JsonValue
    {
        public JsonBool(bool value) => Value = value;

        public bool Value { get; }

        public override string Describe() => Value ? "true" : "false";
    }

    internal sealed class JsonNull : JsonValue
    {
        public override string Describe() => "null";
    }

    /// <summary>Malformed JSON, with the 1-based line and column where reading stopped.</summary>
    internal sealed class JsonException : Exception
    {
        public JsonException(string reason, int line, int column)
            : base($"{reason} at line {line}, column {column}")
        {
            Reason = reason;
            Line = line;
            Column = column;
        }

        public string Reason { get; }
        public int Line { get; }
        public int Column { get; }
    }

    /// <summary>
    /// A small strict JSON reader (RFC 8259), plus the <c>NaN</c> and <c>Infinity</c> tokens that Python's json
    /// module writes. Written here because a netstandard2.0 generator cannot carry System.Text.Json into every
    /// compiler host. Nesting is capped so hostile input cannot overflow the stack.
    /// </summary>
    internal static class JsonParser
    {
        public const int MaxDepth = 64;

        /// <exception cref="JsonException">The text is not one valid JSON value.</exception>
        public static JsonValue Parse(string text) => new Reader(text).ReadDocument();

        private sealed class Reader
        {
            private readonly string _text;
            private int _position;

            public Reader(string text) => _text = text;

            public JsonValue ReadDocument()
            {
                if (_text.Length > 0 && _text[0] == '\uFEFF') _position = 1;
                SkipWhitespace();
                var value = ReadValue(depth: 1);
                SkipWhitespace();
                if (_position < _text.Length) throw Error("unexpected " + DescribeNext() + " after the top-level value");
                return value;
            }

            private JsonValue ReadValue(int depth)
            {
                if (depth > MaxDepth) throw Error($"nesting deeper than {MaxDepth} levels");
                if (_position >= _text.Length) throw Error("unexpected end of input, expected a value");
                switch (_text[_position])
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return new JsonString(ReadString());
                    case 't': ReadWord("true"); return new JsonBool(true);
                    case 'f': ReadWord("false"); return new JsonBool(false);
                    case 'n': ReadWord("null"); return new JsonNull();
                    case 'N': ReadWord("NaN"); return new JsonNumber("NaN", double.NaN);
                    case 'I': ReadWord("Infinity"); return new JsonNumber("Infinity", double.PositiveInfinity);
                    case '-':
                    case >= '0' and <= '9':
                        return ReadNumber();
                    default: throw Error("unexpected " + DescribeNext() + ", expected a value");
                }
            }

            private JsonObject ReadObject(int depth)
            {
                var members = new List<KeyValuePair<string, JsonValue>>();
                _position++; // '{'
                SkipWhitespace();
                if (TryConsume('}')) return new JsonObject(members);
                while (true)
                {
                    if (_position >= _text.Length || _text[_position] != '"')
                        throw Error("expected a property name in double quotes, found " + DescribeNext());
                    var name = ReadString();
                    SkipWhitespace();
                    if (!TryConsume(':')) throw Error("expected ':' after property name, found " + DescribeNext());
                    SkipWhitespace();
                    members.Add(new KeyValuePair<string, JsonValue>(name, ReadValue(depth + 1)));
                    SkipWhitespace();
                    if (TryConsume('}')) return new JsonObject(members);
                    if (!TryConsume(',')) throw Error("expected ',' or '}' in object, found " + DescribeNext());
                    SkipWhitespace();
                }
            }

            private JsonArray ReadArray(int depth)
            {
                var items = new List<JsonValue>();
                _position++; // '['
                SkipWhitespace();
                if (TryConsume(']')) return new JsonArray(items);
                while (true)
                {
                    items.Add(ReadValue(depth + 1));
                    SkipWhitespace();
                    if (TryConsume(']')) return new JsonArray(items);
                    if (!TryConsume(',')) throw Error("expected ',' or ']' in array, found " + DescribeNext());
                    SkipWhitespace();
                }
            }

            private string ReadString()
            {
                _position++; // opening quote
                var builder = new StringBuilder();
                while (true)
                {
                    if (_position >= _text.Length) throw Error("unterminated string");
                    char c = _text[_position];
                    if (c == '"')
                    {
                        _position++;
                        return builder.ToString();
                    }
                    if (c < ' ') throw Error("unescaped control character U+" + ((int)c).ToString("X4", CultureInfo.InvariantCulture) + " in string");
                    if (c != '\\')
                    {
                        builder.Append(c);
                        _position++;
                        continue;
                    }
                    _position++;
                    if (_position >= _text.Length) throw Error("unterminated string");
                    char escape = _text[_position];
                    switch (escape)
                    {
                        case '"': builder.Append('"'); break;
                        case '\\': builder.Append('\\'); break;
                        case '/': builder.Append('/'); break;
                        case 'b': builder.Append('\b'); break;
                        case 'f': builder.Append('\f'); break;
                        case 'n': builder.Append('\n'); break;
                        case 'r': builder.Append('\r'); break;
                        case 't': builder.Append('\t'); break;
                        case 'u': builder.Append(ReadHexEscape()); continue;
                        default: throw Error("invalid escape '\\" + escape + "' in string");
                    }
                    _position++;
                }
            }

            /// <summary>Reads the four hex digits after <c>\u</c>; leaves the position after them.</summary>
            private char ReadHexEscape()
            {
                int value = 0;
                for (int i = 1; i <= 4; i++)
                {
                    int at = _position + i;
                    int digit = at < _text.Length ? HexValue(_text[at]) : -1;
                    if (digit < 0)
                    {
                        _position = Math.Min(at, _text.Length);
                        throw Error("expected four hex digits after \\u");
                    }
                    value = value * 16 + digit;
                }
                _position += 5;
                return (char)value;
            }

            private static int HexValue(char c) => c switch
            {
                >= '0' and <= '9' => c - '0',
                >= 'a' and <= 'f' => c - 'a' + 10,
                >= 'A' and <= 'F' => c - 'A' + 10,
                _ => -1,
            };

            private JsonNumber ReadNumber()
            {
                int start = _position;
                TryConsume('-');
                if (_position < _text.Length && _text[_position] == 'I')
                {
                    ReadWord("Infinity");
                    return new JsonNumber("-Infinity", double.NegativeInfinity);
                }
                if (!TryConsume('0') && !ReadDigits()) throw Error("invalid number: expected a digit, found " + DescribeNext());
                if (TryConsume('.') && !ReadDigits()) throw Error("invalid number: expected a digit after '.', found " + DescribeNext());
                if (TryConsume('e') || TryConsume('E'))
                {
                    if (!TryConsume('+')) TryConsume('-');
                    if (!ReadDigits()) throw Error("invalid number: expected a digit in the exponent, found " + DescribeNext());
                }
                var text = _text.Substring(start, _position - start);
                // .NET Framework hosts fail on overflow where newer runtimes return infinity; treat both alike.
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                    value = text[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
                return new JsonNumber(text, value);
            }

            private bool ReadDigits()
            {
                int start = _position;
                while (_position < _text.Length && _text[_position] >= '0' && _text[_position] <= '9') _position++;
                return _position > start;
            }

            private void ReadWord(string word)
            {
                for (int i = 0; i < word.Length; i++, _position++)
                    if (_position >= _text.Length || _text[_position] != word[i])
                        throw Error("unexpected " + DescribeNext() + ", expected '" + word + "'");
            }

            private bool TryConsume(char c)
            {
                if (_position < _text.Length && _text[_position] == c)
                {
                    _position++;
                    return true;
                }
                return false;
            }

            private void SkipWhitespace()
            {
                while (_position < _text.Length && _text[_position] is ' ' or '\t' or '\n' or '\r') _position++;
            }

            private string DescribeNext()
            {
                if (_position >= _text.Length) return "end of input";
                char c = _text[_position];
                return c > ' ' && c < 0x7F ? "'" + c + "'" : "U+" + ((int)c).ToString("X4", CultureInfo.InvariantCulture);
            }

            private JsonException Error(string reason)
            {
                int line = 1, lineStart = 0;
                int end = Math.Min(_position, _text.Length);
                for (int i = 0; i < end; i++)
                {
                    if (_text[i] == '\n')
                    {
                        line++;
                        lineStart = i + 1;
                    }
                }
                return new JsonException(reason, line, end - lineStart + 1);
            }
        }
    }
}
