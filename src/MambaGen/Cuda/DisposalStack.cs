namespace MambaGen.Cuda;

/// <summary>
/// Resources made one after another and freed together, the last made first (a buffer before the context it lives
/// in). A constructor owns what it makes through one of these and disposes it when a later step throws, so nothing
/// leaks; a set of buffers uses one as its whole <see cref="IDisposable.Dispose"/>.
/// </summary>
internal sealed class DisposalStack : IDisposable
{
    private readonly List<IDisposable> _items = [];

    /// <summary>Adds <paramref name="resource"/> to be freed with the rest and returns it.</summary>
    public T Own<T>(T resource) where T : IDisposable
    {
        _items.Add(resource);
        return resource;
    }

    /// <summary>Frees everything owned so far, in reverse order of making; the stack can be used again afterwards.</summary>
    public void Dispose()
    {
        for (int i = _items.Count - 1; i >= 0; i--) _items[i].Dispose();
        _items.Clear();
    }
}
