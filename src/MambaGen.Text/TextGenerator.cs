using System.Runtime.CompilerServices;
using MambaGen.Generation;

namespace MambaGen.Text;

/// <summary>
/// Text in, text out: encodes a prompt with a <see cref="MambaTokenizer"/>, continues it with a model and streams the
/// new text in pieces that never split a character. Stop strings end the text before they occur; stop tokens (the
/// end-of-sequence id among them) end it too, and their text is not emitted.
/// </summary>
public sealed class TextGenerator
{
    /// <summary>The model generating tokens.</summary>
    public IDecodingModel Model { get; }

    /// <summary>The tokenizer encoding prompts and decoding the output.</summary>
    public MambaTokenizer Tokenizer { get; }

    /// <summary>Pairs a model with a tokenizer whose ids fit its vocabulary (the model's may be larger: padded).</summary>
    public TextGenerator(IDecodingModel model, MambaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (tokenizer.VocabularySize > model.VocabularySize)
            throw new ArgumentException(
                $"The tokenizer ({tokenizer.SourcePath}) has {tokenizer.VocabularySize} tokens but the model's vocabulary has only {model.VocabularySize}; they do not belong together.",
                nameof(tokenizer));
        Model = model;
        Tokenizer = tokenizer;
    }

    /// <summary>
    /// Prepares a generation from <paramref name="prompt"/>: encodes it and checks every argument, but runs nothing until
    /// the returned run is enumerated. The run exposes the prompt's tokens and, as it goes, counts and timings.
    /// </summary>
    public TextGenerationRun Start(string prompt, GenerationOptions? options = null, IReadOnlyList<string>? stopStrings = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var stops = (stopStrings ?? []).ToArray();
        for (int i = 0; i < stops.Length; i++)
            if (string.IsNullOrEmpty(stops[i]))
                throw new ArgumentException($"stopStrings[{i}] is {(stops[i] is null ? "null" : "empty")}; a stop string needs at least one character.", nameof(stopStrings));
        options ??= new GenerationOptions();
        options = options with
        {
            VocabularyLimit = options.VocabularyLimit ?? Tokenizer.VocabularySize,
            // A model whose config names no end-of-sequence id still stops at the tokenizer's.
            EndOfSequenceId = options.EndOfSequenceId ?? Model.EndOfSequenceId ?? Tokenizer.EndOfSequenceId,
        };
        var tokens = Tokenizer.Encode(prompt);
        if (tokens.Length == 0)
            throw new ArgumentException("The prompt encodes to no tokens; a prompt needs at least one.", nameof(prompt));
        return new TextGenerationRun(new GenerationSession(Model, [tokens], options), tokens, Tokenizer.CreateStreamingDecoder(skipSpecialTokens: true), stops);
    }

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/> as text pieces (the model runs on the thread pool).
    /// Cancelling stops before the next step with <see cref="OperationCanceledException"/>. Arguments are checked on the call.
    /// </summary>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions? options = null, IReadOnlyList<string>? stopStrings = null,
        CancellationToken cancellationToken = default) =>
        Start(prompt, options, stopStrings).StreamAsync(cancellationToken);

    /// <summary>The whole continuation of <paramref name="prompt"/> at once, on the calling thread.</summary>
    public string Generate(string prompt, GenerationOptions? options = null, IReadOnlyList<string>? stopStrings = null) =>
        Start(prompt, options, stopStrings).ReadToEnd();
}

/// <summary>
/// One text generation (from <see cref="TextGenerator.Start"/>): read it once, with <see cref="StreamAsync"/> or
/// <see cref="ReadToEnd"/>.
/// </summary>
public sealed class TextGenerationRun
{
    private readonly GenerationSession _session;
    private readonly StreamingDecoder _decoder;
    private readonly string[] _stopStrings;
    private readonly int[] _next = new int[1];
    // Decoded text not yet emitted: it ends in something that may be the start of a stop string.
    private string _held = "";
    private bool _started, _done;

    internal TextGenerationRun(GenerationSession session, int[] promptTokens, StreamingDecoder decoder, string[] stopStrings)
    {
        _session = session;
        PromptTokens = promptTokens;
        _decoder = decoder;
        _stopStrings = stopStrings;
    }

    /// <summary>The prompt's token ids.</summary>
    public IReadOnlyList<int> PromptTokens { get; }

    /// <summary>The token ids generated so far (a stop token included).</summary>
    public IReadOnlyList<int> GeneratedTokens => _session.Generated(0);

    /// <summary>Prefill and decode counts and timings so far.</summary>
    public GenerationStatistics Statistics => _session.Statistics;

    /// <summary>Why generation ended (<see cref="Generation.FinishReason.Ended"/>: a stop string); null while it runs.</summary>
    public FinishReason? FinishReason => _session.FinishReasonOf(0);

    /// <summary>Whether the text ended at one of the stop strings.</summary>
    public bool StoppedAtStopString { get; private set; }

    /// <summary>The text pieces as they are generated; the model runs on the thread pool.</summary>
    public async IAsyncEnumerable<string> StreamAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        BeginReading();
        while (!_done)
        {
            bool produced = await _session.StepAsync(_next, cancellationToken).ConfigureAwait(false);
            string piece = Consume(produced);
            if (piece.Length > 0) yield return piece;
        }
    }

    /// <summary>Runs to the end on the calling thread and returns the whole text.</summary>
    public string ReadToEnd()
    {
        BeginReading();
        var text = new System.Text.StringBuilder();
        while (!_done) text.Append(Consume(_session.Step(_next)));
        return text.ToString();
    }

    private void BeginReading()
    {
        if (_started) throw new InvalidOperationException("This generation has already been read; start a new one.");
        _started = true;
    }

    /// <summary>Takes the outcome of one step and returns the text that is now safe to emit.</summary>
    private string Consume(bool produced)
    {
        if (produced && _session.FinishReasonOf(0) != Generation.FinishReason.StopToken)
            _held += _decoder.Append(_next[0]);
        bool last = !produced || _session.IsFinished;
        if (last) _held += _decoder.Flush();

        int stop = FirstStop(_held);
        if (stop >= 0)
        {
            StoppedAtStopString = true;
            if (!_session.IsFinished) _session.EndSequence(0);
            _done = true;
            return _held[..stop];
        }
        if (last)
        {
            _done = true;
            return _held;
        }
        int keep = LongestStopPrefixSuffix(_held);
        string ready = _held[..^keep];
        _held = _held[^keep..];
        return ready;
    }

    private int FirstStop(string text)
    {
        int first = -1;
        foreach (var stop in _stopStrings)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        return first;
    }

    /// <summary>
    /// Length of the longest end of <paramref name="text"/> that begins some stop string: it must be held back, since the
    /// next tokens may complete the stop string. Every earlier position can start no stop string, so it is safe to emit.
    /// </summary>
    private int LongestStopPrefixSuffix(string text)
    {
        int longest = 0;
        foreach (var stop in _stopStrings)
            for (int length = Math.Min(stop.Length - 1, text.Length); length > longest; length--)
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
        return longest;
    }
}
