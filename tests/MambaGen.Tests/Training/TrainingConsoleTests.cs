using MambaGen.Tasks;
using MambaGen.Training;
using Spectre.Console;

namespace MambaGen.Tests.Training;

public class TrainingConsoleTests
{
    private static (IAnsiConsole Console, StringWriter Output) TestConsole(bool interactive)
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = interactive ? AnsiSupport.Yes : AnsiSupport.No,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Out = new AnsiConsoleOutput(output),
        });
        return (console, output);
    }

    private static Trainer NewTrainer(int steps, int evaluationInterval = 0)
    {
        var task = new SelectiveCopyingTask(16, 2, 4);
        return new Trainer(new FakeLinearModel(task.VocabSize, 1), task,
            new TrainingOptions { Steps = steps, BatchSize = 2, EvaluationSequences = 4, EvaluationInterval = evaluationInterval });
    }

    [Fact]
    public void PlainModePrintsOneLinePerTwentiethOfTheRunPlusEvaluationsAndASummary()
    {
        var (console, output) = TestConsole(interactive: false);
        Assert.False(TrainingConsole.CanShowLive(console));
        var summary = TrainingConsole.Run(NewTrainer(steps: 40, evaluationInterval: 20), "S6", console: console);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var stepLines = lines.Where(l => l.StartsWith("S6  step ", StringComparison.Ordinal)).ToList();
        Assert.Equal(20, stepLines.Count); // every 2 steps of 40
        Assert.StartsWith("S6  step 2/40  loss ", stepLines[0]);
        Assert.Contains("tok/s", stepLines[0]);
        Assert.Contains("ETA ", stepLines[0]);
        Assert.Contains("acc –", stepLines[0]);         // no evaluation yet
        Assert.Contains("acc ", stepLines[^1]);
        Assert.DoesNotContain("acc –", stepLines[^1]);  // evaluated at step 20
        Assert.Equal(2, lines.Count(l => l.StartsWith("S6  eval @ step ", StringComparison.Ordinal)));
        Assert.StartsWith("S6: finished 40 steps in ", lines[^1].TrimEnd());
        Assert.Contains("held-out accuracy", lines[^1]);
        Assert.Equal(40, summary.Step);
    }

    [Fact]
    public void LiveModeDrawsAProgressDisplayAndEndsWithTheSummary()
    {
        var (console, output) = TestConsole(interactive: true);
        var summary = TrainingConsole.Run(NewTrainer(steps: 10), "LTI [test]", console: console, live: true);
        string text = output.ToString();
        Assert.Contains("LTI [test]", text);     // markup in the title is escaped, not interpreted
        Assert.Contains("loss ", text);
        Assert.Contains("100%", text);
        Assert.Contains("LTI [test]: finished 10 steps", text);
        Assert.Equal(10, summary.Step);
    }

    [Theory]
    [InlineData(0, 0, 5, "00:00:05")]
    [InlineData(0, 2, 3, "00:02:03")]
    [InlineData(26, 0, 0, "1.02:00:00")]
    public void DurationsPrintAsClockTimes(int hours, int minutes, int seconds, string expected) =>
        Assert.Equal(expected, TrainingConsole.FormatDuration(new TimeSpan(hours, minutes, seconds)));
}

public class RedirectedOutputTests
{
    [Fact]
    public void PlainConsoleWritesWideTablesUnwrappedAndWithoutEscapeCodes()
    {
        var output = new StringWriter();
        var console = RedirectedOutput.CreatePlainConsole(output);
        var table = new Table();
        string[] headings = Enumerable.Range(1, 12).Select(i => $"column number {i}").ToArray();
        foreach (string heading in headings) table.AddColumn(heading);
        table.AddRow(headings.Select(h => $"[green]{h.Replace("column number", "value")}[/]").ToArray());
        console.Write(table);
        console.MarkupLine("[red]error:[/] plain");

        string text = output.ToString();
        Assert.DoesNotContain('\u001b', text);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // Every heading on one line, far wider than 80 columns: nothing wrapped.
        var headingLine = Assert.Single(lines, l => l.Contains("column number 1 "));
        Assert.All(headings, h => Assert.Contains(h, headingLine));
        Assert.True(headingLine.Length > 80, $"The heading line is {headingLine.Length} columns.");
        Assert.Contains("error: plain", text);
    }
}
