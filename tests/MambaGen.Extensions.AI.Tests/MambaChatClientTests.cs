using MambaGen.Generation;
using MambaGen.Text;
using MambaGen.Text.Tests;
using Microsoft.Extensions.AI;

namespace MambaGen.Extensions.AI.Tests;

/// <summary>Random weights, vocabulary of the tokenizer fixture (1,607 ids): plumbing, not text quality.</summary>
[MambaModel(DModel = 16, Layers = 2, Vocab = 1607)]
[SelectiveSsm(DState = 4, Expand = 2)]
public partial class ChatTestModel { }

public class MambaChatClientTests
{
    private static readonly MambaTokenizer Tokenizer = MambaTokenizer.FromFile(Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer", "tokenizer.json"));
    private static readonly ChatTestModel Model = ChatTestModel.Create(seed: 5);

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You are terse."),
        new(ChatRole.User, "Hi"),
        new(ChatRole.Assistant, "Hello."),
        new(ChatRole.User, "Name a colour."),
    ];

    /// <summary>A client whose model "says" <paramref name="reply"/> and then repeats its last token.</summary>
    private static MambaChatClient Replying(string reply) =>
        new(new ReplayModel(Tokenizer.VocabularySize, 0, Tokenizer.Encode(reply)), Tokenizer, "replay");

    [Fact]
    public void TheTranscriptFormatIsAsDocumented()
    {
        Assert.Equal("You are terse.\n\nUser: Hi\nAssistant: Hello.\nUser: Name a colour.\nAssistant:", MambaChatClient.FormatTranscript(Conversation));
    }

    [Fact]
    public async Task TheReplyEndsWhereTheModelStartsTheNextUserTurn()
    {
        var response = await Replying(" Blue, of course.\nUser: and").GetResponseAsync(Conversation);
        Assert.Equal("Blue, of course.", response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal("replay", response.ModelId);
        Assert.Equal(Tokenizer.Encode(MambaChatClient.FormatTranscript(Conversation)).Length, response.Usage!.InputTokenCount);
        Assert.True(response.Usage.OutputTokenCount > 0);
    }

    [Fact]
    public async Task StreamingGivesTheSameTextAndEndsWithFinishReasonAndUsage()
    {
        var client = Replying(" Green 🌿 leaves.\nUser:");
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation)) updates.Add(update);
        Assert.Equal("Green 🌿 leaves.", string.Concat(updates.Select(u => u.Text)));
        Assert.True(updates.Count > 2);
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        var last = updates[^1];
        Assert.Equal(ChatFinishReason.Stop, last.FinishReason);
        var usage = Assert.IsType<UsageContent>(Assert.Single(last.Contents));
        Assert.True(usage.Details.OutputTokenCount > 0);
    }

    [Fact]
    public async Task OptionsAreMapped()
    {
        // MaxOutputTokens bounds the reply and reports Length; StopSequences end it early.
        var limited = await Replying(" one two three four five six").GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 2 });
        Assert.Equal(ChatFinishReason.Length, limited.FinishReason);
        Assert.Equal(2, limited.Usage!.OutputTokenCount);
        var stopped = await Replying(" one two three four").GetResponseAsync(Conversation, new ChatOptions { StopSequences = [" three"] });
        Assert.Equal("one two", stopped.Text);

        // Seed and temperature: the same seed gives the same reply; TopK = 1 leaves only the greedy choice.
        var client = new MambaChatClient(Model, Tokenizer);
        ChatOptions Sampling(long seed) => new() { Temperature = 1.5f, TopP = 0.98f, Seed = seed, MaxOutputTokens = 24, StopSequences = ["\u0001"] };
        var a = await client.GetResponseAsync(Conversation, Sampling(1));
        Assert.Equal(a.Text, (await client.GetResponseAsync(Conversation, Sampling(1))).Text);
        var replies = new HashSet<string>();
        for (long seed = 2; seed < 6; seed++) replies.Add((await client.GetResponseAsync(Conversation, Sampling(seed))).Text);
        Assert.True(replies.Count > 1, "different seeds gave the same reply every time");
        var greedy = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 12 });
        var topK1 = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 12, Temperature = 3f, TopK = 1, Seed = 9 });
        Assert.Equal(greedy.Text, topK1.Text);
        Assert.Equal(greedy.Usage!.OutputTokenCount, topK1.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task CancellationStopsTheStream()
    {
        var client = new MambaChatClient(Model, Tokenizer);
        using var cancel = new CancellationTokenSource();
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 100_000 }, cancel.Token))
                if (++updates == 2) cancel.Cancel();
        });
        Assert.Equal(2, updates);
        cancel.Dispose();
        using var already = new CancellationTokenSource();
        already.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(Conversation, cancellationToken: already.Token));
    }

    [Fact]
    public async Task ServicesAndBadInput()
    {
        IChatClient client = new MambaChatClient(Model, Tokenizer);
        Assert.Equal(nameof(ChatTestModel), client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.NotNull(client.GetService<TextGenerator>());
        Assert.Null(client.GetService<IChatClient>("some key"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Conversation, new ChatOptions { TopP = 0 }));
    }
}
