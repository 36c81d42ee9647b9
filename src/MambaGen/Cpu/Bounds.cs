namespace MambaGen.Cpu;

/// <summary>The one check a kernel makes before reading a buffer without bounds checks.</summary>
public static class Bounds
{
    public static void Require(int available, int needed, string buffer)
    {
        if (available < needed)
            throw new ArgumentException($"Kernel buffer '{buffer}' has {available} values but the call needs {needed}.", buffer);
    }
}
