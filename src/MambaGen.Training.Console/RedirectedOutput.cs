using Spectre.Console;

namespace MambaGen.Training;

/// <summary>
/// Console output for files and pipes. Spectre.Console sizes tables to the terminal and, without a terminal, to 80
/// columns, wrapping wider ones; and it may keep colour codes. Output that goes to a log or another program wants
/// neither: plain text, each table row on one line.
/// </summary>
public static class RedirectedOutput
{
    /// <summary>The width a plain console reports: wide enough that no table a sample prints is wrapped.</summary>
    public const int Width = 1000;

    /// <summary>
    /// When standard output is redirected, replaces <see cref="AnsiConsole.Console"/> with a plain one (see
    /// <see cref="CreatePlainConsole"/>); on a terminal, leaves it as it is.
    /// </summary>
    public static void ConfigureAnsiConsole()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Console = CreatePlainConsole(Console.Out);
    }

    /// <summary>A console writing to <paramref name="writer"/> without ANSI codes, colours or live widgets, <see cref="Width"/> columns wide.</summary>
    public static IAnsiConsole CreatePlainConsole(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = Width;
        return console;
    }
}
