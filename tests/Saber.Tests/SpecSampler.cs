namespace Saber.Tests;

/// <summary>
/// A literal, slow rendering of SABER_SPEC.md, written independently of the fast sampler: full
/// softmax in double per row, its own Philox, LINQ orderings. Tests compare the fast CPU sampler
/// against it. Confidences are rounded to float32, the precision the spec asks for.
/// </summary>
internal static class SpecSampler
{
    public sealed record Result(int[][] Canvases, int[] Nfe, List<StepTrace>[] Traces);

    private sealed class Seq
    {
        public required int[] X;
        public required int P;
        public required bool[] Decoded;
        public required float?[] F;
        public required float[] CPrev;
        public int Block;
        public int BlockStep;
        public int Nfe;
        public bool Done;
        public List<StepTrace> Trace = [];
    }

    private sealed record Quantities(int Prediction, float C, float Q, float Metric);

    /// <param name="exactRows">
    /// Compute each row's quantities with <see cref="ExactMath.Row"/>, the scalar definition of docs/arithmetic.md,
    /// instead of the double softmax: everything else stays this literal rendering, and the fast samplers must then
    /// agree with it bit for bit.
    /// </param>
    public static Result Decode(IDenoiser model, IReadOnlyList<int[]> prompts, DecodeOptions o, bool exactRows = false)
    {
        int V = model.VocabularySize, mask = model.MaskId, G = o.GenerationLength, K = o.BlockLength ?? G;
        int blocks = G / K;
        var seqs = prompts.Select(p => new Seq
        {
            X = p.Concat(Enumerable.Repeat(mask, G)).ToArray(),
            P = p.Length,
            Decoded = new bool[G],
            F = new float?[G],
            CPrev = new float[G],
        }).ToArray();

        for (int t = 1; seqs.Any(s => !s.Done); t++)
        {
            var activeIds = Enumerable.Range(0, seqs.Length).Where(b => !seqs[b].Done).ToArray();
            var logits = model.ForwardAsync(new DenoiseRequest(t, activeIds, activeIds.Select(b => (ReadOnlyMemory<int>)seqs[b].X.ToArray()).ToArray()), default)
                .AsTask().GetAwaiter().GetResult();
            // All rows first (errors leave nothing half-done), then the decisions.
            var plans = new List<Action>();
            for (int k = 0; k < activeIds.Length; k++)
            {
                int b = activeIds[k];
                Seq s = seqs[b];
                SequenceLogits l = logits[k];
                int step = t;
                Quantities At(int i) => exactRows ? ComputeExact(l, i, mask, s.X[i], o, step, b, V) : Compute(l, i, mask, s.X[i], o, step, b, V);
                plans.Add(o.Strategy switch
                {
                    SaberStrategy saber => SaberStep(s, saber, At, t, G, K, mask),
                    LowConfidenceStrategy lc => LowConfidenceStep(s, lc, At, t, K, blocks),
                    ThresholdStrategy th => ThresholdStep(s, th, At, t, G, K),
                    FactorStrategy f => FactorStep(s, f, At, t, G, K),
                    _ => throw new NotSupportedException(),
                });
            }
            foreach (var apply in plans) apply();
        }
        return new Result(seqs.Select(s => s.X).ToArray(), seqs.Select(s => s.Nfe).ToArray(), seqs.Select(s => s.Trace).ToArray());
    }

