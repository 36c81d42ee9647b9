using MambaGen.Cuda.Backend;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// The host side of copying bf16 logits: values fetched into the upper half of a float buffer are widened in place.
/// Expected values come from the definition (a bf16 is the top 16 bits of an fp32), bit for bit, for lengths around
/// every vector width (odd lengths included) and for specials: ±0, ±∞, NaNs, subnormals.
/// </summary>
public class BFloat16WideningTests
{
    [Fact]
    public void WideningInPlaceGivesEachValuesFloatBitForBit()
    {
        var random = new Random(17);
        ushort[] specials = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x807F, 0x3F80, 0xC2F7];
        foreach (int length in new[] { 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1001 })
        {
            var bits = new ushort[length];
            for (int i = 0; i < length; i++) bits[i] = i < specials.Length ? specials[i] : (ushort)random.Next(0x10000);
            var buffer = new float[length];
            bits.AsSpan().CopyTo(System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(buffer.AsSpan())[length..]);
            CudaMambaModel.WidenBFloat16InPlace(buffer);
            for (int i = 0; i < length; i++)
                Assert.True(BitConverter.SingleToUInt32Bits(buffer[i]) == (uint)bits[i] << 16,
                    $"length {length}, element {i}: 0x{BitConverter.SingleToUInt32Bits(buffer[i]):X8} for bf16 0x{bits[i]:X4}");
        }
    }
}
