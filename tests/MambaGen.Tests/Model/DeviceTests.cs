using Xunit;

namespace MambaGen.Tests.Model;

public class DeviceTests
{
    [Theory]
    [InlineData("cpu", DeviceKind.Cpu, 0, "cpu")]
    [InlineData(" CUDA ", DeviceKind.Cuda, 0, "cuda:0")]
    [InlineData("cuda:3", DeviceKind.Cuda, 3, "cuda:3")]
    public void ParsesPyTorchSpellings(string text, DeviceKind kind, int ordinal, string printed)
    {
        var device = Device.Parse(text);
        Assert.Equal(kind, device.Kind);
        Assert.Equal(ordinal, device.Ordinal);
        Assert.Equal(printed, device.ToString());
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:1x")]
    public void RejectsOtherSpellingsNamingTheText(string text)
    {
        var error = Assert.Throws<FormatException>(() => Device.Parse(text));
        Assert.Contains($"'{text}'", error.Message);
    }

    [Fact]
    public void DefaultIsTheCpuAndOrdinalsAreNonNegative()
    {
        Assert.Equal(Device.Cpu, default(Device));
        Assert.NotEqual(Device.Cpu, Device.Cuda());
        Assert.Throws<ArgumentOutOfRangeException>(() => Device.Cuda(-1));
    }
}
