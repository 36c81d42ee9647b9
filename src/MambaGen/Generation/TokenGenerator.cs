using System.Runtime.CompilerServices;

namespace MambaGen.Generation;

/// <summary>The generation entry points every generated model forwards to (see <see cref="GenerationSession"/> for how a run proceeds).</summary>
public static class TokenGenerator
{
    /// <summary>Continues <paramref name="prompt"/> and returns only the new tokens.</summary>
    public static int[] Generate(IDecodingModel model, int[] prompt, GenerationOptions? options = null) =>
        new GenerationSession(model, [prompt], options).Run()[0];

    /// <summary>Continues each prompt (lengths may differ) in one batch and returns each one's new tokens.</summary>
    public static int[][] GenerateBatch(IDecodingModel model, IReadOnlyList<int[]> prompts, GenerationOptions? options = null) =>
        new GenerationSession(model, prompts, options).Run();

    /// <summary>
    /// Continues <paramref name="prompt"/>, yielding each new token as soon as it is picked. The model runs on the thread
    /// pool; cancelling <paramref name="cancellationToken"/> stops before the next step with <see cref="OperationCanceledException"/>.
    /// Arguments are checked on the call, before enumeration starts.
    /// </summary>
    public static IAsyncEnumerable<int> GenerateStreamingAsync(IDecodingModel model, int[] prompt, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Stream(new GenerationSession(model, [prompt], options), cancellationToken);

    private static async IAsyncEnumerable<int> Stream(GenerationSession session, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var next = new int[1];
        while (await session.StepAsync(next, cancellationToken).ConfigureAwait(false))
            yield return next[0];
    }
}
