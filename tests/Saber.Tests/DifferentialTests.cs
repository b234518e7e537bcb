namespace Saber.Tests;

/// <summary>The fast CPU sampler against the literal rendering of the spec on many seeded random inputs.</summary>
public class DifferentialTests
{
    private static IEnumerable<DecodingStrategy> Strategies(int g, int k, Random rng)
    {
        int blocks = g / k;
        foreach (var variant in new[] { SaberVariant.Reference, SaberVariant.Paper })
        {
            yield return new SaberStrategy(variant, MinTokensPerStep: rng.Next(1, 5), RemaskDivisor: rng.Next(1, 10));
            yield return new SaberStrategy(variant, Backtracking: false);
            yield return new SaberStrategy(variant, FixedThreshold: (float)rng.NextDouble() * 0.5f + 0.05f);
        }
        foreach (var metric in Enum.GetValues<ConfidenceMetric>())
            yield return new LowConfidenceStrategy(blocks * rng.Next(1, k + 3), metric);
        yield return new ThresholdStrategy((float)rng.NextDouble() * 0.6f + 0.2f);
        yield return new ThresholdStrategy(1f);
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        var rng = new Random(20261123);
        for (int c = 0; c < 24; c++)
        {
            int g = new[] { 1, 4, 6, 8, 12, 16 }[rng.Next(6)];
            var divisors = Enumerable.Range(1, g).Where(k => g % k == 0).ToArray();
            int k = divisors[rng.Next(divisors.Length)];
            var type = (LogitsElementType)(c % 3);
            int vocabulary = new[] { 2, 5, 9, 37, 300, 1100 }[rng.Next(6)];
            float temperature = c % 4 == 3 ? 0.7f : 0f;
            int batch = 1 + rng.Next(3);
            foreach (var strategy in Strategies(g, k, rng))
                yield return new TestCaseData(c, g, k, type, vocabulary, temperature, batch, strategy)
                    .SetArgDisplayNames($"case{c}", $"G{g}", $"K{k}", type.ToString(), $"V{vocabulary}", $"T{temperature}", $"B{batch}", strategy.ToString());
        }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task FastSamplerMatchesTheLiteralSpec(int seed, int g, int k, LogitsElementType type, int vocabulary, float temperature, int batch, DecodingStrategy strategy)
    {
        int mask = seed % vocabulary;
        var rng = new Random(seed);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, rng.Next(0, 5)).Select(_ => NonMask(rng, vocabulary, mask)).ToArray()).ToArray();
        var denoiser = new RandomDenoiser(seed, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05, maskHoldsMax: seed % 2 == 0);
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = (ulong)seed * 0x9E3779B97F4A7C15UL, Trace = true };

        var expected = SpecSampler.Decode(denoiser, prompts, options);
        var actual = await new CpuSampler().DecodeAsync(denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options);

        for (int b = 0; b < batch; b++)
        {
            SequenceResult got = actual.Sequences[b];
            IReadOnlyList<StepTrace> want = expected.Traces[b];
            // Walk the steps; the first step whose selections differ must be a proven knife edge
            // (then the canvases differ and the rest of this sequence cannot be compared).
            int divergedAt = -1;
            for (int s = 0; s < Math.Min(want.Count, got.Trace.Count) && divergedAt < 0; s++)
            {
                if (SameSelections(want[s], got.Trace[s]))
                {
                    AssertSameStep(want[s], got.Trace[s], b);
                    continue;
                }
                string? proof = KnifeEdge.Explain(want[s], got.Trace[s], ThresholdOf(strategy));
                Assert.That(proof, Is.Not.Null, $"sequence {b}, step {s + 1}: selections differ and no knife edge explains it\n" +
                    $"expected {Describe(want[s])}\nactual   {Describe(got.Trace[s])}");
                TestContext.Out.WriteLine($"sequence {b}, step {s + 1}: knife edge: {proof}");
                divergedAt = s;
            }
            if (divergedAt >= 0) continue;
            Assert.That(got.Canvas, Is.EqualTo(expected.Canvases[b]), $"canvas of sequence {b}");
            Assert.That(got.Nfe, Is.EqualTo(expected.Nfe[b]), $"NFE of sequence {b}");
            Assert.That(got.Trace, Has.Count.EqualTo(want.Count));
        }
    }

    private static float? ThresholdOf(DecodingStrategy strategy) => strategy is ThresholdStrategy t ? t.Threshold : null;

    private static bool SameSelections(StepTrace a, StepTrace b) =>
        a.Committed.Select(c => (c.Position, c.Token)).SequenceEqual(b.Committed.Select(c => (c.Position, c.Token))) &&
        a.Remasked.Select(r => r.Position).SequenceEqual(b.Remasked.Select(r => r.Position));

    private static string Describe(StepTrace t) =>
        $"tau {t.Tau} committed [{string.Join(' ', t.Committed.Select(c => $"{c.Position}:{c.Token}@{c.Confidence:R}"))}] " +
        $"remasked [{string.Join(' ', t.Remasked.Select(r => $"{r.Position}@{r.Delta:R}"))}]";

    internal static void AssertSameStep(StepTrace expected, StepTrace actual, int sequence)
    {
        string where = $"sequence {sequence}, step {expected.Step}";
        Assert.That(actual.Step, Is.EqualTo(expected.Step), where);
        if (expected.Tau is null) Assert.That(actual.Tau, Is.Null, where);
        else Assert.That(actual.Tau!.Value, Is.EqualTo(expected.Tau.Value).Within(1e-6), $"tau at {where}");
        Assert.That(actual.Committed.Select(c => (c.Position, c.Token)), Is.EqualTo(expected.Committed.Select(c => (c.Position, c.Token))), $"commits at {where}");
        for (int i = 0; i < expected.Committed.Count; i++)
            Assert.That(actual.Committed[i].Confidence, Is.EqualTo(expected.Committed[i].Confidence).Within(2e-6), $"confidence of commit {i} at {where}");
        Assert.That(actual.Remasked.Select(r => r.Position), Is.EqualTo(expected.Remasked.Select(r => r.Position)), $"re-masks at {where}");
        for (int i = 0; i < expected.Remasked.Count; i++)
            Assert.That(actual.Remasked[i].Delta, Is.EqualTo(expected.Remasked[i].Delta).Within(2e-6), $"delta of re-mask {i} at {where}");
    }

    private static int NonMask(Random rng, int vocabulary, int mask)
    {
        int t = rng.Next(vocabulary - 1);
        return t >= mask ? t + 1 : t;
    }
}