    private static Action SaberStep(Seq s, SaberStrategy saber, Func<int, Quantities> at, int t, int G, int K, int mask)
    {
        int P = s.P, e = P + (s.Block + 1) * K;
        bool paper = saber.Variant == SaberVariant.Paper;
        var gen = Enumerable.Range(P, G).ToArray();
        var q = gen.Where(i => i < e).ToDictionary(i => i, at);   // step 1 (throws on bad rows)
        return () =>
        {
            s.Nfe++;
            float A(int i) => i >= e ? float.NegativeInfinity : paper && s.Decoded[i - P] ? q[i].Q : q[i].C;
            var delta = new Dictionary<int, float>();
            foreach (int i in gen)                                   // step 2
            {
                float a = A(i);
                float d = a - s.CPrev[i - P];
                delta[i] = float.IsFinite(d) ? d : float.PositiveInfinity;
                s.CPrev[i - P] = a;
            }
            var commitSet = gen.Where(i => i < e && (paper ? s.Decoded[i - P] : s.F[i - P].HasValue)).ToList();   // step 3
            double tau = commitSet.Count == 0 ? 1.0 : commitSet.Average(i => (double)s.F[i - P]!.Value);
            double threshold = saber.FixedThreshold ?? tau;
            var undecoded = gen.Where(i => i < e && !s.Decoded[i - P]).ToList();                                   // step 4
            var draft = undecoded.Where(i => q[i].C > threshold).ToList();
            if (draft.Count < saber.MinTokensPerStep)
                draft = undecoded.OrderByDescending(i => q[i].C).ThenBy(i => i).Take(Math.Min(saber.MinTokensPerStep, undecoded.Count)).ToList();
            foreach (int i in draft)                                                                               // step 5
            {
                s.X[i] = q[i].Prediction;
                s.Decoded[i - P] = true;
                s.F[i - P] = q[i].C;
            }
            var remasked = new List<RemaskedToken>();
            if (gen.All(i => s.Decoded[i - P]))                                                                     // step 6
                s.Done = true;
            else if (Enumerable.Range(P, e - P).All(i => s.Decoded[i - P]))
                s.Block++;
            else if (saber.Backtracking)                                                                            // step 7
            {
                int d = draft.Count, mu = saber.RemaskDivisor;
                int m = paper
                    ? Math.Min(Math.Max(1, (int)Math.Floor((double)d / mu)), d - 1)
                    : Math.Min(Math.Max(saber.MinTokensPerStep / 2, (int)Math.Ceiling((double)d / mu)), d - 1);
                if (m > 0)
                {
                    var candidates = gen.Where(i => i < e && s.Decoded[i - P] && !(paper && draft.Contains(i)));
                    foreach (int i in candidates.OrderBy(i => delta[i]).ThenBy(i => i).Take(m).Order())
                    {
                        s.X[i] = mask;
                        s.Decoded[i - P] = false;
                        if (paper) s.F[i - P] = null;
                        remasked.Add(new RemaskedToken(i, delta[i]));
                    }
                }
            }
            s.Trace.Add(new StepTrace(t, threshold, draft.Order().Select(i => new CommittedToken(i, q[i].Prediction, q[i].C)).ToList(), remasked));
        };
    }

    private static Action LowConfidenceStep(Seq s, LowConfidenceStrategy lc, Func<int, Quantities> at, int t, int K, int blocks)
    {
        int start = s.P + s.Block * K, e = start + K;
        var masked = Enumerable.Range(start, K).Where(i => !s.Decoded[i - s.P]).ToList();
        var q = masked.ToDictionary(i => i, at);
        return () =>
        {
            s.Nfe++;
            int stepsPerBlock = lc.Steps / blocks, k0 = K, j = s.BlockStep;
            int count = k0 / stepsPerBlock + (j < k0 % stepsPerBlock ? 1 : 0);
            var chosen = masked.OrderByDescending(i => q[i].Metric).ThenBy(i => i).Take(count).Order().ToList();
            foreach (int i in chosen)
            {
                s.X[i] = q[i].Prediction;
                s.Decoded[i - s.P] = true;
            }
            s.Trace.Add(new StepTrace(t, null, chosen.Select(i => new CommittedToken(i, q[i].Prediction, q[i].C)).ToList(), []));
            if (++s.BlockStep == stepsPerBlock)
            {
                s.BlockStep = 0;
                if (++s.Block == blocks) s.Done = true;
            }
        };
    }

    private static Action ThresholdStep(Seq s, ThresholdStrategy th, Func<int, Quantities> at, int t, int G, int K)
    {
        int start = s.P + s.Block * K, e = start + K;
        var masked = Enumerable.Range(start, K).Where(i => !s.Decoded[i - s.P]).ToList();
        var q = masked.ToDictionary(i => i, at);
        return () =>
        {
            s.Nfe++;
            var chosen = masked.Where(i => q[i].C >= th.Threshold).ToList();
            if (chosen.Count == 0)
                chosen = masked.OrderByDescending(i => q[i].C).ThenBy(i => i).Take(1).ToList();
            foreach (int i in chosen)
            {
                s.X[i] = q[i].Prediction;
                s.Decoded[i - s.P] = true;
            }
            s.Trace.Add(new StepTrace(t, null, chosen.Order().Select(i => new CommittedToken(i, q[i].Prediction, q[i].C)).ToList(), []));
            if (Enumerable.Range(start, K).All(i => s.Decoded[i - s.P]))
            {
                if (e == s.P + G) s.Done = true;
                else s.Block++;
            }
        };
    }

    private static Action FactorStep(Seq s, FactorStrategy f, Func<int, Quantities> at, int t, int G, int K)
    {
        int start = s.P + s.Block * K, e = start + K;
        var masked = Enumerable.Range(start, K).Where(i => !s.Decoded[i - s.P]).ToList();
        var q = masked.ToDictionary(i => i, at);
        return () =>
        {
            s.Nfe++;
            var chosen = FactorRule.Select(masked.Select(i => q[i].C).ToArray(), f.Factor).Select(j => masked[j]).ToList();
            foreach (int i in chosen)
            {
                s.X[i] = q[i].Prediction;
                s.Decoded[i - s.P] = true;
            }
            s.Trace.Add(new StepTrace(t, null, chosen.Order().Select(i => new CommittedToken(i, q[i].Prediction, q[i].C)).ToList(), []));
            if (Enumerable.Range(start, K).All(i => s.Decoded[i - s.P]))
            {
                if (e == s.P + G) s.Done = true;
                else s.Block++;
            }
        };
    }

