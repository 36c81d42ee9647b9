namespace MambaGen.Generators.Tests;

public class SmokeTests
{
    [Fact]
    public void GeneratorTypeLoads() => Assert.NotNull(new MambaModelGenerator());
}
