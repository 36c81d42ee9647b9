using MambaGen.Cpu;

namespace MambaGen.Tests.Cpu;

public class RmsNormTests
{
    [Fact]
    public void MatchesTheDefinitionInDouble()
    {
        const int rows = 3, width = 19; // whole vectors and a scalar tail
        const float epsilon = 1e-5f;
        var random = new Random(1);
        var x = Enumerable.Range(0, rows * width).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        var w = Enumerable.Range(0, width).Select(_ => (float)random.NextDouble()).ToArray();
        var y = new float[rows * width];
        var inverseRms = new float[rows];
        RmsNorm.Forward(x, w, epsilon, y, inverseRms, rows, width);
        for (int r = 0; r < rows; r++)
        {
            double meanSquare = Enumerable.Range(0, width).Average(i => (double)x[r * width + i] * x[r * width + i]);
            double scale = 1 / Math.Sqrt(meanSquare + epsilon);
            Assert.Equal(scale, inverseRms[r], 1e-6 * scale);
            for (int i = 0; i < width; i++)
                Assert.Equal(x[r * width + i] * scale * w[i], y[r * width + i], 1e-6); // fp32 rounding of O(1) values
        }
    }

    [Fact]
    public void WrongSizesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(new float[6], new float[2], 1e-5f, new float[6], default, 2, 3));
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(new float[5], new float[3], 1e-5f, new float[6], default, 2, 3));
    }
}
