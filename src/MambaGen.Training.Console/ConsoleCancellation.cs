namespace MambaGen.Training;

/// <summary>
/// Turns the first Ctrl+C into a cancellation request, so a <see cref="Trainer.Run"/> stops between steps and saves
/// its state; a second Ctrl+C ends the process as usual (checkpoints are written atomically, so the last complete
/// one survives even that).
/// </summary>
public sealed class ConsoleCancellation : IDisposable
{
    private readonly CancellationTokenSource _source = new();

    /// <summary>Starts listening for Ctrl+C; <see cref="Dispose"/> stops.</summary>
    public ConsoleCancellation() => Console.CancelKeyPress += OnCancelKeyPress;

    /// <summary>Cancelled at the first Ctrl+C.</summary>
    public CancellationToken Token => _source.Token;

    private void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        if (_source.IsCancellationRequested) return;
        e.Cancel = true;
        _source.Cancel();
    }

    /// <summary>Stops listening for Ctrl+C.</summary>
    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancelKeyPress;
        _source.Dispose();
    }
}
