namespace Saber;

/// <summary>
/// The decode state of a batch on the CPU and the step rules of every strategy (spec §3–§5).
/// A step first computes every row it needs (where bad logits throw), and only then changes state,
/// so a failed step leaves the batch exactly as it was.
/// </summary>
internal sealed class DecodeBatch
{
    /// <summary>Below this many logits per step, rows are computed on the calling thread.</summary>
    private const long ParallelThreshold = 1 << 16;

    private readonly SequenceState[] sequences;
    private readonly int vocabulary;
    private readonly int maskId;
    private readonly int maxDegreeOfParallelism;
    private readonly List<int> active = [];

    public DecodeOptions Options { get; }

    /// <summary>Steps applied so far.</summary>
    public int Step { get; private set; }

    public bool Finished => active.Count == 0;

    public IReadOnlyList<int> ActiveSequences => active;

    private DecodeBatch(DecodeOptions options, SequenceState[] sequences, int vocabulary, int maskId, int maxDegreeOfParallelism)
    {
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
        return new DecodeBatch(options, states, vocabulary, maskId, maxDegreeOfParallelism);
    }

    /// <summary>The model call for the next step: the canvases of the sequences still decoding.</summary>
    public DenoiseRequest NextRequest()
    {
        var canvases = new ReadOnlyMemory<int>[active.Count];
        var logitsFrom = new int[active.Count];
        for (int i = 0; i < canvases.Length; i++)
        {
            canvases[i] = sequences[active[i]].Canvas;
            logitsFrom[i] = sequences[active[i]].PromptLength;   // no strategy reads a prompt row
        }
        return new DenoiseRequest(Step + 1, active.ToArray(), canvases) { LogitsFrom = logitsFrom };
    }

    /// <summary>Applies one step given the model's logits for <see cref="NextRequest"/>'s canvases.</summary>
    /// <returns>What the step did to each sequence that was active in it.</returns>
    public IReadOnlyList<SequenceStep> Apply(IReadOnlyList<SequenceLogits> logits, bool snapshots)
    {
        int step = Step + 1;
        DecodeInputs.CheckLogits(NextRequest(), vocabulary, logits);   // the request these logits answer
        ComputeRows(logits, step);

        var updates = new List<SequenceStep>(active.Count);
        var stillActive = new List<int>(active.Count);
        foreach (int b in active)
        {
            SequenceState sequence = sequences[b];
            StepTrace trace = sequence.Decide(step);
            if (Options.Trace)
                sequence.Trace.Add(trace);
            updates.Add(new SequenceStep(b, snapshots ? (int[])sequence.Canvas.Clone() : sequence.Canvas, trace, sequence.Finished));
            if (!sequence.Finished)
                stillActive.Add(b);
        }
        active.Clear();
        active.AddRange(stillActive);
        Step = step;
        return updates;
    }

    public DecodeResult ToResult(TimeSpan elapsed) =>
        new(sequences.Select(s => new SequenceResult((int[])s.Canvas.Clone(), s.PromptLength, s.Nfe, s.Trace.ToArray())).ToArray(), elapsed);

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
