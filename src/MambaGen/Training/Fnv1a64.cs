namespace MambaGen.Training;

/// <summary>
/// The 64-bit FNV-1a hash, fed incrementally. Training-state files carry it over their content because the
/// safetensors container has no checksum of its own, and without one a flipped bit in the weights goes unnoticed.
/// </summary>
internal struct Fnv1a64
{
    private const ulong OffsetBasis = 0xcbf29ce484222325UL;
    private const ulong Prime = 0x100000001b3UL;

    public Fnv1a64() => Value = OffsetBasis;

    public ulong Value { get; private set; }

    public void Append(ReadOnlySpan<byte> bytes)
    {
        ulong hash = Value;
        foreach (byte b in bytes)
        {
            hash ^= b;
            hash *= Prime;
        }
        Value = hash;
    }

    public static ulong Compute(ReadOnlySpan<byte> bytes)
    {
        var hash = new Fnv1a64();
        hash.Append(bytes);
        return hash.Value;
    }
}
