namespace Saber;

/// <summary>
/// The decode state of a batch on the CPU and the step rules of every strategy (spec §3–§5).
/// A step first computes every row it needs (where bad logits throw), and only then changes state,
/// so a failed step leaves the batch exactly as it was.
/// </summary>
internal sealed class DecodeBatch : IDisposable
{
    /// <summary>Below this many logits per step, rows are computed on the calling thread.</summary>
    private const long ParallelThreshold = 1 << 16;

    private readonly SequenceState[] sequences;
    private readonly int vocabulary;
    private readonly int maskId;
    private readonly int maxDegreeOfParallelism;
    private readonly List<int> active = [];
    private readonly IDenoiser? denoiser;
    private DenoiseRequest? pending;

    public DecodeOptions Options { get; }

    /// <summary>Steps applied so far.</summary>
    public int Step { get; private set; }

    public bool Finished => active.Count == 0;

    public IReadOnlyList<int> ActiveSequences => active;

    private DecodeBatch(DecodeOptions options, SequenceState[] sequences, int vocabulary, int maskId, int maxDegreeOfParallelism, IDenoiser? denoiser)
    {
        this.denoiser = denoiser;
        Options = options;
        this.sequences = sequences;
        this.vocabulary = vocabulary;
        this.maskId = maskId;
        this.maxDegreeOfParallelism = maxDegreeOfParallelism;
        for (int i = 0; i < sequences.Length; i++)
            active.Add(i);
    }

    /// <summary>Validates everything of spec §7 that is known before the first model call, then sets up the canvases.</summary>
    public static DecodeBatch Create(IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, int vocabulary, int maskId, int maxDegreeOfParallelism = -1,
        int? maxSequenceLength = null)
    {
        DecodeInputs.Validate(prompts, options, vocabulary, maskId, maxSequenceLength);
        var states = new SequenceState[prompts.Count];
        for (int b = 0; b < states.Length; b++)
            states[b] = new SequenceState(prompts[b].Span, options, maskId);
        return new DecodeBatch(options, states, vocabulary, maskId, maxDegreeOfParallelism, null);
    }

    /// <summary>
    /// A batch decoded with <paramref name="denoiser"/>: validated as <see cref="Create(IReadOnlyList{ReadOnlyMemory{int}}, DecodeOptions, int, int, int, int?)"/>,
    /// and with a cache per sequence when the options ask for one (all made before the first call, or none: a cache that
    /// does not fit releases the ones made).
    /// </summary>
    public static DecodeBatch Create(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(denoiser);
        DecodeInputs.Validate(prompts, options, denoiser.VocabularySize, denoiser.MaskId, denoiser.MaxSequenceLength);
        var states = new SequenceState[prompts.Count];
        try
        {
            for (int b = 0; b < states.Length; b++)
                states[b] = new SequenceState(prompts[b].Span, options, denoiser.MaskId,
                    CachingDenoisers.CreateCache(denoiser, options.Cache, prompts[b].Length + options.GenerationLength));
        }
        catch
        {
            foreach (SequenceState? state in states) state?.Cache?.Dispose();
            throw;
        }
        return new DecodeBatch(options, states, denoiser.VocabularySize, denoiser.MaskId, maxDegreeOfParallelism, denoiser);
    }

    /// <summary>The model call for the next step: the canvases of the sequences still decoding.</summary>
    /// <remarks>Planned once per step: asking again before <see cref="Apply"/> returns the same request.</remarks>
    public DenoiseRequest NextRequest()
    {
        if (pending is not null) return pending;
        var canvases = new ReadOnlyMemory<int>[active.Count];
        var logitsFrom = new int[active.Count];
        var windows = new CacheWindow?[active.Count];
        for (int i = 0; i < canvases.Length; i++)
        {
            canvases[i] = sequences[active[i]].Canvas;
            logitsFrom[i] = sequences[active[i]].PromptLength;   // no strategy reads a prompt row
            windows[i] = sequences[active[i]].PlanWindow();
        }
        return pending = new DenoiseRequest(Step + 1, active.ToArray(), canvases)
        {
            LogitsFrom = logitsFrom,
            Windows = Options.Cache.Enabled ? windows : null,
        };
    }

    /// <summary>Applies one step given the model's logits for <see cref="NextRequest"/>'s canvases.</summary>
    /// <returns>What the step did to each sequence that was active in it.</returns>
    public IReadOnlyList<SequenceStep> Apply(IReadOnlyList<SequenceLogits> logits, bool snapshots)
    {
        int step = Step + 1;
        DenoiseRequest request = NextRequest();   // the request these logits answer
        DecodeInputs.CheckLogits(request, vocabulary, logits);
        ComputeRows(logits, step);
        if (denoiser is not null)
            for (int slot = 0; slot < active.Count; slot++)
                sequences[active[slot]].CountPass(denoiser, request.Windows?[slot], logits[slot].Rows);
        pending = null;

        var updates = new List<SequenceStep>(active.Count);
        var stillActive = new List<int>(active.Count);
        foreach (int b in active)
        {
            SequenceState sequence = sequences[b];
            StepTrace trace = sequence.Decide(step);
            if (Options.Trace)
                sequence.Trace.Add(trace);
            updates.Add(new SequenceStep(b, snapshots ? (int[])sequence.Canvas.Clone() : sequence.Canvas, trace, sequence.Finished)
            {
                RemaskStatistics = sequence.RemaskStatistics,
            });
            if (!sequence.Finished)
                stillActive.Add(b);
            else
                sequence.Cache?.Dispose();
        }
        active.Clear();
        active.AddRange(stillActive);
        Step = step;
        return updates;
    }

    public DecodeResult ToResult(TimeSpan elapsed) => new(sequences.Select(s => s.ToResult()).ToArray(), elapsed);

    /// <summary>Releases every sequence's cache (a finished sequence's is released when it finishes).</summary>
    public void Dispose()
    {
        foreach (SequenceState sequence in sequences) sequence.Cache?.Dispose();
    }

    private void ComputeRows(IReadOnlyList<SequenceLogits> logits, int step)
    {
        // Work items: (index into active, canvas position), in batch then position order.
        var work = new List<(int Slot, int Position)>();
        for (int slot = 0; slot < active.Count; slot++)
        {
            SequenceState sequence = sequences[active[slot]];
            for (int pos = sequence.FirstRowToRead(); pos < sequence.ActiveEnd; pos++)
                if (sequence.NeedsRow(pos))
                    work.Add((slot, pos));
        }

        var errors = new Exception?[work.Count];
        void Row(int w)
        {
            var (slot, pos) = work[w];
            int b = active[slot];
            SequenceState sequence = sequences[b];
            try
            {
                sequence.Rows[pos - sequence.PromptLength] = RowConfidenceKernel.Compute(logits[slot], pos, maskId, sequence.TokenToScore(pos),
                    sequence.Metric, Options.Temperature, Options.Seed, new RowCoordinates(step, b, pos));
            }
            catch (InvalidLogitsException e)
            {
                errors[w] = e;
            }
        }

        if ((long)work.Count * vocabulary < ParallelThreshold || work.Count == 1)
        {
            for (int w = 0; w < work.Count; w++) Row(w);
        }
        else
        {
            Parallel.For(0, work.Count, new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism }, Row);
        }

        // Report the first bad row in (sequence, position) order, whichever thread found it.
        foreach (Exception? e in errors)
            if (e is not null)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
    }
}
