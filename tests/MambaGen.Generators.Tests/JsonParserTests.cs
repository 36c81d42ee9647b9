using MambaGen.Generators.Parsing;

namespace MambaGen.Generators.Tests;

/// <summary>The generator's own JSON reader: values, Python's extensions, and errors with their positions.</summary>
public class JsonParserTests
{
    [Fact]
    public void ReadsNestedValuesAndEscapes()
    {
        var root = Assert.IsType<JsonObject>(JsonParser.Parse("\uFEFF { \"a\": [1, -2.5e3, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", \"o\": {} } "));
        var array = Assert.IsType<JsonArray>(root.Get("a"));
        Assert.Equal(5, array.Items.Count);
        Assert.Equal(1, Assert.IsType<JsonNumber>(array.Items[0]).AsInt());
        Assert.Equal(-2500.0, Assert.IsType<JsonNumber>(array.Items[1]).Value);
        Assert.True(Assert.IsType<JsonBool>(array.Items[2]).Value);
        Assert.IsType<JsonNull>(array.Items[4]);
        Assert.Equal("q\"\\/\b\f\n\r\té😀", Assert.IsType<JsonString>(root.Get("s")).Value);
        Assert.IsType<JsonObject>(root.Get("o"));
    }

    [Fact]
    public void RepeatedKey_LastOneWins_AsInPython() =>
        Assert.Equal(2, ((JsonNumber)((JsonObject)JsonParser.Parse("{\"k\": 1, \"k\": 2}")).Get("k")!).AsInt());

    [Theory]
    [InlineData("NaN", double.NaN)]
    [InlineData("Infinity", double.PositiveInfinity)]
    [InlineData("-Infinity", double.NegativeInfinity)]
    [InlineData("1e400", double.PositiveInfinity)]
    [InlineData("-0", 0.0)]
    public void AcceptsPythonsNonFiniteTokens(string text, double value) =>
        Assert.Equal(value, Assert.IsType<JsonNumber>(JsonParser.Parse(text)).Value);

    [Theory]
    [InlineData("2.5", null)]
    [InlineData("3.0", 3)]
    [InlineData("2147483648", null)]
    [InlineData("-2147483648", int.MinValue)]
    [InlineData("NaN", null)]
    public void AsInt_OnlyForWholeNumbersInRange(string text, int? expected) =>
        Assert.Equal(expected, Assert.IsType<JsonNumber>(JsonParser.Parse(text)).AsInt());

    [Theory]
    [InlineData("", "unexpected end of input, expected a value", 1, 1)]
    [InlineData("{\"a\": 1,}", "expected a property name in double quotes, found '}'", 1, 9)]
    [InlineData("[1, 2,]", "unexpected ']', expected a value", 1, 7)]
    [InlineData("{\n \"a\": 01\n}", "expected ',' or '}' in object, found '1'", 2, 8)]
    [InlineData("{'a': 1}", "expected a property name in double quotes, found '''", 1, 2)]
    [InlineData("\"abc", "unterminated string", 1, 5)]
    [InlineData("\"a\tb\"", "unescaped control character U+0009 in string", 1, 3)]
    [InlineData("\"\\x\"", "invalid escape '\\x' in string", 1, 3)]
    [InlineData("\"\\u12G4\"", "expected four hex digits after \\u", 1, 6)]
    [InlineData("tru", "unexpected end of input, expected 'true'", 1, 4)]
    [InlineData("-", "invalid number: expected a digit, found end of input", 1, 2)]
    [InlineData("1.", "invalid number: expected a digit after '.', found end of input", 1, 3)]
    [InlineData("1e+", "invalid number: expected a digit in the exponent, found end of input", 1, 4)]
    [InlineData("{} {}", "unexpected '{' after the top-level value", 1, 4)]
    [InlineData("// comment\n{}", "unexpected '/', expected a value", 1, 1)]
    public void MalformedInput_ReportsReasonLineAndColumn(string text, string reason, int line, int column)
    {
        var error = Assert.Throws<JsonException>(() => JsonParser.Parse(text));
        Assert.Equal((reason, line, column), (error.Reason, error.Line, error.Column));
    }

    [Fact]
    public void NestingIsCapped_SoHostileInputCannotOverflowTheStack()
    {
        Assert.IsType<JsonArray>(JsonParser.Parse(new string('[', JsonParser.MaxDepth) + new string(']', JsonParser.MaxDepth)));
        var error = Assert.Throws<JsonException>(() => JsonParser.Parse(new string('[', 100_000)));
        Assert.Equal($"nesting deeper than {JsonParser.MaxDepth} levels", error.Reason);
        Assert.Equal(JsonParser.MaxDepth + 1, error.Column);
    }
}
