using System.Globalization;
using System.Xml.Linq;
using MambaGen.Training;

namespace MambaGen.Tests.Training;

public class SvgChartTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static (double X, double Y)[] Points(XElement polyline) =>
        polyline.Attribute("points")!.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split(','))
            .Select(p => (double.Parse(p[0], CultureInfo.InvariantCulture), double.Parse(p[1], CultureInfo.InvariantCulture)))
            .ToArray();

    [Fact]
    public void RendersEachSeriesWithALegendEntryAndLabels()
    {
        var chart = new SvgChart("Training loss", "step", "loss")
            .AddSeries("S6", [1, 2, 3, 4], [2.0, 1.0, 0.5, 0.25])
            .AddSeries("LTI <no selection>", [1, 2, 3, 4], [2.0, 1.8, 1.7, 1.65]);
        var document = XDocument.Parse(chart.Render());
        var polylines = document.Descendants(Svg + "polyline").ToList();
        Assert.Equal(2, polylines.Count);
        Assert.Equal(["S6", "LTI <no selection>"], polylines.Select(p => p.Attribute("data-name")!.Value));
        var texts = document.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("Training loss", texts);
        Assert.Contains("step", texts);
        Assert.Contains("loss", texts);
        Assert.Contains("LTI <no selection>", texts); // escaped by the XML writer, read back intact

        // x grows to the right, larger y is higher up (smaller SVG y), and every point lies inside the chart.
        var s6 = Points(polylines[0]);
        Assert.True(s6.Zip(s6.Skip(1)).All(pair => pair.Second.X > pair.First.X));
        Assert.True(s6.Zip(s6.Skip(1)).All(pair => pair.Second.Y > pair.First.Y));
        Assert.All(s6, p => { Assert.InRange(p.X, 0, chart.Width); Assert.InRange(p.Y, 0, chart.Height); });
    }

    [Fact]
    public void LogXSpacesDecadesEquallyAndLabelsThem()
    {
        var chart = new SvgChart("Induction heads", "sequence length", "accuracy") { LogX = true, YMin = 0, YMax = 1 }
            .AddSeries("S6", [100, 1000, 10000], [1.0, 1.0, 0.5]);
        var document = XDocument.Parse(chart.Render());
        var points = Points(document.Descendants(Svg + "polyline").Single());
        Assert.Equal(points[1].X - points[0].X, points[2].X - points[1].X, 0.02);
        // Fixed y range: accuracy 1 sits on the top edge, 0.5 halfway down.
        Assert.Equal(points[0].Y, points[1].Y);
        double top = points[0].Y, bottom = chart.Height - 60;
        Assert.Equal((top + bottom) / 2, points[2].Y, 0.02);
        var labels = document.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("100", labels);
        Assert.Contains("1000", labels);
        Assert.Contains("10000", labels);
        Assert.Contains("sequence length (log scale)", labels);
    }

    [Fact]
    public void NonFiniteYValuesAreLeftOutOfTheLine()
    {
        var chart = new SvgChart("t", "x", "y").AddSeries("a", [1, 2, 3], [1.0, double.NaN, 3.0]);
        var polyline = XDocument.Parse(chart.Render()).Descendants(Svg + "polyline").Single();
        Assert.Equal(2, Points(polyline).Length);
    }

    [Fact]
    public void BadSeriesAreRejected()
    {
        var log = new SvgChart("t", "x", "y") { LogX = true };
        Assert.Contains("x > 0", Assert.Throws<ArgumentException>(() => log.AddSeries("a", [0, 1], [1, 2])).Message);
        var linear = new SvgChart("t", "x", "y");
        Assert.Contains("2 x values but 1 y values", Assert.Throws<ArgumentException>(() => linear.AddSeries("a", [0, 1], [1])).Message);
        Assert.Throws<ArgumentException>(() => linear.AddSeries("a", [double.NaN], [1]));
    }

    [Fact]
    public void AnEmptyChartStillRendersAndSavesAtomically()
    {
        string directory = Directory.CreateTempSubdirectory("mambagen-svg-").FullName;
        try
        {
            string path = Path.Combine(directory, "sub", "chart.svg");
            new SvgChart("empty", "x", "y").Save(path);
            Assert.Equal("svg", XDocument.Load(path).Root!.Name.LocalName);
            Assert.Equal(["chart.svg"], Directory.GetFiles(Path.Combine(directory, "sub")).Select(Path.GetFileName));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
