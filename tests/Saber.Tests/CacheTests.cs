using System.Text.Json;
using Saber.Json;

namespace Saber.Tests;

/// <summary>
/// The cache plan (docs/caching.md): which positions each call computes under every policy and refresh rule, checked call by
/// call against a literal rendering of the rules on the recorded canvases; re-masks outside the window; Δ only from computed
/// rows; batch invariance, limits, release of the caches, FLOP accounting and the options' JSON.
/// </summary>
public class CacheTests
{
    private const int Vocabulary = 50, Mask = 49;
    private static readonly ReadOnlyMemory<int>[] Prompts = [new[] { 3, 1, 4 }, new[] { 1, 5 }, new[] { 9, 2, 6, 5, 3 }];

    public static IEnumerable<TestCaseData> PlanCases()
    {
        DecodingStrategy[] strategies =
        [
            new SaberStrategy(SaberVariant.Reference),
            new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 1, RemaskDivisor: 2),
            new LowConfidenceStrategy(8),
            new ThresholdStrategy(0.4f),
            new FactorStrategy(3f),
        ];
        foreach (DecodingStrategy strategy in strategies)
            foreach (CachePolicy policy in new[] { CachePolicy.Prefix, CachePolicy.Dual })
                foreach (int? every in new int?[] { null, 3 })
                    foreach (RemaskRefresh onRemask in new[] { RemaskRefresh.Positions, RemaskRefresh.Block })
                    {
                        if (strategy is not SaberStrategy && onRemask == RemaskRefresh.Block) continue;   // nothing is re-masked
                        yield return new TestCaseData(strategy, new CacheOptions(policy, every, onRemask))
                            .SetArgDisplayNames(strategy.GetType().Name + (strategy is SaberStrategy s ? s.Variant.ToString() : ""), policy.ToString(),
                                $"R{every?.ToString() ?? "-"}", onRemask.ToString());
                    }
    }

    private static DecodeOptions Options(DecodingStrategy strategy, CacheOptions cache, float temperature = 0f) =>
        new() { GenerationLength = 16, BlockLength = 4, Strategy = strategy, Cache = cache, Temperature = temperature, Seed = 2026, Trace = true };

    [TestCaseSource(nameof(PlanCases))]
    public async Task EveryCallComputesWhatTheRulesSay(DecodingStrategy strategy, CacheOptions cache)
    {
        var recorder = new CachingRecorder(new RandomDenoiser(5, Vocabulary, Mask, scale: 3f));
        DecodeOptions options = Options(strategy, cache);
        DecodeResult result = await new CpuSampler().DecodeAsync(recorder, Prompts, options);

        for (int b = 0; b < Prompts.Length; b++)
        {
            SequenceResult sequence = result.Sequences[b];
            CachingRecorder.Call[] calls = recorder.Calls.Where(c => c.Sequence == b).OrderBy(c => c.Step).ToArray();
            Assert.That(calls, Has.Length.EqualTo(sequence.Nfe), "one window per call");
            LiteralPlan.Check(calls, sequence, options, Prompts[b].Length, Mask);
            long flops = calls.Sum(c => recorder.PassFlops(c.Canvas.Length, c.Queries.Length, c.Queries.Count(p => p >= c.LogitsFrom))!.Value);
            Assert.That(sequence.ForwardFlops, Is.EqualTo(flops), "forward FLOPs: the model's count of each call's queries and rows, summed");
            Assert.That(sequence.Cache!.Policy, Is.EqualTo(cache.Policy));
            Assert.That(sequence.Cache.Passes, Is.EqualTo(calls.Length));
            Assert.That(sequence.Cache.FullPasses, Is.EqualTo(calls.Count(c => c.Refresh)));
            Assert.That(sequence.Cache.ComputedPositions, Is.EqualTo(calls.Sum(c => (long)c.Queries.Length)));
            Assert.That(sequence.Cache.CanvasPositions, Is.EqualTo(calls.Sum(c => (long)c.Canvas.Length)));
            Assert.That(sequence.Cache.Remasks, Is.EqualTo(sequence.Trace.Sum(t => t.Remasked.Count)));
        }
        Assert.That(recorder.Caches, Has.Count.EqualTo(Prompts.Length));
        Assert.That(recorder.Caches.All(c => c.Disposed), "every cache is released when its sequence ends");
    }

    /// <summary>The rules of docs/caching.md, rendered literally on the recorded canvases (the block is rebuilt from them too).</summary>
    private static class LiteralPlan
    {
        public static void Check(CachingRecorder.Call[] calls, SequenceResult sequence, DecodeOptions options, int prompt, int mask)
        {
            int n = calls[0].Canvas.Length, k = options.EffectiveBlockLength, blocks = options.GenerationLength / k;
            var cached = new int?[n];
            int block = 0, refreshedBlock = -1, sinceRefresh = 0, stepsInBlock = 0, outside = 0, refreshed = 0;
            long refreshFlops = 0;
            for (int t = 0; t < calls.Length; t++)
            {
                CachingRecorder.Call call = calls[t];
                int[] canvas = call.Canvas;
                int start = prompt + block * k, end = start + k, windowEnd = options.Cache.Policy == CachePolicy.Dual ? end : n;
                bool refresh = t == 0 || block != refreshedBlock || options.Cache.RefreshEvery is int r && sinceRefresh >= r;
                var expected = new SortedSet<int>();
                for (int p = 0; p < n; p++)
                {
                    if (refresh || p >= start && p < windowEnd) { expected.Add(p); continue; }
                    if (p < prompt) continue;
                    bool changed = canvas[p] != cached[p] || canvas[p] == mask && p < start;
                    if (!changed) continue;
                    if (options.Cache.OnRemask == RemaskRefresh.Block)
                        for (int q = prompt + (p - prompt) / k * k; q < prompt + (p - prompt) / k * k + k; q++) expected.Add(q);
                    else
                        expected.Add(p);
                }
                Assert.That(call.Refresh, Is.EqualTo(refresh), $"call {t + 1}: a full pass?");
                Assert.That(call.Queries, Is.EqualTo(expected.ToArray()), $"call {t + 1} (block {block}): the queries");
                if (!refresh)
                {
                    // Each extra position is a generation position: a query and a logits row of the recorder's FLOP count.
                    int extra = expected.Count(p => !(p >= start && p < windowEnd));
                    refreshed += extra;
                    refreshFlops += 1000L * extra + 3L * extra * n + 7L * extra;
                }
                foreach (int p in expected) cached[p] = canvas[p];
                if (refresh) { refreshedBlock = block; sinceRefresh = 0; }
                sinceRefresh++;

                StepTrace step = sequence.Trace[t];
                foreach (RemaskedToken remasked in step.Remasked)
                {
                    Assert.That(expected.Contains(remasked.Position), $"call {t + 1}: position {remasked.Position} was re-masked without a fresh row");
                    if (remasked.Position < start) outside++;
                }
                // The block after this step, from the canvas the next call sees (or the final one).
                int[] after = t + 1 < calls.Length ? calls[t + 1].Canvas : sequence.Canvas;
                if (options.Strategy is LowConfidenceStrategy lc)
                {
                    if (++stepsInBlock == lc.Steps / blocks) { stepsInBlock = 0; block++; }
                }
                else if (after.AsSpan(prompt, end - prompt).IndexOf(mask) < 0)
                {
                    block++;
                }
            }
            Assert.That(sequence.Cache!.RemasksOutsideWindow, Is.EqualTo(outside), "re-masks before the active block");
            Assert.That(sequence.Cache.RefreshedPositions, Is.EqualTo(refreshed), "positions computed outside the base windows");
            Assert.That(sequence.Cache.RefreshFlops, Is.EqualTo(refreshFlops), "their FLOPs");
        }
    }

    [TestCase(RemaskRefresh.Positions)]
    [TestCase(RemaskRefresh.Block)]
    public async Task APositionReMaskedOutsideTheWindowIsRecomputedUntilItsNewTokenIsCached(RemaskRefresh onRemask)
    {
        var recorder = new CachingRecorder(new RandomDenoiser(11, Vocabulary, Mask, scale: 3f));
        DecodeOptions options = Options(new SaberStrategy(), new CacheOptions(CachePolicy.Dual, OnRemask: onRemask)) with { GenerationLength = 32 };
        DecodeResult result = await new CpuSampler().DecodeAsync(recorder, Prompts, options);
        int seen = 0;
        for (int b = 0; b < Prompts.Length; b++)
        {
            SequenceResult sequence = result.Sequences[b];
            int prompt = Prompts[b].Length;
            CachingRecorder.Call[] calls = recorder.Calls.Where(c => c.Sequence == b).OrderBy(c => c.Step).ToArray();
            for (int t = 0; t + 1 < calls.Length; t++)
                foreach (RemaskedToken remasked in sequence.Trace[t].Remasked)
                {
                    int p = remasked.Position;
                    int blockStart = prompt + (calls[t + 1].Queries.Where(q => q >= prompt).DefaultIfEmpty(prompt).Max() - prompt) / 4 * 4;
                    if (calls[t + 1].Refresh || p >= blockStart) continue;
                    seen++;
                    Assert.That(calls[t + 1].Queries, Does.Contain(p), $"sequence {b}: re-masked at step {t + 1}, so computed at step {t + 2}");
                    if (onRemask == RemaskRefresh.Block)
                        Assert.That(calls[t + 1].Queries, Is.SupersetOf(Enumerable.Range(prompt + (p - prompt) / 4 * 4, 4)), "its whole block");
                    // Masked, it stays a query; once committed again, one more call computes it with its new token.
                    int recommit = Enumerable.Range(t + 1, calls.Length - t - 1).FirstOrDefault(s => sequence.Trace[s].Committed.Any(c => c.Position == p), -1);
                    for (int s = t + 1; s <= (recommit < 0 ? calls.Length - 1 : recommit); s++)
                        Assert.That(calls[s].Queries, Does.Contain(p), $"sequence {b}: position {p} is masked at step {s + 1}");
                    if (recommit >= 0 && recommit + 1 < calls.Length)
                        Assert.That(calls[recommit + 1].Queries, Does.Contain(p), $"sequence {b}: committed again at step {recommit + 1}, its new token is computed");
                }
        }
        TestContext.Out.WriteLine($"re-masks outside the window followed: {seen}");
        Assert.That(seen, Is.GreaterThan(0), "the decode re-masked positions of earlier blocks (what the rule is for)");
        Assert.That(result.Sequences.Sum(s => s.Cache!.RemasksOutsideWindow), Is.GreaterThanOrEqualTo(seen));
    }

    [TestCaseSource(nameof(PlanCases))]
    public async Task ACachedDecodeIsDeterministicAndDoesNotDependOnBatchComposition(DecodingStrategy strategy, CacheOptions cache)
    {
        DecodeOptions options = Options(strategy, cache, temperature: 0.8f) with { GenerationLength = 8 };
        await BatchComposition.AssertAloneEqualsInBatches(
            (d, p, o) => new CpuSampler().DecodeAsync(new CachingRecorder(d), p, o),
            new RandomDenoiser(5, Vocabulary, Mask, scale: 3f), [3, 1, 4], options, [2, 8], keepIndex: true, seed: 7);
    }

    [Test]
    public async Task ACacheChangesTheDecodeOnlyWhenOneIsAskedFor()
    {
        var inner = new RandomDenoiser(5, Vocabulary, Mask, scale: 3f);
        var recorder = new CachingRecorder(inner);
        DecodeOptions exact = Options(new SaberStrategy(), CacheOptions.None);
        DecodeResult plain = await new CpuSampler().DecodeAsync(inner, Prompts, exact);
        DecodeResult throughRecorder = await new CpuSampler().DecodeAsync(recorder, Prompts, exact);
        TraceComparison.AssertIdenticalDecode(plain, throughRecorder);
        Assert.That(recorder.Calls, Is.Empty, "policy none sends no window");
        Assert.That(recorder.Caches, Is.Empty, "and makes no cache");
        Assert.That(throughRecorder.Sequences.All(s => s.Cache is null));

        DecodeResult cached = await new CpuSampler().DecodeAsync(recorder, Prompts, exact with { Cache = new CacheOptions(CachePolicy.Dual) });
        Assert.That(cached.Sequences.Select(s => s.Canvas), Is.Not.EqualTo(plain.Sequences.Select(s => s.Canvas)),
            "stale context changes this model's decode (the recorder's cache is approximate)");
    }

    [Test]
    public void ACacheOverTheLimitFailsBeforeAnyCallAndReleasesTheOthers()
    {
        var recorder = new CachingRecorder(new RandomDenoiser(5, Vocabulary, Mask), maxCacheBytes: 64 * (3 + 16 + 2 + 16));   // two of three fit
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            new CpuSampler().DecodeAsync(recorder, Prompts, Options(new SaberStrategy(), new CacheOptions(CachePolicy.Prefix))));
        Assert.That(e!.Message, Does.Contain("over the limit"));
        Assert.That(recorder.Calls, Is.Empty);
        Assert.That(recorder.Caches, Has.Count.EqualTo(2));
        Assert.That(recorder.Caches.All(c => c.Disposed), "the caches made before the failure are released");
    }

    [Test]
    public void ACachePolicyOnAModelWithoutCachesIsAClearError()
    {
        DecodeOptions options = Options(new SaberStrategy(), new CacheOptions(CachePolicy.Dual));
        var e = Assert.ThrowsAsync<CacheUnavailableException>(() => new CpuSampler().DecodeAsync(new RandomDenoiser(5, Vocabulary, Mask), Prompts, options));
        Assert.That(e!.Message, Is.EqualTo("Cache policy 'dual' needs a model with a cache graph: RandomDenoiser cannot cache keys and values. Use cache policy 'none' (docs/caching.md)."));
        Assert.Throws<CacheUnavailableException>(() => new CpuSampler().DecodeStepsAsync(new RandomDenoiser(5, Vocabulary, Mask), Prompts, options),
            "the streaming decode checks before its first step too");
    }

    [Test]
    public async Task CancellingACachedDecodeReleasesItsCaches()
    {
        var recorder = new CachingRecorder(new RandomDenoiser(5, Vocabulary, Mask));
        using var cts = new CancellationTokenSource();
        int steps = 0;
        Assert.ThrowsAsync<OperationCanceledException>(async () =>
        {
            await foreach (DecodeStepUpdate _ in new CpuSampler().DecodeStepsAsync(recorder, Prompts, Options(new SaberStrategy(), new CacheOptions(CachePolicy.Dual)), cts.Token))
                if (++steps == 2) cts.Cancel();
        });
        Assert.That(recorder.Caches, Has.Count.EqualTo(Prompts.Length));
        Assert.That(recorder.Caches.All(c => c.Disposed));
        await Task.CompletedTask;
    }

    [Test]
    public void CacheOptionsRoundTripThroughJsonAndAreValidated()
    {
        var options = new DecodeOptions { GenerationLength = 8, Cache = new CacheOptions(CachePolicy.Dual, 4, RemaskRefresh.Block) };
        string json = JsonSerializer.Serialize(options, SaberJson.Options);
        Assert.That(json, Does.Contain("\"cache\":{\"policy\":\"dual\",\"refreshEvery\":4,\"onRemask\":\"block\"}"));
        Assert.That(JsonSerializer.Deserialize<DecodeOptions>(json, SaberJson.Options), Is.EqualTo(options));
        DecodeOptions defaults = JsonSerializer.Deserialize<DecodeOptions>("{\"generationLength\": 8}", SaberJson.Options)!;
        Assert.That(defaults.Cache, Is.EqualTo(CacheOptions.None), "no \"cache\": no caching");
        var e = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<DecodeOptions>("{\"generationLength\": 8, \"cache\": {\"policy\": \"triple\"}}", SaberJson.Options));
        Assert.That(e!.Message, Does.Contain("Unknown cache policy 'triple'; expected one of none, prefix, dual."));
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => (options with { Cache = new CacheOptions(CachePolicy.Prefix, 0) }).Validate());
        Assert.That(bad!.Message, Does.StartWith("The cache's refresh interval R must be >= 1 call; got 0."));
    }
}
