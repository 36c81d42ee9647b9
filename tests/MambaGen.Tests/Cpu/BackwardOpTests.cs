using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

/// <summary>
/// The runtime's backward ops against central differences of double-precision versions of their forward math
/// (written here, independent of the runtime). Step 1e-5 in double: difference errors ≲ 1e-9. The ops run in fp32, so
/// they are held to 1e-5 relative to the largest gradient, which any wrong term exceeds by orders of magnitude.
/// </summary>
public class BackwardOpTests
{
    private const double Step = 1e-5;

    private static double[] Random(int count, int seed, double scale = 1)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => scale * (random.NextDouble() * 2 - 1)).ToArray();
    }

    private static float[] Floats(double[] values) => values.Select(v => (float)v).ToArray();

    /// <summary>Central differences of <paramref name="f"/> with respect to each entry of <paramref name="x"/>.</summary>
    private static double[] NumericGradient(Func<double[], double> f, double[] x)
    {
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double original = x[i];
            x[i] = original + Step; double up = f(x);
            x[i] = original - Step; double down = f(x);
            x[i] = original;
            gradient[i] = (up - down) / (2 * Step);
        }
        return gradient;
    }

    private static void Close(ReadOnlySpan<float> analytic, double[] numeric, string what)
    {
        double scale = numeric.Max(Math.Abs);
        for (int i = 0; i < numeric.Length; i++)
            Assert.True(Math.Abs(analytic[i] - numeric[i]) <= 1e-5 * scale + 1e-7, $"{what}[{i}]: {analytic[i]} vs {numeric[i]}");
    }

    [Fact]
    public void RmsNormBackwardMatchesFiniteDifferences()
    {
        const int rows = 3, width = 19; // whole vectors and a scalar tail
        const double epsilon = 1e-5;
        var x = Random(rows * width, 1, 2);
        var w = Random(width, 2);
        var dy = Random(rows * width, 3); // the loss is Σ dy ⊙ RMSNorm(x)
        double Objective(double[] input, double[] weight)
        {
            double total = 0;
            for (int r = 0; r < rows; r++)
            {
                double meanSquare = 0;
                for (int i = 0; i < width; i++) meanSquare += input[r * width + i] * input[r * width + i] / width;
                double scale = 1 / Math.Sqrt(meanSquare + epsilon);
                for (int i = 0; i < width; i++) total += dy[r * width + i] * input[r * width + i] * scale * weight[i];
            }
            return total;
        }

        var xf = Floats(x);
        var inverseRms = new float[rows];
        RmsNorm.Forward(xf, Floats(w), (float)epsilon, new float[rows * width], inverseRms, rows, width);
        var dx = new float[rows * width];
        var dw = new float[width];
        RmsNorm.Backward(xf, Floats(w), inverseRms, Floats(dy), dx, dw, rows, width);
        Close(dx, NumericGradient(input => Objective(input, w), x), "dx");
        Close(dw, NumericGradient(weight => Objective(x, weight), w), "dw");
    }

    [Fact]
    public void RmsNormBackwardAccumulates()
    {
        var x = Floats(Random(4, 4));
        var inverseRms = new float[1];
        RmsNorm.Forward(x, [1f, 1f, 1f, 1f], 1e-5f, new float[4], inverseRms, 1, 4);
        var dx = new float[] { 10, 10, 10, 10 };
        var dxFresh = new float[4];
        var dw = new float[4];
        RmsNorm.Backward(x, [1f, 1f, 1f, 1f], inverseRms, [1f, 2f, 3f, 4f], dx, dw, 1, 4);
        RmsNorm.Backward(x, [1f, 1f, 1f, 1f], inverseRms, [1f, 2f, 3f, 4f], dxFresh, new float[4], 1, 4);
        for (int i = 0; i < 4; i++) Assert.Equal(10 + dxFresh[i], dx[i], 1e-5);
    }

    [Fact]
    public void CrossEntropyGradientMatchesFiniteDifferences()
    {
        const int vocab = 6;
        int[] targets = [2, -1, 5, 0];
        var logits = Random(targets.Length * vocab, 5, 3);
        double Loss(double[] z)
        {
            double total = 0; int scored = 0;
            for (int r = 0; r < targets.Length; r++)
            {
                if (targets[r] == -1) continue;
                double sum = 0;
                for (int v = 0; v < vocab; v++) sum += Math.Exp(z[r * vocab + v]);
                total += Math.Log(sum) - z[r * vocab + targets[r]];
                scored++;
            }
            return total / scored;
        }

        var values = Floats(logits);
        float loss = CrossEntropy.LossAndGradient(values, targets, vocab);
        Assert.Equal(Loss(logits), loss, 1e-5);
        Close(values, NumericGradient(Loss, logits), "dlogits");
    }

    [Fact]
    public void CrossEntropyIsStableForLargeLogits()
    {
        float[] logits = [1000f, 0f, -1000f];
        Assert.Equal(0f, CrossEntropy.LossAndGradient(logits, [0], 3), 1e-6);
        Assert.All(logits, g => Assert.True(float.IsFinite(g)));
    }

    [Fact]
    public void EmbeddingScatterAddIsTheTransposeOfGather()
    {
        // <Gather(E), G> = <E, ScatterAdd(G)> for any E and G, including a repeated token.
        const int width = 3, vocab = 4;
        int[] tokens = [2, 0, 2];
        var table = Floats(Random(vocab * width, 6));
        var rowGradients = Floats(Random(tokens.Length * width, 7));
        var gathered = new float[tokens.Length * width];
        Embedding.Gather(table, width, tokens, gathered);
        var scattered = new float[vocab * width];
        Embedding.ScatterAdd(rowGradients, width, tokens, scattered);
        double left = gathered.Zip(rowGradients, (a, b) => (double)a * b).Sum();
        double right = table.Zip(scattered, (a, b) => (double)a * b).Sum();
        Assert.Equal(left, right, 1e-5);
    }

    [Fact]
    public void ColumnSumsAccumulateTheBiasGradient()
    {
        float[] matrix = [1, 2, 99, 3, 4, 99];
        var sums = new float[] { 10, 20 };
        Rows.AddColumnSums(matrix, 2, 3, sums);
        Assert.Equal([14f, 26f], sums);
    }
}
