namespace Saber;

/// <summary>One sequence's canvas and per-position decode state, and the step rules that change them.</summary>
internal sealed class SequenceState
{
    private readonly DecodeOptions options;
    private readonly int maskId;
    private readonly int generationLength;
    private readonly int blockLength;
    private readonly int blockCount;

    // Per generation position g (canvas position P + g).
    private readonly bool[] decoded;
    private readonly float[] commitConfidence;   // f
    private readonly bool[] commitSet;           // f is set
    private readonly float[] previous;           // cprev
    private readonly float[] delta;              // Δ of the current step
    private readonly RemaskCounter remasks;      // kept for every decode: the statistics do not need the trace

    // Scratch for selections, reused every step.
    private readonly List<int> selection = [];
    private readonly List<int> candidates = [];

    private int block;                // active block index
    private int blockStep;            // low-confidence: steps taken in the active block
    private int blockMasked;          // low-confidence: masked positions when the block started

    /// <param name="cache">The sequence's cache, made by the denoiser for this canvas; null without caching. The state owns it.</param>
    public SequenceState(ReadOnlySpan<int> prompt, DecodeOptions options, int maskId, IDenoiserCache? cache = null)
    {
        this.options = options;
        this.maskId = maskId;
        generationLength = options.GenerationLength;
        blockLength = options.EffectiveBlockLength;
        blockCount = generationLength / blockLength;
        PromptLength = prompt.Length;
        Canvas = new int[prompt.Length + generationLength];
        prompt.CopyTo(Canvas);
        Canvas.AsSpan(prompt.Length).Fill(maskId);
        decoded = new bool[generationLength];
        commitConfidence = new float[generationLength];
        commitSet = new bool[generationLength];
        previous = new float[generationLength];
        delta = new float[generationLength];
        remasks = new RemaskCounter(prompt.Length, generationLength);
        Rows = new RowConfidence[generationLength];
        Metric = options.Strategy is LowConfidenceStrategy lc ? lc.Metric : ConfidenceMetric.MaxProb;
        blockMasked = blockLength;
        if (cache is not null)
            AttachCache(cache);
    }

    /// <summary>The cache plan, when the decode caches keys and values.</summary>
    public SequenceCache? Cache { get; private set; }

    /// <summary>Gives the sequence its cache (before its first call; a service makes it when the request starts running).</summary>
    public void AttachCache(IDenoiserCache cache)
    {
        if (Cache is not null || Nfe > 0)
            throw new InvalidOperationException("A sequence gets its cache once, before its first call.");
        Cache = new SequenceCache(options.Cache, cache, Canvas.Length, maskId);
    }

    /// <summary>Model FLOPs of the calls so far (this sequence's positions); null once a call's FLOPs were unknown.</summary>
    public long? ForwardFlops { get; private set; } = 0;

    /// <summary>The window of the next call (null without a cache); only the rows it computes are read.</summary>
    public CacheWindow? PlanWindow() => Cache?.Plan(Canvas, PromptLength, block, BlockStart, ActiveEnd, blockLength);

    /// <summary>
    /// Counts one call's FLOPs: <paramref name="denoiser"/>'s <see cref="IDenoiser.PassFlops"/> for the positions it computed
    /// (<paramref name="window"/>'s queries, else the canvas) and the logits rows it returned.
    /// </summary>
    public void CountPass(IDenoiser denoiser, CacheWindow? window, int logitsRows)
    {
        int queries = window?.Queries.Length ?? Canvas.Length;
        long? flops = denoiser.PassFlops(Canvas.Length, queries, logitsRows);
        ForwardFlops = ForwardFlops is long sum && flops is long f ? sum + f : null;
        // The extra positions are generation positions, each with its logits row: without them the call has that many fewer of both.
        if (window is not null && Cache!.LastExtra > 0)
            Cache.AddRefreshFlops(flops - denoiser.PassFlops(Canvas.Length, queries - Cache.LastExtra, Math.Max(0, logitsRows - Cache.LastExtra)));
    }

    /// <summary>The result of the decode so far.</summary>
    public SequenceResult ToResult() =>
        new((int[])Canvas.Clone(), PromptLength, Nfe, Trace.ToArray())
        {
            ForwardFlops = ForwardFlops,
            Cache = Cache?.Statistics,
            RemaskStatistics = RemaskStatistics,
        };

    /// <summary>What re-masking did so far.</summary>
    public RemaskStatistics RemaskStatistics => remasks.Statistics;

    public int[] Canvas { get; }
    public int PromptLength { get; }
    public int Nfe { get; private set; }
    public bool Finished { get; private set; }
    public List<StepTrace> Trace { get; } = [];

    /// <summary>This step's row results, indexed by generation position.</summary>
    public RowConfidence[] Rows { get; }

