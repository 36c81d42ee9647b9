using System;
using System.Text;

namespace MambaGen.Generators.Emitters
{
    /// <summary>
    /// A small indented text writer for emitted C#: <see cref="Line"/> writes one line at the current depth,
    /// <see cref="Block"/> opens a brace block that closes when disposed.
    /// </summary>
    internal sealed class CodeWriter
    {
        private const string IndentUnit = "    ";
        private readonly StringBuilder _text = new StringBuilder();
        private int _depth;

        /// <summary>Writes one line (or an empty line); text containing newlines is written line by line at the same depth.</summary>
        public void Line(string text = "")
        {
            foreach (var line in text.Split('\n'))
            {
                if (line.Length > 0)
                {
                    for (int i = 0; i < _depth; i++) _text.Append(IndentUnit);
                    _text.Append(line);
                }
                _text.Append('\n');
            }
        }

        /// <summary>
        /// Writes <paramref name="header"/>, an opening brace, and indents until the result is disposed, which writes
        /// <paramref name="closing"/> (a brace, or <c>};</c> after an initializer).
        /// </summary>
        public BlockScope Block(string header, string closing = "}")
        {
            Line(header);
            Line("{");
            _depth++;
            return new BlockScope(this, closing);
        }

        /// <summary>Writes a <c>/// &lt;summary&gt;</c> comment: on one line when the text is one line, else one line per line of text.</summary>
        public void Summary(string text)
        {
            if (text.IndexOf('\n') < 0)
            {
                Line("/// <summary>" + text + "</summary>");
                return;
            }
            Line("/// <summary>");
            foreach (var line in text.Split('\n')) Line("/// " + line);
            Line("/// </summary>");
        }

        /// <summary>Writes a <c>//</c> comment, one line per line of <paramref name="text"/>.</summary>
        public void Comment(string text)
        {
            foreach (var line in text.Split('\n')) Line("// " + line);
        }

        /// <summary>Appends <paramref name="text"/> exactly as given, without indentation (e.g. a raw string literal's body).</summary>
        public void Raw(string text) => _text.Append(text);

        public override string ToString() => _text.ToString();

        internal readonly struct BlockScope : IDisposable
        {
            private readonly CodeWriter _writer;
            private readonly string _closing;

            public BlockScope(CodeWriter writer, string closing)
            {
                _writer = writer;
                _closing = closing;
            }

            public void Dispose()
            {
                _writer._depth--;
                _writer.Line(_closing);
            }
        }
    }
}
