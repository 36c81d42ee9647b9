using System.Diagnostics;
using MambaGen.Cpu;

namespace MambaGen.Generation;

/// <summary>
/// One generation run over a batch of prompts, advanced a step at a time so callers can stream tokens, end a sequence
/// early (on a stop string) or read timings between steps.
/// <para>
/// How prompts of different lengths share a batch: the first <see cref="Step"/> prefills each prompt on its own through a
/// one-sequence state, in chunks of <see cref="PrefillChunk"/> tokens (one parallel scan per chunk, whose last state
/// carries over), copies that state into the prompt's slot of a batched state and samples the sequence's first token
/// from its last logits. Every later step feeds one token per running sequence through the batched state in a single
/// call. When sequences stop (a stop token, the length limit, <see cref="EndSequence"/>), the next step first moves the
/// running ones into a smaller state (<see cref="IDecodeState.CopySequenceFrom"/>), so a finished sequence costs no
/// further model work.
/// </para>
/// <para>
/// Greedy decoding without a repetition penalty picks on the device when the state can (<see cref="IGreedyDecodeState"/>,
/// the GPU): the same argmax over the same logits, with only the picked ids copied back. Sampling copies the logits back.
/// </para>
/// Sequence i samples from its own generator seeded with <see cref="GenerationOptions.Seed"/> + i, so it gets the same
/// tokens as a batch of one with that seed.
/// </summary>
public sealed class GenerationSession
{
    /// <summary>Prompt tokens per prefill call: bounds the activation memory a long prompt needs.</summary>
    public const int PrefillChunk = 2048;

    private readonly IDecodingModel _model;
    private readonly int[][] _prompts;
    private readonly GenerationOptions _options;
    private readonly int _vocab;
    private readonly bool[] _isStopToken;
    private readonly TokenSampler[] _samplers;
    private readonly List<int>[] _generated;
    private readonly FinishReason?[] _finished;
    // Per sequence, the distinct ids of prompt and output so far (for the repetition penalty; empty when it is off).
    private readonly List<int>[] _seenIds;
    private readonly bool[][] _seen;
    private readonly float[] _logits;
    // Row r of the batched state holds sequence _rowSequence[r] and is fed _feed[r], for r < _rows.
    private readonly int[] _feed;
    private readonly int[] _rowSequence;
    private int _rows;
    // Ids picked on the device by a greedy step, per row (unused when the host picks).
    private readonly int[] _picked;
    private readonly bool _pickOnDevice;
    private IDecodeState? _state;
    private int _running;
    private int _prefillTokens, _decodeTokens, _generatedTokens;
    private long _prefillTicks, _decodeTicks;