    public ConfidenceMetric Metric { get; }

    /// <summary><c>e = P + (b+1)·K</c>.</summary>
    public int ActiveEnd => PromptLength + (block + 1) * blockLength;

    /// <summary>Canvas position of the active block's first position.</summary>
    public int BlockStart => PromptLength + block * blockLength;

    /// <summary>Whether this step's row of <paramref name="position"/> was computed: always without a cache; with one, only the window's.</summary>
    private bool Observed(int position) => Cache?.Computed(position) ?? true;

    /// <summary>Saber reads every generation row before <c>e</c>; the baselines only the active block.</summary>
    public int FirstRowToRead() => options.Strategy is SaberStrategy ? PromptLength : BlockStart;

    /// <summary>Saber tracks decoded positions too; the baselines only score masked ones.</summary>
    public bool NeedsRow(int position) => (options.Strategy is SaberStrategy || !decoded[position - PromptLength]) && Observed(position);

    /// <summary>The token whose probability <c>q</c> is needed (Saber paper variant, decoded positions), or -1.</summary>
    public int TokenToScore(int position) =>
        options.Strategy is SaberStrategy { Variant: SaberVariant.Paper } && decoded[position - PromptLength] ? Canvas[position] : -1;

    /// <summary>Applies the strategy's step rule to the rows computed for this step.</summary>
    public StepTrace Decide(int step)
    {
        Nfe++;
        return options.Strategy switch
        {
            SaberStrategy saber => SaberStep(step, saber),
            LowConfidenceStrategy lc => LowConfidenceStep(step, lc),
            ThresholdStrategy threshold => ThresholdStep(step, threshold),
            FactorStrategy factor => FactorStep(step, factor),
            _ => throw new NotSupportedException($"Unknown strategy {options.Strategy.GetType().Name}."),
        };
    }

    private StepTrace SaberStep(int step, SaberStrategy saber)
    {
        int end = ActiveEnd - PromptLength; // active end as a generation index
        bool paper = saber.Variant == SaberVariant.Paper;

        // 1–2: tracked confidence, its change, and the new previous value. With a cache, a position outside the call's
        // window has no row this step: it keeps its previous value and has no change (it cannot be re-masked this step).
        for (int g = 0; g < generationLength; g++)
        {
            if (g < end && !Observed(PromptLength + g))
            {
                delta[g] = float.NaN;
                continue;
            }
            float a = g >= end ? float.NegativeInfinity
                : paper && decoded[g] ? Rows[g].TokenConfidence
                : Rows[g].Confidence;
            float d = a - previous[g];
            delta[g] = float.IsFinite(d) ? d : float.PositiveInfinity;
            previous[g] = a;
        }

        // 3: τ, the mean commit confidence over the commit set (1 when empty).
        double sum = 0;
        int count = 0;
        for (int g = 0; g < end; g++)
        {
            if (paper ? decoded[g] : commitSet[g])
            {
                sum += commitConfidence[g];
                count++;
            }
        }
        double tau = count == 0 ? 1.0 : sum / count;
        double threshold = saber.FixedThreshold ?? tau;

        // 4: draft.
        selection.Clear();
        int undecoded = 0;
        for (int g = 0; g < end; g++)
        {
            if (decoded[g]) continue;
            undecoded++;
            if (Rows[g].Confidence > threshold)
                selection.Add(g);
        }
        if (selection.Count < saber.MinTokensPerStep)
            TopUndecodedByConfidence(end, Math.Min(saber.MinTokensPerStep, undecoded), g => Rows[g].Confidence);

        // 5: commit.
        var committed = Commit(selection, setCommitConfidence: true);
        int drafted = selection.Count;

        // 6: finished, or block complete (no re-masking), or 7: re-mask.
        var remasked = new List<RemaskedToken>();
        if (!AdvanceIfBlockDone(end) && saber.Backtracking)
        {
            int m = paper
                ? Math.Min(Math.Max(1, drafted / saber.RemaskDivisor), drafted - 1)
                : Math.Min(Math.Max(saber.MinTokensPerStep / 2, (drafted + saber.RemaskDivisor - 1) / saber.RemaskDivisor), drafted - 1);
            if (m > 0)
            {
                candidates.Clear();
                for (int g = 0; g < end; g++)
                    if (decoded[g] && !(paper && selection.Contains(g)) && !float.IsNaN(delta[g]))
                        candidates.Add(g);
                // Bottom-m by Δ: ascending Δ, then ascending position.
                candidates.Sort((x, y) => delta[x] != delta[y] ? delta[x].CompareTo(delta[y]) : x.CompareTo(y));
                int take = Math.Min(m, candidates.Count);
                var chosen = candidates.GetRange(0, take);
                chosen.Sort();
                foreach (int g in chosen)
                {
                    remasks.Remasked(PromptLength + g);
                    Canvas[PromptLength + g] = maskId;
                    decoded[g] = false;
                    if (paper) commitSet[g] = false;
                    remasked.Add(new RemaskedToken(PromptLength + g, delta[g]));
                    Cache?.Remasked(PromptLength + g, BlockStart);
                }
            }
        }
        return new StepTrace(step, threshold, committed, remasked);
    }

