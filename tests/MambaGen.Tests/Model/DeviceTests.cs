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
        Assert.Equal(GpuPrecision.Float32, device.Precision);
        Assert.Equal(printed, device.ToString());
    }

    [Theory]
    [InlineData("cuda:bf16", 0, GpuPrecision.BFloat16, "cuda:0:bf16")]
    [InlineData("CUDA:2:BF16", 2, GpuPrecision.BFloat16, "cuda:2:bf16")]
    [InlineData("cuda:1:fp32", 1, GpuPrecision.Float32, "cuda:1")]
    [InlineData("cuda:fp32", 0, GpuPrecision.Float32, "cuda:0")]
    public void ParsesAPrecisionSuffixAndPrintsBf16(string text, int ordinal, GpuPrecision precision, string printed)
    {
        var device = Device.Parse(text);
        Assert.Equal(Device.Cuda(ordinal, precision), device);
        Assert.Equal(printed, device.ToString());
        Assert.Equal(device, Device.Parse(device.ToString()));
    }

    [Fact]
    public void PrecisionIsPartOfTheDevice()
    {
        Assert.NotEqual(Device.Cuda(0), Device.Cuda(0, GpuPrecision.BFloat16));
        Assert.Equal(Device.Cuda(), Device.Cuda(0, GpuPrecision.Float32));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Device.Cuda(0, (GpuPrecision)7));
        Assert.Equal("precision", error.ParamName);
        Assert.Contains("7", error.Message);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:1x")]
    [InlineData("cuda:0:fp16")]
    [InlineData("cuda:bf16:1")]
    [InlineData("cuda:0:bf16:1")]
    [InlineData("cpu:bf16")]
    [InlineData("cuda::bf16")]
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
