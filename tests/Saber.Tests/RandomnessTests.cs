namespace Saber.Tests;

/// <summary>Philox4x32-10, the documented draw layout, and sampling at temperature &gt; 0.</summary>
public class RandomnessTests
{
    // Known-answer vectors published with Random123 (kat_vectors, philox4x32_10).
    [TestCase(new uint[] { 0, 0, 0, 0 }, new uint[] { 0, 0 }, new uint[] { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 })]
    [TestCase(new uint[] { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, new uint[] { 0xffffffff, 0xffffffff },
        new uint[] { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd })]
    [TestCase(new uint[] { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, new uint[] { 0xa4093822, 0x299f31d0 },
        new uint[] { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 })]
    public void PhiloxMatchesThePublishedKnownAnswers(uint[] counter, uint[] key, uint[] expected)
    {
        var (x0, x1, x2, x3) = Philox.Generate(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
        Assert.That(new[] { x0, x1, x2, x3 }, Is.EqualTo(expected));
        Assert.That(SpecSampler.LiteralPhilox(counter, key), Is.EqualTo(expected), "the tests' own rendering");
    }

    [Test]
    public void DrawsFollowTheDocumentedLayout()
    {
        var rng = new Random(9);
        for (int i = 0; i < 2000; i++)
        {
            ulong seed = (ulong)rng.NextInt64();
            int step = rng.Next(1, 500), sequence = rng.Next(64), position = rng.Next(4096), v = rng.Next(200000);
            Assert.That(RandomLayout.Uniform(seed, step, sequence, position, v), Is.EqualTo(SpecSampler.LiteralUniform(seed, step, sequence, position, v)));
        }
    }

    [TestCase(0u)]
    [TestCase(0xFFFFFFFFu)]
    [TestCase(0xFFFFFE00u)]
    [TestCase(0x1FFu)]
    public void UniformStaysStrictlyInsideTheUnitIntervalAndGumbelFinite(uint bits)
    {
        float u = RandomLayout.ToUniform(bits);
        Assert.That(u, Is.GreaterThan(0f).And.LessThan(1f));
        Assert.That(float.IsFinite(ExactMath.Gumbel(u)), Is.True);
    }

    [Test]
    public void GumbelMaxBoundsEveryDrawOfTheRandomLayout()
    {
        // All 2^23 uniforms the layout can produce (the low 9 bits are dropped).
        float largest = float.NegativeInfinity;
        for (uint high = 0; high < 1u << 23; high++)
            largest = MathF.Max(largest, ExactMath.Gumbel(RandomLayout.ToUniform(high << 9)));
        Assert.That(largest, Is.LessThanOrEqualTo(ExactMath.GumbelMax).And.GreaterThan(16.6f));
    }

    [Test]
    public async Task SameSeedSameDecodeOtherSeedOtherDecode()
    {
        var denoiser = new RandomDenoiser(11, 50, 49, scale: 1f);
        var options = new DecodeOptions { GenerationLength = 16, Temperature = 1f, Seed = 1234, Trace = true };
        int[][] prompts = [[1, 2], [3]];
        var input = prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray();
        DecodeResult a = await new CpuSampler().DecodeAsync(denoiser, input, options);
        DecodeResult b = await new CpuSampler(maxDegreeOfParallelism: 1).DecodeAsync(denoiser, input, options);
        DecodeResult c = await new CpuSampler().DecodeAsync(denoiser, input, options with { Seed = 1235 });
        DecodeResult greedy = await new CpuSampler().DecodeAsync(denoiser, input, options with { Temperature = 0 });
        for (int s = 0; s < prompts.Length; s++)
            Assert.That(a.Sequences[s].Canvas, Is.EqualTo(b.Sequences[s].Canvas));
        Assert.That(a.Sequences.Select(s => s.Canvas), Is.Not.EqualTo(c.Sequences.Select(s => s.Canvas)));
        Assert.That(a.Sequences.Select(s => s.Canvas), Is.Not.EqualTo(greedy.Sequences.Select(s => s.Canvas)));
    }

    [Test]
    public async Task GumbelMaxSamplesTheTemperedSoftmax()
    {
        // One position, logits ln(1), ln(2), ln(3) (+ a banned mask): at T = 1 the prediction follows
        // softmax = 1/6, 2/6, 3/6; at T = 0.5 it follows softmax(2ℓ) = 1/14, 4/14, 9/14.
        // 6000 seeds; each frequency must sit within 4.5 standard errors.
        float[] logits = [0f, MathF.Log(2), MathF.Log(3), float.NegativeInfinity];
        var denoiser = new ScriptedDenoiser(4, 3, (_, _, canvas) => canvas.Select(_ => logits).ToArray());
        foreach (var (temperature, expected) in new[] { (1f, new[] { 1 / 6.0, 2 / 6.0, 3 / 6.0 }), (0.5f, new[] { 1 / 14.0, 4 / 14.0, 9 / 14.0 }) })
        {
            const int trials = 6000;
            var counts = new int[3];
            for (int seed = 0; seed < trials; seed++)
            {
                var options = new DecodeOptions { GenerationLength = 1, Temperature = temperature, Seed = (ulong)seed * 0x9E3779B97F4A7C15UL };
                DecodeResult r = await new CpuSampler().DecodeAsync(denoiser, [Array.Empty<int>()], options);
                counts[r.Sequences[0].Tokens[0]]++;
            }
            for (int v = 0; v < 3; v++)
            {
                double sigma = Math.Sqrt(expected[v] * (1 - expected[v]) / trials);
                Assert.That((double)counts[v] / trials, Is.EqualTo(expected[v]).Within(4.5 * sigma), $"token {v} at T={temperature}");
            }
        }
    }

    [Test]
    public async Task ConfidenceAtTemperatureIsTheNoiseFreeProbabilityOfTheSample()
    {
        float[] logits = [0f, MathF.Log(2), MathF.Log(3), float.NegativeInfinity];
        var denoiser = new ScriptedDenoiser(4, 3, (_, _, canvas) => canvas.Select(_ => logits).ToArray());
        for (int seed = 0; seed < 50; seed++)
        {
            var options = new DecodeOptions { GenerationLength = 1, Temperature = 2f, Seed = (ulong)seed, Trace = true };
            CommittedToken c = (await new CpuSampler().DecodeAsync(denoiser, [Array.Empty<int>()], options)).Sequences[0].Trace[0].Committed[0];
            Assert.That(c.Confidence, Is.EqualTo((c.Token + 1) / 6.0).Within(1e-6));
        }
    }
}
