namespace MambaGen.Training;

/// <summary>CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), used to detect corrupt training-state files.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    public const uint Initial = 0xFFFFFFFFu;

    /// <summary>Continues a running CRC (start from <see cref="Initial"/>; finish with <see cref="Finish"/>).</summary>
    public static uint Append(uint running, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data) running = Table[(running ^ b) & 0xFF] ^ (running >> 8);
        return running;
    }

    public static uint Finish(uint running) => ~running;

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Initial, data));

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
