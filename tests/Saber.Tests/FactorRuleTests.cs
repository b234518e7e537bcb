namespace Saber.Tests;

/// <summary>
/// The CPU sampler's factor rule against <see cref="FactorRule"/>, a literal rendering of docs/strategies.md that shares
/// no code with it: every step of many random decodes, the block's masked positions' confidences by the exact row
/// definition (<see cref="ExactMath.Row"/>), ties and exact threshold hits included.
/// </summary>
public class FactorRuleTests
{
    private const int Vocabulary = 6, Mask = 5;

    /// <summary>
    /// Rows drawn per (case, step, position) from a few kinds: one finite logit (c = 1), two or three equal maxima
    /// (c = 1/2, 1/3: 1/2 is rank 2's threshold at F = 1.5 and rank 3's at F = 2, exactly), peaked random rows, and rows
    /// from a small shared pool (equal rows: equal confidences, ties broken by position).
    /// </summary>
    private sealed class TableDenoiser(int seed) : IDenoiser
    {
        private readonly float[][] pool = Enumerable.Range(0, 3).Select(i => RandomRow(new Random(seed * 31 + i))).ToArray();

        public int VocabularySize => Vocabulary;
        public int MaskId => Mask;

        public float[] RowAt(int step, int position)
        {
            var rng = new Random(HashCode.Combine(seed, step, position));
            float[] row = new float[Vocabulary];
            switch (rng.Next(6))
            {
                case 0:
                    Array.Fill(row, float.NegativeInfinity);
                    row[rng.Next(Mask)] = 1f;
                    break;
                case 1:
                case 2:
                    Array.Fill(row, float.NegativeInfinity);
                    for (int k = 0; k < 2 + rng.Next(2); k++) row[k] = 0.5f;
                    break;
                case 3:
                    row = RandomRow(rng);
                    break;
                default:
                    row = (float[])pool[rng.Next(pool.Length)].Clone();
                    break;
            }
            return row;
        }

        private static float[] RandomRow(Random rng)
        {
            var row = Enumerable.Range(0, Vocabulary).Select(_ => (float)rng.NextDouble() * 2f).ToArray();
            row[rng.Next(Mask)] += 2f + 6f * (float)rng.NextDouble();
            row[Mask] = float.NegativeInfinity;
            return row;
        }

        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
        {
            var result = new List<SequenceLogits>();
            foreach (ReadOnlyMemory<int> canvas in request.Canvases)
            {
                var data = new float[canvas.Length * Vocabulary];
                for (int pos = 0; pos < canvas.Length; pos++) RowAt(request.Step, pos).CopyTo(data, pos * Vocabulary);
                result.Add(SequenceLogits.FromFloat32(data, canvas.Length, Vocabulary));
            }
            return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
        }
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        // 1.5 and 2 twice: their thresholds hit the rows' exact 1/2 (a confidence equal to its threshold passes).
        float[] factors = [1e-3f, 0.25f, 1f, 1.5f, 2f, 1.5f, 2f, 3f, 8f, 1e6f];
        for (int c = 0; c < 160; c++)
        {
            var rng = new Random(c);
            int g = 1 + rng.Next(16);
            int[] divisors = Enumerable.Range(1, g).Where(k => g % k == 0).ToArray();
            int k = divisors[rng.Next(divisors.Length)];
            float factor = factors[c % factors.Length];
            yield return new TestCaseData(c, g, k, factor).SetArgDisplayNames($"case{c}", $"G{g}", $"K{k}", $"F{factor}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task EveryStepCommitsWhatTheLiteralRuleCommits(int seed, int g, int k, float factor)
    {
        const int prompt = 2;
        var denoiser = new TableDenoiser(seed);
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = new FactorStrategy(factor), Trace = true };
        var result = await new CpuSampler().DecodeAsync(denoiser, [new[] { 0, 1 }], options);
        SequenceResult sequence = result.Sequences[0];

        var decoded = new bool[g];
        int step = 0;
        while (decoded.Contains(false))
        {
            Assert.That(step, Is.LessThan(sequence.Trace.Count), "the decode ended with masks left");
            step++;
            int block = Array.IndexOf(decoded, false) / k;   // the first block with a mask is the active one
            int[] masked = Enumerable.Range(block * k, k).Where(i => !decoded[i]).ToArray();
            float[] confidences = masked.Select(i => Confidence(denoiser.RowAt(step, prompt + i), step, prompt + i)).ToArray();
            int[] want = FactorRule.Select(confidences, factor).Select(j => prompt + masked[j]).Order().ToArray();
            StepTrace got = sequence.Trace[step - 1];
            Assert.That(got.Committed.Select(c => c.Position), Is.EqualTo(want), $"step {step}: confidences {string.Join(", ", confidences.Select(c => c.ToString("R")))}");
            Assert.That(got.Remasked, Is.Empty);
            Assert.That(got.Tau, Is.Null);
            foreach (int p in want) decoded[p - prompt] = true;
        }
        Assert.That(sequence.Nfe, Is.EqualTo(step));
    }

    private static float Confidence(float[] row, int step, int position) =>
        ExactMath.Row(row, Mask, -1, ConfidenceMetric.MaxProb, 0f, 0, new RowCoordinates(step, 0, position)).Confidence;

    [Test]
    public void TheLiteralRuleOnTheSpecsWorkedExample()
    {
        // docs/strategies.md, F = 1: ranks 1-3 pass (0.75 meets rank 3's threshold exactly and, tied with position 4,
        // goes first by position); then one of three; then both of the last two (only the last rank failed).
        Assert.That(FactorRule.Select([0.95f, 0.5f, 0.75f, 0.99f, 0.75f, 0.3f], 1f), Is.EquivalentTo(new[] { 0, 2, 3 }));
        Assert.That(FactorRule.Select([0.6f, 0.7f, 0.1f], 1f), Is.EquivalentTo(new[] { 1 }));
        Assert.That(FactorRule.Select([0.2f, 0.1f], 1f), Is.EquivalentTo(new[] { 0, 1 }));
        Assert.That(FactorRule.Select([0.2f], 1f), Is.EquivalentTo(new[] { 0 }));
        // Ties by position; −0 and +0 tie.
        Assert.That(FactorRule.Select([0.5f, 0.9f, 0.9f, 0.9f, 0.1f, 0.1f], 1f), Is.EquivalentTo(new[] { 1, 2, 3 }));
        Assert.That(FactorRule.Select([0f, -0f, 0f, 0f], 8f), Is.EquivalentTo(new[] { 0, 1, 2, 3 }));
    }

    [Test]
    public void RankThresholdsAreComputedInDouble()
    {
        // 1 − 1/3 in double is below float 2/3 widened, above the float just below it.
        Assert.That(FactorStrategy.RankThreshold(1f, 2), Is.EqualTo(1.0 - 1.0 / 3.0));
        Assert.That((double)(2f / 3f) >= FactorStrategy.RankThreshold(1f, 2), Is.True);
        Assert.That((double)MathF.BitDecrement(2f / 3f) >= FactorStrategy.RankThreshold(1f, 2), Is.False);
        Assert.That(FactorStrategy.RankThreshold(1f, 3), Is.EqualTo(0.75));
        Assert.That(FactorStrategy.RankThreshold(1.5f, 2), Is.EqualTo(0.5));
        Assert.That(FactorStrategy.RankThreshold(4f, 3), Is.EqualTo(0.0));
    }
}