    /// <summary>Checks the prompts and options (throwing before any work) and prepares the run; no model work yet.</summary>
    public GenerationSession(IDecodingModel model, IReadOnlyList<int[]> prompts, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        _options = options ?? new GenerationOptions();
        _vocab = model.VocabularySize;
        _options.Validate(_vocab);
        if (prompts.Count == 0) throw new ArgumentException("At least one prompt is needed.", nameof(prompts));
        _model = model;
        _prompts = new int[prompts.Count][];
        for (int i = 0; i < prompts.Count; i++)
        {
            string name = prompts.Count == 1 ? "prompt" : $"prompts[{i}]";
            var prompt = prompts[i] ?? throw new ArgumentNullException(name);
            if (prompt.Length == 0) throw new ArgumentException($"{name} is empty; a prompt needs at least one token.", name);
            if (prompt.Length > GenerationOptions.MaxPromptTokens)
                throw new ArgumentOutOfRangeException(name, prompt.Length, $"{name} has {prompt.Length} tokens; the limit is {GenerationOptions.MaxPromptTokens}.");
            ModelInput.RequireTokenIds(prompt, _vocab, name);
            _prompts[i] = prompt.ToArray();
        }

        int batch = _prompts.Length;
        _isStopToken = new bool[_vocab];
        foreach (int id in _options.StopTokenIds) _isStopToken[id] = true;
        if (_options.StopAtEndOfSequence && (_options.EndOfSequenceId ?? model.EndOfSequenceId) is int eos)
        {
            if ((uint)eos >= (uint)_vocab)
                throw new ArgumentOutOfRangeException(nameof(model), eos, $"The model's end-of-sequence id {eos} is outside its vocabulary [0, {_vocab}).");
            _isStopToken[eos] = true;
        }
        int seed = _options.Seed ?? Random.Shared.Next();
        _samplers = new TokenSampler[batch];
        _generated = new List<int>[batch];
        _seenIds = new List<int>[batch];
        _seen = new bool[batch][];
        for (int i = 0; i < batch; i++)
        {
            _samplers[i] = new TokenSampler(_options.Temperature, _options.TopK, _options.TopP, unchecked(seed + i), _options.MinP);
            _generated[i] = [];
            _seenIds[i] = [];
            _seen[i] = _options.RepetitionPenalty == 1f ? [] : new bool[_vocab];
            foreach (int id in _prompts[i]) MarkSeen(i, id);
        }
        _finished = new FinishReason?[batch];
        if (_options.MaxNewTokens == 0) Array.Fill(_finished, FinishReason.Length);
        _running = _options.MaxNewTokens == 0 ? 0 : batch;
        _logits = new float[batch * _vocab];
        _feed = new int[batch];
        _rowSequence = new int[batch];
        _picked = new int[batch];
        _pickOnDevice = _options.IsGreedy && _options.RepetitionPenalty == 1f;
    }

    /// <summary>Sequences in the run.</summary>
    public int Batch => _prompts.Length;

    /// <summary>The options in force (defaults filled in).</summary>
    public GenerationOptions Options => _options;

    /// <summary>True once every sequence has stopped.</summary>
    public bool IsFinished => _running == 0;

    /// <summary>The tokens sequence <paramref name="sequence"/> has generated so far (a stop token included).</summary>
    public IReadOnlyList<int> Generated(int sequence) => _generated[sequence];

    /// <summary>Why sequence <paramref name="sequence"/> stopped, or null while it runs.</summary>
    public FinishReason? FinishReasonOf(int sequence) => _finished[sequence];

    /// <summary>Counts and timings so far.</summary>
    public GenerationStatistics Statistics => new(_prefillTokens, TimeSpan.FromTicks(_prefillTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency),
        _decodeTokens, TimeSpan.FromTicks(_decodeTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency), _generatedTokens);

    /// <summary>Stops sequence <paramref name="sequence"/> now (for example when its text reached a stop string).</summary>
    public void EndSequence(int sequence)
    {
        if ((uint)sequence >= (uint)Batch)
            throw new ArgumentOutOfRangeException(nameof(sequence), sequence, $"sequence must be in [0, {Batch}).");
        Finish(sequence, FinishReason.Ended);
    }

    /// <summary>
    /// Runs one step — the prefill on the first call, a one-token step afterwards — and writes each sequence's new token
    /// into <paramref name="next"/> (Batch values; −1 for a sequence that had already stopped). Returns false, doing
    /// nothing, once every sequence has stopped.
    /// </summary>
    public bool Step(Span<int> next)
    {
        ModelInput.RequireLength(next.Length, Batch, nameof(next));
        if (IsFinished) return false;
        long start = Stopwatch.GetTimestamp();
        bool prefill = _state is null;
        if (prefill) Prefill();
        bool picked = false;
        if (!prefill)
        {
            if (_running < _rows) DropFinishedRows();
            if (_pickOnDevice && _state is IGreedyDecodeState greedy)
            {
                greedy.StepGreedy(_feed.AsSpan(0, _rows), _picked.AsSpan(0, _rows), _options.VocabularyLimit ?? _vocab);
                picked = true;
            }
            else _model.Advance(_state!, _feed.AsSpan(0, _rows), _logits.AsSpan(0, _rows * _vocab));
            _decodeTokens += _rows;
        }
        next.Fill(-1);
        for (int row = 0; row < _rows; row++)
        {
            int sequence = _rowSequence[row];
            if (_finished[sequence] is null) next[sequence] = _feed[row] = picked ? Accept(sequence, _picked[row]) : Pick(sequence, row);
        }
        long elapsed = Stopwatch.GetTimestamp() - start;
        if (prefill) _prefillTicks += elapsed; else _decodeTicks += elapsed;
        return true;
    }

