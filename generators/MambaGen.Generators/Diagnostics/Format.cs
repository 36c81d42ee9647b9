using System;
using System.Globalization;

namespace MambaGen.Generators.Diagnostics
{
    /// <summary>Writes values in diagnostics the way C# source spells them, independent of the user's culture.</summary>
    internal static class Format
    {
        public static string Value(object? value) => value switch
        {
            null => "null",
            bool flag => flag ? "true" : "false",
            double number => number.ToString("R", CultureInfo.InvariantCulture),
            IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };
    }
}
