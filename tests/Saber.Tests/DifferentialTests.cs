namespace Saber.Tests;

/// <summary>
/// The fast CPU sampler against the literal rendering of the spec on many seeded random inputs: bit for bit where the
/// spec's rows use the exact arithmetic's definition, and up to a proven knife edge where they use the double softmax.
/// </summary>
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
        yield return new FactorStrategy();
        yield return new FactorStrategy(3f);
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
        var (prompts, denoiser, options) = Inputs(seed, g, k, type, vocabulary, temperature, batch, strategy);
        var expected = SpecSampler.Decode(denoiser, prompts, options);
        var actual = await new CpuSampler().DecodeAsync(denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options);

        for (int b = 0; b < batch; b++)
        {
            SequenceResult got = actual.Sequences[b];
            IReadOnlyList<StepTrace> want = expected.Traces[b];
            if (KnifeEdge.SameUntilKnifeEdge(want, got.Trace, strategy, b)) continue;
            Assert.That(got.Canvas, Is.EqualTo(expected.Canvases[b]), $"canvas of sequence {b}");
            Assert.That(got.Nfe, Is.EqualTo(expected.Nfe[b]), $"NFE of sequence {b}");
            Assert.That(got.Trace, Has.Count.EqualTo(want.Count));
        }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task FastSamplerEqualsTheLiteralSpecOnExactRowsBitForBit(int seed, int g, int k, LogitsElementType type, int vocabulary, float temperature, int batch, DecodingStrategy strategy)
    {
        var (prompts, denoiser, options) = Inputs(seed, g, k, type, vocabulary, temperature, batch, strategy);
        var expected = SpecSampler.Decode(denoiser, prompts, options, exactRows: true);
        var actual = await new CpuSampler().DecodeAsync(denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options);

        for (int b = 0; b < batch; b++)
        {
            // The literal spec keeps no statistics: they are counted over its trace.
            var remasks = new RemaskCounter(prompts[b].Length, g);
            foreach (StepTrace step in expected.Traces[b]) remasks.Add(step);
            TraceComparison.AssertIdenticalSequence(new SequenceResult(expected.Canvases[b], prompts[b].Length, expected.Nfe[b], expected.Traces[b])
            {
                RemaskStatistics = remasks.Statistics,
            }, actual.Sequences[b], b);
        }
    }

    /// <summary>One case's prompts, logits and options, the same for both comparisons.</summary>
    private static (int[][] Prompts, RandomDenoiser Denoiser, DecodeOptions Options) Inputs(int seed, int g, int k, LogitsElementType type, int vocabulary,
        float temperature, int batch, DecodingStrategy strategy)
    {
        int mask = seed % vocabulary;
        var rng = new Random(seed);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, rng.Next(0, 5)).Select(_ => RandomDenoiser.NonMaskToken(rng, vocabulary, mask)).ToArray()).ToArray();
        var denoiser = new RandomDenoiser(seed, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05, maskHoldsMax: seed % 2 == 0);
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = (ulong)seed * 0x9E3779B97F4A7C15UL, Trace = true };
        return (prompts, denoiser, options);
    }
}