    /// <summary>Spec §2 for one position with the exact arithmetic's definition of a row.</summary>
    private static Quantities ComputeExact(SequenceLogits l, int i, int mask, int current, DecodeOptions o, int step, int sequence, int V)
    {
        var row = Enumerable.Range(0, V).Select(v => l[i, v]).ToArray();
        ConfidenceMetric metric = o.Strategy is LowConfidenceStrategy lc ? lc.Metric : ConfidenceMetric.MaxProb;
        ExactMath.RowResult r = ExactMath.Row(row, mask, current != mask ? current : -1, metric, o.Temperature, o.Seed, new RowCoordinates(step, sequence, i));
        if (r.BadIndex >= 0)
            throw new InvalidLogitsException($"bad logits at {r.BadIndex} of position {i}");
        return new Quantities(r.Prediction, r.Confidence, r.TokenConfidence, r.Metric);
    }

    /// <summary>Spec §2 for one position, straight from the definitions.</summary>
    private static Quantities Compute(SequenceLogits l, int i, int mask, int current, DecodeOptions o, int step, int sequence, int V)
    {
        var row = Enumerable.Range(0, V).Select(v => l[i, v]).ToArray();
        for (int v = 0; v < V; v++)
            if (float.IsNaN(row[v]) || float.IsPositiveInfinity(row[v]))
                throw new InvalidLogitsException($"non-finite logit {row[v]} at {v} of position {i}");
        if (!Enumerable.Range(0, V).Any(v => v != mask && float.IsFinite(row[v])))
            throw new InvalidLogitsException($"no finite logit besides the mask id at position {i}");

        double max = row.Max();
        double z = row.Sum(x => Math.Exp(x - max));
        double S(int v) => Math.Exp(row[v] - max) / z;

        float Score(int v) => o.Temperature == 0f ? row[v]
            : row[v] + o.Temperature * (float)-Math.Log(-Math.Log(LiteralUniform(o.Seed, step, sequence, i, v)));
        var ranked = Enumerable.Range(0, V).Where(v => v != mask).Select(v => (v, score: Score(v)))
            .Where(x => x.score != float.NegativeInfinity)
            .OrderByDescending(x => x.score).ThenBy(x => x.v).ToList();
        int prediction = ranked[0].v;
        float c = (float)S(prediction);
        float q = current != mask ? (float)S(current) : float.NaN;
        ConfidenceMetric metric = o.Strategy is LowConfidenceStrategy lc ? lc.Metric : ConfidenceMetric.MaxProb;
        float value = metric switch
        {
            ConfidenceMetric.MaxProb => c,
            ConfidenceMetric.Margin => (float)(S(prediction) - (ranked.Count > 1 ? S(ranked[1].v) : 0.0)),
            ConfidenceMetric.NegEntropy => (float)Enumerable.Range(0, V).Select(S).Where(p => p > 0).Sum(p => p * Math.Log(p)),
            _ => LiteralUniform(o.Seed, step, sequence, i, V),
        };
        return new Quantities(prediction, c, q, value);
    }

    /// <summary>The documented layout: key = seed halves, counter = (v/4, position, sequence, step), word v%4.</summary>
    public static float LiteralUniform(ulong seed, int step, int sequence, int position, int v)
    {
        uint[] word = LiteralPhilox([(uint)(v / 4), (uint)position, (uint)sequence, (uint)step], [(uint)(seed & 0xFFFFFFFF), (uint)(seed >> 32)]);
        double u = ((word[v % 4] >> 9) + 0.5) / 8388608.0;
        if ((float)u != u || !(u > 0 && u < 1)) throw new InvalidOperationException($"uniform {u} is not exact inside (0, 1)");
        return (float)u;
    }

    /// <summary>Philox4x32-10 as the paper writes it, kept apart from the production code.</summary>
    public static uint[] LiteralPhilox(uint[] counter, uint[] key)
    {
        uint[] x = (uint[])counter.Clone();
        uint[] k = (uint[])key.Clone();
        for (int r = 0; r < 10; r++)
        {
            ulong a = 0xD2511F53UL * x[0], b = 0xCD9E8D57UL * x[2];
            x = [(uint)(b >> 32) ^ x[1] ^ k[0], (uint)b, (uint)(a >> 32) ^ x[3] ^ k[1], (uint)a];
            k = [k[0] + 0x9E3779B9, k[1] + 0xBB67AE85];
        }
        return x;
    }
}
