namespace MambaGen.Tests;

[MambaModel(DModel = 24, Layers = 2, Vocab = 50)]
[SelectiveSsm(DState = 4)]
public partial class SmokeModel { }

public class SmokeTests
{
    [Fact]
    public void GeneratorRunsInTheTestCompilation() => Assert.Equal(24, SmokeModel.DModel);
}
