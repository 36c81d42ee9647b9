using System.Runtime.CompilerServices;
using System.Text;
using MambaGen.Generation;
using MambaGen.Text;
using Microsoft.Extensions.AI;

namespace MambaGen.Extensions.AI;

/// <summary>
/// A local Mamba model behind <see cref="IChatClient"/>, so an app written against Microsoft.Extensions.AI can swap it in.
/// <para>
/// Base Mamba checkpoints (state-spaces/mamba-*-hf) are plain language models: they have no chat template and were not
/// tuned to follow instructions. The messages are therefore written as a transcript (<see cref="FormatTranscript"/>)
/// that ends with <c>Assistant:</c>, the model continues it, and the reply ends where the model starts the next
/// <c>User:</c> line (<see cref="TurnSeparator"/> is always a stop sequence). Pass another formatter for a checkpoint
/// that was fine-tuned with its own format.
/// </para>
/// <para>
/// Options mapped: Temperature, TopP, TopK, MaxOutputTokens, StopSequences and Seed (folded to 32 bits); unset ones keep
/// <see cref="GenerationOptions"/>' defaults, so no temperature means greedy decoding. Tools, response formats and the
/// frequency and presence penalties are not supported and are ignored.
/// </para>
/// </summary>
public sealed class MambaChatClient : IChatClient
{
    /// <summary>Ends the assistant's turn: the model beginning the next user line.</summary>
    public const string TurnSeparator = "\nUser:";

    private readonly TextGenerator _generator;
    private readonly Func<IReadOnlyList<ChatMessage>, string> _formatPrompt;
    private readonly ChatClientMetadata _metadata;

    /// <summary>
    /// A chat client over <paramref name="generator"/>. <paramref name="modelId"/> names the model in responses (default:
    /// the model's type name); <paramref name="formatPrompt"/> turns messages into the prompt (default: <see cref="FormatTranscript"/>).
    /// </summary>
    public MambaChatClient(TextGenerator generator, string? modelId = null, Func<IReadOnlyList<ChatMessage>, string>? formatPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        _generator = generator;
        _formatPrompt = formatPrompt ?? FormatTranscript;
        _metadata = new ChatClientMetadata("MambaGen", null, modelId ?? generator.Model.GetType().Name);
    }

    /// <summary><see cref="MambaChatClient(TextGenerator, string?, Func{IReadOnlyList{ChatMessage}, string}?)"/> over a model and its tokenizer.</summary>
    public MambaChatClient(IDecodingModel model, MambaTokenizer tokenizer, string? modelId = null)
        : this(new TextGenerator(model, tokenizer), modelId) { }

    /// <summary>
    /// The default prompt: system messages as plain paragraphs, then one line per message, <c>User: …</c> or
    /// <c>Assistant: …</c> (other roles by their name), ending with <c>Assistant:</c> for the model to continue.
    /// </summary>
    public static string FormatTranscript(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = new StringBuilder();
        foreach (var message in messages.Where(m => m.Role == ChatRole.System))
            prompt.Append(message.Text.Trim()).Append("\n\n");
        foreach (var message in messages.Where(m => m.Role != ChatRole.System))
            prompt.Append(Speaker(message.Role)).Append(": ").Append(message.Text.Trim()).Append('\n');
        return prompt.Append("Assistant:").ToString();
    }

    private static string Speaker(ChatRole role) =>
        role == ChatRole.User ? "User" : role == ChatRole.Assistant ? "Assistant" : char.ToUpperInvariant(role.Value[0]) + role.Value[1..];

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var run = Start(messages, options);
        var text = new StringBuilder();
        await foreach (var piece in run.StreamAsync(cancellationToken).ConfigureAwait(false))
            text.Append(piece);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString().TrimStart()))
        {
            ModelId = _metadata.DefaultModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReasonOf(run),
            Usage = UsageOf(run),
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var run = Start(messages, options);
        string responseId = Guid.NewGuid().ToString("N");
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = responseId,
            ModelId = _metadata.DefaultModelId,
            CreatedAt = DateTimeOffset.UtcNow,
        };
        // The transcript ends in "Assistant:"; the model's reply normally starts with a space, which is dropped (as in GetResponseAsync).
        bool first = true;
        await foreach (var piece in run.StreamAsync(cancellationToken).ConfigureAwait(false))
        {
            string text = first ? piece.TrimStart() : piece;
            first &= text.Length == 0;
            if (text.Length > 0) yield return Update([new TextContent(text)]);
        }
        var last = Update([new UsageContent(UsageOf(run))]);
        last.FinishReason = FinishReasonOf(run);
        yield return last;
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(TextGenerator)) return _generator;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>The client owns nothing: the model and tokenizer belong to the caller.</summary>
    public void Dispose() { }

    private TextGenerationRun Start(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        if (list.Count == 0) throw new ArgumentException("At least one chat message is needed.", nameof(messages));
        var generation = new GenerationOptions();
        if (options is not null)
        {
            generation = generation with
            {
                Temperature = options.Temperature ?? generation.Temperature,
                TopP = options.TopP ?? generation.TopP,
                TopK = options.TopK ?? generation.TopK,
                MaxNewTokens = options.MaxOutputTokens ?? generation.MaxNewTokens,
                Seed = options.Seed is long seed ? unchecked((int)seed ^ (int)(seed >> 32)) : null,
            };
        }
        IReadOnlyList<string> stops = [TurnSeparator, .. options?.StopSequences ?? []];
        return _generator.Start(_formatPrompt(list), generation, stops);
    }

    private static ChatFinishReason FinishReasonOf(TextGenerationRun run) =>
        run.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails UsageOf(TextGenerationRun run) => new()
    {
        InputTokenCount = run.PromptTokens.Count,
        OutputTokenCount = run.GeneratedTokens.Count,
        TotalTokenCount = run.PromptTokens.Count + run.GeneratedTokens.Count,
    };
}
