using System.Globalization;
using System.Xml.Linq;
using MambaGen.Checkpoints;

namespace MambaGen.Training;

/// <summary>
/// A small self-contained SVG line chart: several named series, axis labels, a legend, optional logarithmic x axis
/// and optional fixed y range. Used for training curves and accuracy against sequence length.
/// </summary>
public sealed class SvgChart
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private static readonly string[] Palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    private const double Left = 80, Right = 190, Top = 48, Bottom = 60;

    private readonly List<(string Name, double[] X, double[] Y)> _series = [];

    /// <summary>An empty chart with a title and axis labels.</summary>
    public SvgChart(string title, string xLabel, string yLabel)
    {
        Title = title ?? throw new ArgumentNullException(nameof(title));
        XLabel = xLabel ?? throw new ArgumentNullException(nameof(xLabel));
        YLabel = yLabel ?? throw new ArgumentNullException(nameof(yLabel));
    }

    /// <summary>Printed above the plot.</summary>
    public string Title { get; }
    /// <summary>Printed below the x axis.</summary>
    public string XLabel { get; }
    /// <summary>Printed beside the y axis.</summary>
    public string YLabel { get; }

    /// <summary>Logarithmic x axis (every x must then be > 0).</summary>
    public bool LogX { get; init; }

    /// <summary>Fixed lower end of the y axis; by default fitted to the data.</summary>
    public double? YMin { get; init; }

    /// <summary>Fixed upper end of the y axis; by default fitted to the data.</summary>
    public double? YMax { get; init; }

    /// <summary>Width of the SVG in pixels.</summary>
    public int Width { get; init; } = 800;
    /// <summary>Height of the SVG in pixels.</summary>
    public int Height { get; init; } = 480;

    /// <summary>Names of the series added so far, in order.</summary>
    public IReadOnlyList<string> SeriesNames => _series.Select(s => s.Name).ToList();

    /// <summary>Adds a series (copied). Points whose y is not finite are left out of the line.</summary>
    public SvgChart AddSeries(string name, ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (x.Length != y.Length)
            throw new ArgumentException($"Series '{name}' has {x.Length} x values but {y.Length} y values.", nameof(y));
        for (int i = 0; i < x.Length; i++)
        {
            if (!double.IsFinite(x[i]))
                throw new ArgumentException($"Series '{name}' has a non-finite x value {x[i]} at index {i}.", nameof(x));
            if (LogX && x[i] <= 0)
                throw new ArgumentException($"Series '{name}' has x = {x[i]} at index {i}; a logarithmic x axis needs x > 0.", nameof(x));
        }
        _series.Add((name, x.ToArray(), y.ToArray()));
        return this;
    }

    /// <summary>Writes the chart atomically (a failed write leaves any previous file intact).</summary>
    public void Save(string path) => AtomicFile.WriteText(path, Render());

    /// <summary>The chart as an SVG document.</summary>
    public string Render()
    {
        if (Width < Left + Right + 50 || Height < Top + Bottom + 50)
            throw new InvalidOperationException($"The chart is too small ({Width}×{Height}); it needs at least {Left + Right + 50}×{Top + Bottom + 50}.");
        var (xLow, xHigh) = XRange();
        var (yLow, yHigh) = YRange();
        double plotWidth = Width - Left - Right, plotHeight = Height - Top - Bottom;
        double ToX(double x) => Left + (Axis(x) - Axis(xLow)) / (Axis(xHigh) - Axis(xLow)) * plotWidth;
        double ToY(double y) => Top + (1 - (Math.Clamp(y, yLow, yHigh) - yLow) / (yHigh - yLow)) * plotHeight;

        var root = new XElement(Svg + "svg",
            new XAttribute("width", Width), new XAttribute("height", Height),
            new XAttribute("viewBox", $"0 0 {Width} {Height}"),
            new XAttribute("font-family", "sans-serif"), new XAttribute("font-size", 12),
            new XElement(Svg + "rect", new XAttribute("width", Width), new XAttribute("height", Height), new XAttribute("fill", "white")),
            Text(Width / 2.0, 24, Title, "middle", 16));

        // Grid lines and tick labels first, so the data lines draw over them.
        foreach (double tick in LogX ? LogTicks(xLow, xHigh) : LinearTicks(xLow, xHigh))
        {
            double x = ToX(tick);
            root.Add(Line(x, Top, x, Top + plotHeight, "#e5e5e5"), Text(x, Top + plotHeight + 18, FormatNumber(tick), "middle"));
        }
        foreach (double tick in LinearTicks(yLow, yHigh))
        {
            double y = ToY(tick);
            root.Add(Line(Left, y, Left + plotWidth, y, "#e5e5e5"), Text(Left - 8, y + 4, FormatNumber(tick), "end"));
        }
        root.Add(
            new XElement(Svg + "rect", new XAttribute("x", F(Left)), new XAttribute("y", F(Top)),
                new XAttribute("width", F(plotWidth)), new XAttribute("height", F(plotHeight)),
                new XAttribute("fill", "none"), new XAttribute("stroke", "#333")),
            Text(Left + plotWidth / 2, Height - 16, XLabel + (LogX ? " (log scale)" : ""), "middle"),
            new XElement(Svg + "text", new XAttribute("transform", $"translate(20 {F(Top + plotHeight / 2)}) rotate(-90)"),
                new XAttribute("text-anchor", "middle"), YLabel));

        for (int s = 0; s < _series.Count; s++)
        {
            var (name, xs, ys) = _series[s];
            string colour = Palette[s % Palette.Length];
            var points = Enumerable.Range(0, xs.Length).Where(i => double.IsFinite(ys[i]))
                .Select(i => $"{F(ToX(xs[i]))},{F(ToY(ys[i]))}").ToList();
            root.Add(new XElement(Svg + "polyline", new XAttribute("class", "series"), new XAttribute("data-name", name),
                new XAttribute("fill", "none"), new XAttribute("stroke", colour), new XAttribute("stroke-width", 1.5),
                new XAttribute("points", string.Join(' ', points))));
            // Markers only where they stay legible (short series such as accuracy per length).
            if (points.Count <= 40)
                foreach (var point in points)
                {
                    var parts = point.Split(',');
                    root.Add(new XElement(Svg + "circle", new XAttribute("cx", parts[0]), new XAttribute("cy", parts[1]),
                        new XAttribute("r", 3), new XAttribute("fill", colour)));
                }
            double legendY = Top + 10 + s * 20;
            root.Add(Line(Left + plotWidth + 16, legendY, Left + plotWidth + 40, legendY, colour, 3),
                Text(Left + plotWidth + 46, legendY + 4, name, "start"));
        }
        return new XDocument(root).ToString();
    }

    private double Axis(double x) => LogX ? Math.Log10(x) : x;

    private (double Low, double High) XRange()
    {
        var xs = _series.SelectMany(s => s.X).ToList();
        if (xs.Count == 0) return LogX ? (1, 10) : (0, 1);
        double low = xs.Min(), high = xs.Max();
        if (low < high) return (low, high);
        return LogX ? (low / 2, high * 2) : (low - 1, high + 1);
    }

    private (double Low, double High) YRange()
    {
        var ys = _series.SelectMany(s => s.Y).Where(double.IsFinite).ToList();
        double low = YMin ?? (ys.Count > 0 ? ys.Min() : 0);
        double high = YMax ?? (ys.Count > 0 ? ys.Max() : 1);
        if (low > high)
            throw new InvalidOperationException($"The y range is empty: YMin {low} is above YMax {high}.");
        if (low == high) return (YMin ?? low - 1, YMax ?? high + 1);
        return (low, high);
    }

    /// <summary>Round ticks (1, 2 or 5 × 10^k apart) covering [low, high], about five of them.</summary>
    private static IEnumerable<double> LinearTicks(double low, double high)
    {
        double raw = (high - low) / 5;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * magnitude).First(c => c >= raw);
        for (double tick = Math.Ceiling(low / step) * step; tick <= high + step * 1e-9; tick += step)
            yield return Math.Abs(tick) < step * 1e-9 ? 0 : tick;
    }

    /// <summary>Powers of ten in range, plus 2× and 5× when the range spans less than two decades.</summary>
    private static IEnumerable<double> LogTicks(double low, double high)
    {
        bool fine = Math.Log10(high / low) < 2;
        for (int exponent = (int)Math.Floor(Math.Log10(low)); exponent <= (int)Math.Ceiling(Math.Log10(high)); exponent++)
            foreach (double mantissa in fine ? new[] { 1.0, 2.0, 5.0 } : [1.0])
            {
                double tick = mantissa * Math.Pow(10, exponent);
                if (tick >= low * (1 - 1e-9) && tick <= high * (1 + 1e-9)) yield return tick;
            }
    }

    private static string FormatNumber(double value) => value.ToString("G6", CultureInfo.InvariantCulture);

    private static string F(double value) => value.ToString("0.##", CultureInfo.InvariantCulture);

    private static XElement Line(double x1, double y1, double x2, double y2, string colour, double width = 1) =>
        new(Svg + "line", new XAttribute("x1", F(x1)), new XAttribute("y1", F(y1)), new XAttribute("x2", F(x2)),
            new XAttribute("y2", F(y2)), new XAttribute("stroke", colour), new XAttribute("stroke-width", width));

    private static XElement Text(double x, double y, string text, string anchor, int size = 12) =>
        new(Svg + "text", new XAttribute("x", F(x)), new XAttribute("y", F(y)), new XAttribute("text-anchor", anchor),
            new XAttribute("font-size", size), text);
}