    /// <summary><see cref="Step"/> on the thread pool, so an awaiting caller (a UI, a server) is not blocked by the model.</summary>
    public Task<bool> StepAsync(int[] next, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(next);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.Run(() => Step(next), cancellationToken);
    }

    /// <summary>Runs every step and returns each sequence's generated tokens.</summary>
    public int[][] Run()
    {
        var next = new int[Batch];
        while (Step(next)) { }
        return _generated.Select(tokens => tokens.ToArray()).ToArray();
    }

    private void Prefill()
    {
        _state = _model.CreateDecodeState(Batch);
        var single = Batch == 1 ? _state : _model.CreateDecodeState(1);
        for (int i = 0; i < Batch; i++)
        {
            if (i > 0) single.Reset();
            var prompt = _prompts[i];
            var logits = _logits.AsSpan(i * _vocab, _vocab);
            for (int offset = 0; offset < prompt.Length; offset += PrefillChunk)
                _model.Advance(single, prompt.AsSpan(offset, Math.Min(PrefillChunk, prompt.Length - offset)), logits);
            if (single != _state) _state.CopySequenceFrom(single, 0, i);
            _prefillTokens += prompt.Length;
            _rowSequence[i] = i;
        }
        if (single != _state) (single as IDisposable)?.Dispose();
        _rows = Batch;
    }

    /// <summary>
    /// Moves the running sequences, in order, into a state with one row each, so stopped ones are no longer fed. The copy
    /// is a few MB per sequence for a 130M model, less than one decode step reads.
    /// </summary>
    private void DropFinishedRows()
    {
        var smaller = _model.CreateDecodeState(_running);
        int kept = 0;
        for (int row = 0; row < _rows; row++)
        {
            int sequence = _rowSequence[row];
            if (_finished[sequence] is not null) continue;
            smaller.CopySequenceFrom(_state!, row, kept);
            _rowSequence[kept] = sequence;
            _feed[kept] = _feed[row];
            kept++;
        }
        (_state as IDisposable)?.Dispose();
        _state = smaller;
        _rows = kept;
    }

    private int Pick(int sequence, int row)
    {
        var logits = _logits.AsSpan(row * _vocab, _options.VocabularyLimit ?? _vocab);
        if (_options.RepetitionPenalty != 1f)
            TokenSampler.ApplyRepetitionPenalty(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_seenIds[sequence]), _options.RepetitionPenalty);
        return Accept(sequence, _samplers[sequence].Next(logits));
    }

    /// <summary>Appends <paramref name="token"/> to the sequence's output and stops it on a stop token or at the length limit.</summary>
    private int Accept(int sequence, int token)
    {
        _generated[sequence].Add(token);
        _generatedTokens++;
        MarkSeen(sequence, token);
        if (_isStopToken[token]) Finish(sequence, FinishReason.StopToken);
        else if (_generated[sequence].Count == _options.MaxNewTokens) Finish(sequence, FinishReason.Length);
        return token;
    }

    private void MarkSeen(int sequence, int token)
    {
        var seen = _seen[sequence];
        if (seen.Length == 0 || seen[token]) return;
        seen[token] = true;
        _seenIds[sequence].Add(token);
    }

    private void Finish(int sequence, FinishReason reason)
    {
        if (_finished[sequence] is not null) return;
        _finished[sequence] = reason;
        _running--;
    }
}
