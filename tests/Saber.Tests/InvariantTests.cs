namespace Saber.Tests;

/// <summary>
/// Properties every decode must have, checked by replaying its trace against the spec's rules on many
/// seeded random models: blocks, progress, the mask id, the final canvas.
/// </summary>
public class InvariantTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        var rng = new Random(77);
        for (int c = 0; c < 12; c++)
        {
            int g = new[] { 1, 3, 8, 12, 24 }[rng.Next(5)];
            int[] divisors = Enumerable.Range(1, g).Where(k => g % k == 0).ToArray();
            int k = divisors[rng.Next(divisors.Length)];
            float temperature = c % 3 == 2 ? 1.3f : 0f;
            DecodingStrategy[] strategies =
            [
                new SaberStrategy(SaberVariant.Reference, rng.Next(1, 6), rng.Next(1, 9)),
                new SaberStrategy(SaberVariant.Paper, rng.Next(1, 6), rng.Next(1, 9)),
                new SaberStrategy(SaberVariant.Reference, 2, 1, FixedThreshold: 0.05f),
                new LowConfidenceStrategy(g / k * rng.Next(1, 6), (ConfidenceMetric)rng.Next(4)),
                new ThresholdStrategy(0.5f),
                new FactorStrategy(2f),
            ];
            foreach (DecodingStrategy strategy in strategies)
                yield return new TestCaseData(c, g, k, temperature, strategy).SetArgDisplayNames($"seed{c}", $"G{g}", $"K{k}", $"T{temperature}", strategy.ToString());
        }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task TraceFollowsTheRules(int seed, int g, int k, float temperature, DecodingStrategy strategy)
    {
        const int vocabulary = 23;
        int mask = seed % vocabulary;
        // The mask id holds each row's largest logit: it must still never be committed.
        var denoiser = new RandomDenoiser(seed, vocabulary, mask, maskHoldsMax: true, tieRate: 0.3);
        int[][] prompts = [[], [(mask + 1) % vocabulary], [.. Enumerable.Range(0, 5).Select(i => (mask + 2 + i) % vocabulary)]];
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = (ulong)seed, Trace = true };
        DecodeResult result = await new CpuSampler().DecodeAsync(denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options);

        for (int b = 0; b < prompts.Length; b++)
            CheckTrace(result.Sequences[b], prompts[b], g, k, mask, strategy, b);
    }

    private static void CheckTrace(SequenceResult sequence, int[] prompt, int g, int k, int mask, DecodingStrategy strategy, int b)
    {
        int p = prompt.Length;
        Assert.That(sequence.Canvas.Take(p), Is.EqualTo(prompt), $"sequence {b}: the prompt is never changed");
        var canvas = Enumerable.Repeat(mask, g).ToArray();
        int end = p + k;
        bool saber = strategy is SaberStrategy;
        bool paper = strategy is SaberStrategy { Variant: SaberVariant.Paper };
        for (int s = 0; s < sequence.Trace.Count; s++)
        {
            StepTrace step = sequence.Trace[s];
            string at = $"sequence {b}, step {step.Step}";
            Assert.That(step.Step, Is.EqualTo(s + 1), at);
            Assert.That(step.Committed.Select(c => c.Position), Is.Ordered.And.Unique, at);
            Assert.That(step.Remasked.Select(r => r.Position), Is.Ordered.And.Unique, at);
            int from = saber ? p : end - k;
            foreach (CommittedToken c in step.Committed)
            {
                Assert.That(c.Position, Is.InRange(from, end - 1), $"{at}: commit outside the active region");
                Assert.That(canvas[c.Position - p], Is.EqualTo(mask), $"{at}: {c.Position} committed while holding a token");
                Assert.That(c.Token, Is.Not.EqualTo(mask), $"{at}: the mask id was committed");
                Assert.That(c.Confidence, Is.GreaterThan(0f).And.LessThanOrEqualTo(1f), at);
                canvas[c.Position - p] = c.Token;
            }
            bool blockDone = canvas.Take(end - p).All(t => t != mask);
            if (blockDone)
            {
                Assert.That(step.Remasked, Is.Empty, $"{at}: re-masked on the step that completed the block");
                // Low-confidence keeps its schedule: a block's last steps may commit nothing.
                if (end == p + g && strategy is not LowConfidenceStrategy)
                    Assert.That(s, Is.EqualTo(sequence.Trace.Count - 1), $"{at}: steps after the last mask was filled");
                end += k;
            }
            foreach (RemaskedToken r in step.Remasked)
            {
                Assert.That(saber, Is.True, $"{at}: only Saber re-masks");
                Assert.That(r.Position, Is.InRange(p, end - 1), at);
                Assert.That(canvas[r.Position - p], Is.Not.EqualTo(mask), $"{at}: re-masked a masked position");
                if (paper)
                    Assert.That(step.Committed.Select(c => c.Position), Does.Not.Contain(r.Position), $"{at}: paper variant re-masked a fresh draft");
                canvas[r.Position - p] = mask;
            }
            if (saber)
                Assert.That(step.Committed.Count - step.Remasked.Count, Is.GreaterThanOrEqualTo(1), $"{at}: no progress");
            else
                Assert.That(step.Tau, Is.Null, at);
        }
        Assert.That(sequence.Tokens.ToArray(), Is.EqualTo(canvas), $"sequence {b}: the trace does not replay to the final canvas");
        Assert.That(canvas, Has.None.EqualTo(mask), $"sequence {b}: masks left");
        Assert.That(sequence.Nfe, Is.EqualTo(sequence.Trace.Count));
        if (strategy is LowConfidenceStrategy lc)
            Assert.That(sequence.Nfe, Is.EqualTo(lc.Steps), "low-confidence NFE is exactly S");
        else
            Assert.That(sequence.Nfe, Is.InRange(1, g), "at least one token per step bounds NFE by G");
    }
}
