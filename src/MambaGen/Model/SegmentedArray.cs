namespace MambaGen;

/// <summary>
/// A sparse or dense flat vector held as arrays ("blocks") that each start at a <c>long</c> offset of the flat
/// vector: the layout's <see cref="ParameterLayout.Segments"/>, or one block per tensor kept in fp32 by a 16-bit-only
/// model. A span never crosses a block, because no tensor crosses a segment.
/// </summary>
internal sealed class SegmentedArray<T>
{
    private readonly long[] _starts;
    private readonly T[][] _blocks;

    /// <summary>Blocks starting at <paramref name="starts"/> (ascending, non-overlapping).</summary>
    public SegmentedArray(long[] starts, T[][] blocks)
    {
        if (starts.Length != blocks.Length) throw new ArgumentException($"{starts.Length} starts for {blocks.Length} blocks.", nameof(blocks));
        for (int i = 1; i < starts.Length; i++)
            if (starts[i] < starts[i - 1] + blocks[i - 1].Length)
                throw new ArgumentException($"Block {i} starts at {starts[i]}, inside block {i - 1}.", nameof(starts));
        _starts = starts;
        _blocks = blocks;
    }

    /// <summary>One zero-filled block per segment of <paramref name="layout"/>.</summary>
    public static SegmentedArray<T> ForSegments(ParameterLayout layout) => new(
        layout.Segments.Select(s => s.Start).ToArray(),
        layout.Segments.Select(s => new T[s.Length]).ToArray());

    /// <summary>The blocks, in order.</summary>
    public IReadOnlyList<T[]> Blocks => _blocks;

    /// <summary>Flat offset of each block's first element.</summary>
    public IReadOnlyList<long> Starts => _starts;

    /// <summary>The <paramref name="length"/> elements from flat <paramref name="offset"/>, if one block holds all of them.</summary>
    public bool TryGetSpan(long offset, int length, out Span<T> span)
    {
        bool found = TryGetMemory(offset, length, out var memory);
        span = memory.Span;
        return found;
    }

    /// <summary>As <see cref="TryGetSpan"/>, as memory (for writers that keep it past a stack frame).</summary>
    public bool TryGetMemory(long offset, int length, out Memory<T> memory)
    {
        int index = Array.BinarySearch(_starts, offset);
        if (index < 0) index = ~index - 1;
        if (index >= 0 && length >= 0 && offset - _starts[index] + length <= _blocks[index].Length)
        {
            memory = _blocks[index].AsMemory((int)(offset - _starts[index]), length);
            return true;
        }
        memory = default;
        return false;
    }
}
