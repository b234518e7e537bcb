namespace Saber.Tests;

/// <summary>The worked behaviours of the spec, on hand-written confidences whose outcome is computed by hand.</summary>
public class BehaviourTests
{
    private const int Prompt = 2;
    private static readonly int[] PromptTokens = [3, 4];

    private static async Task<SequenceResult> Decode(IDenoiser denoiser, DecodeOptions options, int[]? prompt = null) =>
        (await new CpuSampler().DecodeAsync(denoiser, [prompt ?? PromptTokens], options with { Trace = true })).Sequences[0];

    private static int[] Positions(IEnumerable<CommittedToken> tokens) => tokens.Select(t => t.Position).ToArray();
    private static int[] Positions(IEnumerable<RemaskedToken> tokens) => tokens.Select(t => t.Position).ToArray();

    [TestCase(SaberVariant.Reference, 1)]
    [TestCase(SaberVariant.Reference, 2)]
    [TestCase(SaberVariant.Reference, 5)]
    [TestCase(SaberVariant.Paper, 1)]
    [TestCase(SaberVariant.Paper, 3)]
    public async Task FirstStepCommitsExactlyTheTopNWithTauOne(SaberVariant variant, int n)
    {
        // Distinct confidences 0.2 .. 0.75, in a shuffled order over 12 positions.
        float P(int g) => 0.2f + 0.05f * (g * 7 % 12);
        var result = await Decode(new ConfidenceDenoiser(Prompt, (_, g) => P(g)),
            new DecodeOptions { GenerationLength = 12, Strategy = new SaberStrategy(variant, MinTokensPerStep: n) });

        int[] expected = Enumerable.Range(0, 12).OrderByDescending(P).Take(n).Order().Select(g => Prompt + g).ToArray();
        Assert.That(result.Trace[0].Tau, Is.EqualTo(1.0), "an empty commit set gives tau = 1");
        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(expected));
        Assert.That(result.Trace[0].Committed.Select(c => c.Token), Is.EqualTo(expected.Select(p => ConfidenceDenoiser.TokenAt(p - Prompt))));
    }

    /// <summary>
    /// n = 1, μ = 1, G = 4. Step 1 commits g0 (0.9). Step 2 drafts g1, g2 (0.95, 0.93 &gt; τ = 0.9) and re-masks g0,
    /// whose confidence fell to 0.5. Step 3: the reference τ still counts g0's stale 0.9, the paper τ does not.
    /// </summary>
    [TestCase(SaberVariant.Reference, (0.9 + 0.95 + 0.93) / 3)]
    [TestCase(SaberVariant.Paper, (0.95 + 0.93) / 2)]
    public async Task TauIsTheMeanCommitConfidence(SaberVariant variant, double expectedTau3)
    {
        float[][] p =
        [
            [0.9f, 0.3f, 0.3f, 0.2f],
            [0.5f, 0.95f, 0.93f, 0.2f],
            [0.6f, 0.95f, 0.93f, 0.2f],
        ];
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => p[Math.Min(step, 3) - 1][g]),
            new DecodeOptions { GenerationLength = 4, Strategy = new SaberStrategy(variant, MinTokensPerStep: 1, RemaskDivisor: 1) });

        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0 }));
        Assert.That(result.Trace[1].Tau, Is.EqualTo(0.9).Within(1e-6));
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 1, Prompt + 2 }));
        Assert.That(Positions(result.Trace[1].Remasked), Is.EqualTo(new[] { Prompt + 0 }));
        Assert.That(result.Trace[1].Remasked[0].Delta, Is.EqualTo(0.5f - 0.9f).Within(1e-6));
        Assert.That(result.Trace[2].Tau, Is.EqualTo(expectedTau3).Within(1e-6));
    }

    /// <summary>
    /// The re-mask count formulae at |D| = 1, 2, 8, 9, 17 (μ = 8; n = 2, and n = 1 where |D| = 1 since the
    /// draft is topped up to n), drafts forced with a fixed threshold.
    /// </summary>
    [TestCase(1, 1, 0)]
    [TestCase(2, 2, 1)]
    [TestCase(2, 8, 1)]
    [TestCase(2, 9, 2)]
    [TestCase(2, 17, 3)]
    [TestCase(4, 8, 2)]
    [TestCase(4, 17, 3)]
    public async Task ReferenceRemaskCount(int n, int drafted, int expectedRemasked)
    {
        // m = min(max(⌊n/2⌋, ⌈|D|/μ⌉), |D| − 1); every fresh draft is a candidate in this variant.
        var result = await Decode(new ConfidenceDenoiser(Prompt, (_, g) => g < drafted ? 0.9f : 0.2f),
            new DecodeOptions { GenerationLength = 40, Strategy = new SaberStrategy(SaberVariant.Reference, n, 8, FixedThreshold: 0.5f) });

        Assert.That(result.Trace[0].Committed, Has.Count.EqualTo(drafted));
        Assert.That(result.Trace[0].Remasked, Has.Count.EqualTo(expectedRemasked));
    }

    [TestCase(1, 1, 0)]
    [TestCase(2, 2, 1)]
    [TestCase(2, 8, 1)]
    [TestCase(2, 9, 1)]
    [TestCase(2, 17, 2)]
    public async Task PaperRemaskCountAndFreshDraftsAreProtected(int n, int drafted, int expectedRemasked)
    {
        // Step 1 commits g0..g9; fresh drafts are not candidates, so nothing is re-masked although m = 1.
        // Step 2 drafts g10..g(10+|D|−1); m = min(max(1, ⌊|D|/μ⌋), |D| − 1) of g0..g9 go back to [MASK].
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => g < (step == 1 ? 10 : 10 + drafted) ? 0.9f : 0.2f),
            new DecodeOptions { GenerationLength = 40, Strategy = new SaberStrategy(SaberVariant.Paper, n, 8, FixedThreshold: 0.5f) });

        Assert.That(result.Trace[0].Committed, Has.Count.EqualTo(10));
        Assert.That(result.Trace[0].Remasked, Is.Empty);
        Assert.That(result.Trace[1].Committed, Has.Count.EqualTo(drafted));
        Assert.That(result.Trace[1].Remasked, Has.Count.EqualTo(expectedRemasked));
        Assert.That(Positions(result.Trace[1].Remasked), Has.All.LessThan(Prompt + 10));
    }

    [Test]
    public async Task RemaskingPicksTheLargestDropThenTheLowestPosition()
    {
        // Reference variant, n = 6, μ = 8: m = min(max(3, ⌈|D|/8⌉), |D| − 1) = 3 whenever |D| ≥ 4.
        float[] first = [0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.2f, 0.2f, 0.2f, 0.2f];
        float[] second = [0.7f, 0.5f, 0.6f, 0.3f, 0.5f, 0.5f, 0.95f, 0.95f, 0.2f, 0.2f];
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => step == 1 ? first[g] : second[g]),
            new DecodeOptions { GenerationLength = 10, Strategy = new SaberStrategy(SaberVariant.Reference, MinTokensPerStep: 6, RemaskDivisor: 8) });

        // Reference: m = min(max(⌊6/2⌋ = 3, ...), ...) at step 1 re-masks 3 of the 6 fresh commits, all with Δ = 0.8:
        // ties go to the lowest positions.
        Assert.That(Positions(result.Trace[0].Remasked), Is.EqualTo(new[] { Prompt + 0, Prompt + 1, Prompt + 2 }));
        Assert.That(result.Trace[0].Remasked.Select(r => r.Delta), Has.All.EqualTo(0.8f).Within(1e-6));

        // Step 2 (τ = 0.8): drafts g6, g7 above τ, tops up to n = 6 with g0, g2, g1 and g8 (g8 before g9 on the tie).
        // Δ: g3 −0.5; g1, g4, g5 −0.3; g2 −0.2; g0 −0.1; g8 0; g6, g7 +0.75. Bottom 3: g3, then g1 and g4 of the tie.
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { 0, 1, 2, 6, 7, 8 }.Select(g => Prompt + g)));
        Assert.That(Positions(result.Trace[1].Remasked), Is.EqualTo(new[] { Prompt + 1, Prompt + 3, Prompt + 4 }));
    }

    [Test]
    public async Task EqualConfidencesAreRankedByPosition()
    {
        // Every row identical: every top-k is decided by the lowest positions first.
        var equal = new ConfidenceDenoiser(Prompt, (_, _) => 0.4f);
        var saber = await Decode(equal, new DecodeOptions { GenerationLength = 8, Strategy = new SaberStrategy(MinTokensPerStep: 3, Backtracking: false) });
        Assert.That(Positions(saber.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0, Prompt + 1, Prompt + 2 }));
        var lowConfidence = await Decode(equal, new DecodeOptions { GenerationLength = 8, Strategy = new LowConfidenceStrategy(4) });
        Assert.That(lowConfidence.Trace.Select(t => Positions(t.Committed)), Is.EqualTo(new[]
        {
            new[] { Prompt + 0, Prompt + 1 }, new[] { Prompt + 2, Prompt + 3 }, new[] { Prompt + 4, Prompt + 5 }, new[] { Prompt + 6, Prompt + 7 },
        }));
        var threshold = await Decode(equal, new DecodeOptions { GenerationLength = 3, Strategy = new ThresholdStrategy(0.9f) });
        Assert.That(threshold.Trace.Select(t => Positions(t.Committed).Single()), Is.EqualTo(new[] { Prompt + 0, Prompt + 1, Prompt + 2 }));
        // Factor 1: rank 2 needs 2/3, so one position (the lowest), then the last two together (only the last rank failed).
        var factor = await Decode(equal, new DecodeOptions { GenerationLength = 3, Strategy = new FactorStrategy(1f) });
        Assert.That(factor.Trace.Select(t => Positions(t.Committed)), Is.EqualTo(new[] { new[] { Prompt + 0 }, new[] { Prompt + 1, Prompt + 2 } }));
    }

    [Test]
    public async Task CompletingABlockActivatesTheNextWithoutRemasking()
    {
        // K = 2, n = 2: step 1's draft fills block 0, so step 7 is skipped although m would be 1;
        // step 2 drafts only inside block 1 although block-0 confidences would be higher.
        var denoiser = new ConfidenceDenoiser(Prompt, (_, g) => g < 2 ? 0.9f : 0.5f);
        var result = await Decode(denoiser, new DecodeOptions { GenerationLength = 4, BlockLength = 2, Strategy = new SaberStrategy() });

        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0, Prompt + 1 }));
        Assert.That(result.Trace[0].Remasked, Is.Empty);
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 2, Prompt + 3 }));
        Assert.That(result.Nfe, Is.EqualTo(2));
        Assert.That(denoiser.Calls, Is.EqualTo(2));
    }

    [Test]
    public async Task PositionsBeyondTheActiveEndAreNeverSelectedEvenWhenMostConfident()
    {
        var result = await Decode(new ConfidenceDenoiser(Prompt, (_, g) => g >= 3 ? 0.99f : 0.3f),
            new DecodeOptions { GenerationLength = 6, BlockLength = 3, Strategy = new SaberStrategy(MinTokensPerStep: 1) });
        var firstBlockSteps = result.Trace.TakeWhile(s => s.Committed.All(c => c.Position < Prompt + 3)).Count();
        Assert.That(firstBlockSteps, Is.GreaterThanOrEqualTo(3), "block 0 needs at least 3 single-token steps");
        Assert.That(result.Trace.Take(firstBlockSteps).SelectMany(s => s.Remasked).Select(r => r.Position), Has.All.LessThan(Prompt + 3));
    }

    [TestCase(6, new[] { 2, 1, 1, 2, 1, 1 })]
    [TestCase(10, new[] { 1, 1, 1, 1, 0, 1, 1, 1, 1, 0 })]
    [TestCase(2, new[] { 4, 4 })]
    public async Task LowConfidenceScheduleAndNfe(int steps, int[] expectedCommits)
    {
        // G = 8, K = 4: k0 = 4 masks per block, s = S/2 steps per block, step j commits ⌊k0/s⌋ + (j < k0 mod s).
        var denoiser = new ConfidenceDenoiser(Prompt, (_, g) => 0.2f + 0.07f * g);
        var result = await Decode(denoiser, new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = new LowConfidenceStrategy(steps) });

        Assert.That(result.Trace.Select(s => s.Committed.Count), Is.EqualTo(expectedCommits));
        Assert.That(result.Nfe, Is.EqualTo(steps));
        Assert.That(denoiser.Calls, Is.EqualTo(steps), "a step that commits nothing still calls the model");
        // Most confident first: g3 before g2 ... within block 0.
        Assert.That(result.Trace[0].Committed[^1].Position, Is.EqualTo(Prompt + 3));
        Assert.That(result.Trace.SelectMany(s => s.Remasked), Is.Empty);
    }

    [Test]
    public async Task ThresholdCommitsEveryConfidentPositionOrElseTheSingleMostConfident()
    {
        float[][] p =
        [
            [0.85f, 0.3f, 0.9f, 0.4f, 0.5f, 0.2f],
            [0.85f, 0.3f, 0.9f, 0.4f, 0.5f, 0.2f],
        ];
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => p[Math.Min(step, 2) - 1][g]),
            new DecodeOptions { GenerationLength = 6, Strategy = new ThresholdStrategy(0.8f) });
        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0, Prompt + 2 }));
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 4 }));
        Assert.That(Positions(result.Trace[2].Committed), Is.EqualTo(new[] { Prompt + 3 }));
        Assert.That(result.Nfe, Is.EqualTo(5));
        Assert.That(result.Trace.Select(s => s.Tau), Has.All.Null);
    }

    [Test]
    public async Task FactorCommitsThePassingPrefixOfTheConfidenceRanking()
    {
        // F = 1: rank i needs c >= 1 - 1/(i + 1): 2/3, 3/4, 4/5, ... (rank 1 always passes).
        float[][] p =
        [
            [0.95f, 0.5f, 0.8f, 0.99f, 0.3f, 0.2f],
            [0.95f, 0.6f, 0.8f, 0.99f, 0.7f, 0.15f],
            [0.95f, 0.2f, 0.8f, 0.99f, 0.7f, 0.15f],
        ];
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => p[Math.Min(step, 3) - 1][g]),
            new DecodeOptions { GenerationLength = 6, Strategy = new FactorStrategy(1f) });
        // 0.99, 0.95, 0.8 pass ranks 1-3; 0.5 fails rank 4's 0.8.
        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0, Prompt + 2, Prompt + 3 }));
        // 0.7, then 0.6 fails rank 2's 2/3: one of three.
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 4 }));
        // Two left: only the last rank can fail, and then the released code commits both.
        Assert.That(Positions(result.Trace[2].Committed), Is.EqualTo(new[] { Prompt + 1, Prompt + 5 }));
        Assert.That(result.Nfe, Is.EqualTo(3));
        Assert.That(result.Trace.Select(s => s.Tau), Has.All.Null);
        Assert.That(result.Trace.SelectMany(s => s.Remasked), Is.Empty);
    }

    [Test]
    public async Task FactorStaysInTheActiveBlock()
    {
        // K = 3: block 1's confident positions wait until block 0 is complete.
        var result = await Decode(new ConfidenceDenoiser(Prompt, (_, g) => g >= 3 ? 0.99f : 0.3f),
            new DecodeOptions { GenerationLength = 6, BlockLength = 3, Strategy = new FactorStrategy(1f) });
        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0 }));
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 1, Prompt + 2 }));
        Assert.That(Positions(result.Trace[2].Committed), Is.EqualTo(new[] { Prompt + 3, Prompt + 4, Prompt + 5 }));
        Assert.That(result.Nfe, Is.EqualTo(3));
    }

    [Test]
    public async Task NoBacktrackingAblationNeverRemasks()
    {
        var denoiser = new RandomDenoiser(7, 40, 39);
        var result = await Decode(denoiser, new DecodeOptions { GenerationLength = 32, Strategy = new SaberStrategy(Backtracking: false) });
        Assert.That(result.Trace.SelectMany(s => s.Remasked), Is.Empty);
        Assert.That(result.Trace.Sum(s => s.Committed.Count), Is.EqualTo(32));
    }

    [Test]
    public async Task FixedThresholdAblationDraftsAgainstTheConstant()
    {
        // τ would be 0.9 after step 1; the fixed θ = 0.35 drafts every position above 0.35 at step 2.
        var result = await Decode(new ConfidenceDenoiser(Prompt, (step, g) => step == 1 ? (g == 0 ? 0.9f : 0.3f) : 0.4f),
            new DecodeOptions { GenerationLength = 5, Strategy = new SaberStrategy(MinTokensPerStep: 1, FixedThreshold: 0.35f, Backtracking: false) });
        Assert.That(Positions(result.Trace[0].Committed), Is.EqualTo(new[] { Prompt + 0 }));
        Assert.That(Positions(result.Trace[1].Committed), Is.EqualTo(new[] { Prompt + 1, Prompt + 2, Prompt + 3, Prompt + 4 }));
        Assert.That(result.Trace[1].Tau, Is.EqualTo(0.35).Within(1e-6), "the trace reports the threshold the draft used");
    }
}