    private StepTrace LowConfidenceStep(int step, LowConfidenceStrategy lc)
    {
        int end = ActiveEnd - PromptLength;
        int stepsPerBlock = lc.Steps / blockCount;
        int quota = blockMasked / stepsPerBlock + (blockStep < blockMasked % stepsPerBlock ? 1 : 0);
        selection.Clear();
        TopUndecodedByConfidence(end, quota, g => Rows[g].Metric, from: BlockStart - PromptLength);
        var committed = Commit(selection, setCommitConfidence: false);
        if (++blockStep == stepsPerBlock)
        {
            blockStep = 0;
            block++;
            blockMasked = blockLength;
            Finished = block == blockCount;
        }
        return new StepTrace(step, null, committed, []);
    }

    private StepTrace ThresholdStep(int step, ThresholdStrategy threshold)
    {
        int end = ActiveEnd - PromptLength;
        int from = BlockStart - PromptLength;
        selection.Clear();
        for (int g = from; g < end; g++)
            if (!decoded[g] && Rows[g].Confidence >= threshold.Threshold)
                selection.Add(g);
        if (selection.Count == 0)
            TopUndecodedByConfidence(end, 1, g => Rows[g].Confidence, from);
        var committed = Commit(selection, setCommitConfidence: false);
        AdvanceIfBlockDone(end);
        return new StepTrace(step, null, committed, []);
    }

    private StepTrace FactorStep(int step, FactorStrategy factor)
    {
        int end = ActiveEnd - PromptLength;
        int from = BlockStart - PromptLength;
        RankUndecoded(end, g => Rows[g].Confidence, from);
        int masked = candidates.Count;
        // Rank 1 always passes; the passing ranks are a prefix (c falls and the threshold rises with the rank).
        int passing = Math.Min(masked, 1);
        while (passing < masked && Rows[candidates[passing]].Confidence >= FactorStrategy.RankThreshold(factor.Factor, passing + 1))
            passing++;
        // The released code commits every masked position when only the last rank fails.
        int take = passing == masked - 1 ? masked : passing;
        selection.Clear();
        selection.AddRange(candidates.Take(take));
        selection.Sort();
        var committed = Commit(selection, setCommitConfidence: false);
        AdvanceIfBlockDone(end);
        return new StepTrace(step, null, committed, []);
    }

    /// <summary>Fills <see cref="selection"/> with the top <paramref name="k"/> undecoded positions in [from, end) by score (descending, then position).</summary>
    private void TopUndecodedByConfidence(int end, int k, Func<int, float> score, int from = 0)
    {
        RankUndecoded(end, score, from);
        selection.Clear();
        selection.AddRange(candidates.Take(k));
        selection.Sort();
    }

    /// <summary>Fills <see cref="candidates"/> with the undecoded positions in [from, end) by score (descending, then position).</summary>
    private void RankUndecoded(int end, Func<int, float> score, int from)
    {
        candidates.Clear();
        for (int g = from; g < end; g++)
            if (!decoded[g])
                candidates.Add(g);
        candidates.Sort((x, y) =>
        {
            float sx = score(x), sy = score(y);
            return sx != sy ? sy.CompareTo(sx) : x.CompareTo(y);
        });
    }

    private CommittedToken[] Commit(List<int> positions, bool setCommitConfidence)
    {
        var committed = new CommittedToken[positions.Count];
        for (int i = 0; i < positions.Count; i++)
        {
            int g = positions[i];
            RowConfidence row = Rows[g];
            Canvas[PromptLength + g] = row.Prediction;
            remasks.Committed(PromptLength + g, row.Prediction);
            decoded[g] = true;
            if (setCommitConfidence)
            {
                commitConfidence[g] = row.Confidence;
                commitSet[g] = true;
            }
            committed[i] = new CommittedToken(PromptLength + g, row.Prediction, row.Confidence);
        }
        return committed;
    }

    /// <summary>Spec §3 step 6 / §5: finishes the sequence or activates the next block when [P, e) is decoded.</summary>
    /// <returns>True when the sequence finished or the block advanced.</returns>
    private bool AdvanceIfBlockDone(int end)
    {
        for (int g = 0; g < end; g++)
            if (!decoded[g])
                return false;
        if (end == generationLength)
            Finished = true;
        else
            block++;
        return true;
    }
}
