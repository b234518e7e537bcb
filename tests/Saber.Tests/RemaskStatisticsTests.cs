using Saber.Cli;
using Saber.Onnx;

namespace Saber.Tests;

/// <summary>
/// The re-mask statistics of a decode (<see cref="RemaskStatistics"/>): on a scripted decode whose re-masks are worked out
/// by hand, step by step in a stream, and against a count made here over the trace of random and real (models/tiny) decodes.
/// </summary>
public class RemaskStatisticsTests
{
    private const int Prompt = 2;
    private static readonly int[] PromptTokens = [3, 4];

    /// <summary>
    /// Saber reference, n = 1, μ = 1 (m = |D| − 1), fixed threshold 0.5 (the draft is every undecoded position above 0.5),
    /// G = 4. Per step the confidence and the predicted token of g0..g3:
    /// step 1: g0 0.9 (token 0), g1 0.95 (1), g2 0.2, g3 0.2. D = {g0, g1}, m = 1; Δ = c (cprev = 0), so g0 (Δ 0.9) is
    ///   re-masked in the step that committed it, holding token 0.
    /// step 2: g0 0.8 (token 5), g1 0.95, g2 0.9 (2), g3 0.2. D = {g0, g2}: g0 comes back as 5, a change from 0. m = 1;
    ///   Δ g0 = 0.8 − 0.9 = −0.1, g1 = 0, g2 = 0.7: g0 is re-masked again, holding 5 (its second re-mask).
    /// step 3: g0 0.7 (token <paramref name="lastToken"/>), g3 0.6 (3). D = {g0, g3}: every position decoded, finished.
    /// So 2 re-masks and 1 position re-masked twice; the second re-mask changed unless g0 comes back as 5.
    /// </summary>
    private static ConfidenceDenoiser Scripted(int lastToken)
    {
        float[][] p =
        [
            [0.9f, 0.95f, 0.2f, 0.2f],
            [0.8f, 0.95f, 0.9f, 0.2f],
            [0.7f, 0.95f, 0.9f, 0.6f],
        ];
        int[][] tokens =
        [
            [0, 1, 2, 3],
            [5, 1, 2, 3],
            [lastToken, 1, 2, 3],
        ];
        return new ConfidenceDenoiser(Prompt, (step, g) => p[step - 1][g], (step, g) => tokens[step - 1][g]);
    }

    private static readonly DecodeOptions ScriptedOptions = new()
    {
        GenerationLength = 4,
        Strategy = new SaberStrategy(SaberVariant.Reference, MinTokensPerStep: 1, RemaskDivisor: 1, FixedThreshold: 0.5f),
        Trace = true,
    };

    // Back as 5, the token it held at its second re-mask: only the first re-mask changed. Back as 0, its first token: both
    // changed (each re-mask compares with the next commit, not the final token). Back as 7: both changed.
    [TestCase(5, 1)]
    [TestCase(0, 2)]
    [TestCase(7, 2)]
    public async Task AScriptedDecodeHasTheReMasksWorkedOutByHand(int lastToken, int changed)
    {
        SequenceResult result = (await new CpuSampler().DecodeAsync(Scripted(lastToken), [PromptTokens], ScriptedOptions)).Sequences[0];

        // The decode went as scripted.
        Assert.That(result.Nfe, Is.EqualTo(3));
        Assert.That(result.Trace.Select(s => s.Remasked.Select(r => r.Position)), Is.EqualTo(new[] { new[] { Prompt }, new[] { Prompt }, [] }));
        Assert.That(result.Trace.Select(s => s.Committed.Select(c => (c.Position - Prompt, c.Token))), Is.EqualTo(new[]
        {
            new[] { (0, 0), (1, 1) },
            new[] { (0, 5), (2, 2) },
            new[] { (0, lastToken), (3, 3) },
        }));
        Assert.That(result.Tokens.ToArray(), Is.EqualTo(new[] { lastToken, 1, 2, 3 }));

        Assert.That(result.RemaskStatistics, Is.EqualTo(new RemaskStatistics(Remasks: 2, RemasksChanged: changed, PositionsRemaskedTwice: 1, RemasksPending: 0)));
    }

    [Test]
    public async Task EachStreamedStepCarriesTheCountsSoFarWithThePendingReMasks()
    {
        var steps = new List<SequenceStep>();
        await foreach (DecodeStepUpdate update in new CpuSampler().DecodeStepsAsync(Scripted(0), [PromptTokens], ScriptedOptions))
            steps.Add(update.Sequences.Single());

        // After step 1: g0 re-masked, not yet back. After step 2: g0 back as 5 (changed from 0) and re-masked again. After
        // step 3: back as 0 (changed from 5), nothing pending.
        Assert.That(steps.Select(s => s.RemaskStatistics), Is.EqualTo(new[]
        {
            new RemaskStatistics(1, 0, 0, 1),
            new RemaskStatistics(2, 1, 1, 1),
            new RemaskStatistics(2, 2, 1, 0),
        }));
    }

    [Test]
    public async Task TheEngineCountsTheScriptedDecodeAlike()
    {
        await using var engine = new Saber.Service.SaberEngine(Scripted(0));
        SequenceResult result = await engine.DecodeAsync(PromptTokens, ScriptedOptions with { Trace = false });
        Assert.That(result.RemaskStatistics, Is.EqualTo(new RemaskStatistics(2, 2, 1, 0)));
    }

    [Test]
    public void CountingATraceTakesEachStepsCommitsBeforeItsReMasks()
    {
        // Position 10 is committed and re-masked in step 1, committed again in step 2 (changed) and re-masked, committed in
        // step 3 (unchanged). Position 11 is re-masked in step 2 and not committed since: pending.
        var counter = new RemaskCounter(promptLength: 10, generationLength: 3);
        counter.Add(new StepTrace(1, 1, [new(10, 4, 0.9f), new(11, 6, 0.9f)], [new(10, 0.1f)]));
        Assert.That(counter.Statistics, Is.EqualTo(new RemaskStatistics(1, 0, 0, 1)));
        counter.Add(new StepTrace(2, 1, [new(10, 5, 0.9f)], [new(10, -0.1f), new(11, -0.2f)]));
        Assert.That(counter.Statistics, Is.EqualTo(new RemaskStatistics(3, 1, 1, 2)));
        counter.Add(new StepTrace(3, 1, [new(10, 5, 0.9f), new(12, 1, 0.9f)], []));
        Assert.That(counter.Statistics, Is.EqualTo(new RemaskStatistics(3, 1, 1, 1)));

        Assert.That(() => counter.Remasked(12 + 1), Throws.InstanceOf<ArgumentOutOfRangeException>(), "outside [P, P+G)");
        var fresh = new RemaskCounter(0, 2);
        Assert.That(() => fresh.Remasked(0), Throws.InvalidOperationException, "a masked position cannot be re-masked");
    }

    /// <summary>The counts made here from a trace alone: an independent record of every commit and re-mask.</summary>
    private static RemaskStatistics CountOverTrace(IReadOnlyList<StepTrace> trace)
    {
        var holds = new Dictionary<int, int>();         // position → the token it holds now
        var heldAtRemask = new Dictionary<int, int>();  // position → the token it held when re-masked, until committed again
        var times = new Dictionary<int, int>();         // position → re-masks
        int remasks = 0, changed = 0;
        foreach (StepTrace step in trace)
        {
            foreach (CommittedToken c in step.Committed)
            {
                if (heldAtRemask.Remove(c.Position, out int before) && before != c.Token) changed++;
                holds[c.Position] = c.Token;
            }
            foreach (RemaskedToken r in step.Remasked)
            {
                remasks++;
                heldAtRemask[r.Position] = holds[r.Position];
                holds.Remove(r.Position);
                times[r.Position] = times.GetValueOrDefault(r.Position) + 1;
            }
        }
        return new RemaskStatistics(remasks, changed, times.Values.Count(t => t > 1), heldAtRemask.Count);
    }

    public static IEnumerable<TestCaseData> RandomCases()
    {
        DecodingStrategy[] strategies =
        [
            new SaberStrategy(SaberVariant.Reference),
            new SaberStrategy(SaberVariant.Reference, MinTokensPerStep: 4, RemaskDivisor: 2),
            new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 1, RemaskDivisor: 1),
            new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 3, RemaskDivisor: 2),
        ];
        foreach (DecodingStrategy strategy in strategies)
            foreach (int blockLength in new[] { 8, 16 })   // K > n, so that a draft does not fill the block (no re-mask then)
                yield return new TestCaseData(strategy, blockLength).SetArgDisplayNames(strategy.ToString(), $"K{blockLength}");
    }

    [TestCaseSource(nameof(RandomCases))]
    public async Task OnRandomLogitsTheStatisticsAreTheCountOverTheTraceWithAndWithoutTracing(DecodingStrategy strategy, int blockLength)
    {
        var denoiser = new RandomDenoiser(11, 40, 39, LogitsElementType.Float32, tieRate: 0.1);
        ReadOnlyMemory<int>[] prompts = [new[] { 1, 2 }, new[] { 3 }, Array.Empty<int>(), new[] { 5, 6, 7, 8 }];
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = blockLength, Strategy = strategy, Temperature = 0.7f, Seed = 5, Trace = true };
        DecodeResult traced = await new CpuSampler().DecodeAsync(denoiser, prompts, options);
        DecodeResult plain = await new CpuSampler().DecodeAsync(denoiser, prompts, options with { Trace = false });

        for (int b = 0; b < prompts.Length; b++)
        {
            RemaskStatistics counted = CountOverTrace(traced.Sequences[b].Trace);
            Assert.That(traced.Sequences[b].RemaskStatistics, Is.EqualTo(counted), $"sequence {b}");
            Assert.That(plain.Sequences[b].RemaskStatistics, Is.EqualTo(counted), $"sequence {b} without tracing");
            Assert.That(counted.RemasksPending, Is.Zero, "a finished decode has every position committed");
        }
        Assert.That(traced.Sequences.Sum(s => s.RemaskStatistics!.Remasks), Is.GreaterThan(0), "test set-up: the decodes should re-mask");
    }

    [TestCase(SaberVariant.Reference)]
    [TestCase(SaberVariant.Paper)]
    public async Task OnTheShippedModelTheStatisticsAreTheCountOverTheTrace(SaberVariant variant)
    {
        using LocalModel model = LocalModel.Open(ModelArguments.ShippedModel());
        ReadOnlyMemory<int>[] prompts = new[] { "def f(x):\n", "import os\n", "class A:\n    def " }
            .Select(p => (ReadOnlyMemory<int>)model.Tokenizer.Encode(p)).ToArray();
        var options = new DecodeOptions { GenerationLength = 48, BlockLength = 16, Strategy = new SaberStrategy(variant), Trace = true };
        DecodeResult result = await new CpuSampler().DecodeAsync(model.Denoiser, prompts, options);

        foreach (SequenceResult sequence in result.Sequences)
        {
            RemaskStatistics counted = CountOverTrace(sequence.Trace);
            TestContext.Out.WriteLine($"NFE {sequence.Nfe}: {counted}");
            Assert.That(sequence.RemaskStatistics, Is.EqualTo(counted));
        }
        Assert.That(result.Sequences.Sum(s => s.RemaskStatistics!.Remasks), Is.GreaterThan(0), "test set-up: Saber re-masks on this model");
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public async Task TheStrategiesThatNeverReMaskCountZero(int which)
    {
        DecodingStrategy strategy = which switch
        {
            0 => new LowConfidenceStrategy(8),
            1 => new ThresholdStrategy(0.5f),
            _ => new SaberStrategy(Backtracking: false),
        };
        var denoiser = new RandomDenoiser(3, 29, 28);
        DecodeResult result = await new CpuSampler().DecodeAsync(denoiser, [new[] { 1, 2 }], new DecodeOptions { GenerationLength = 8, Strategy = strategy });
        Assert.That(result.Sequences[0].RemaskStatistics, Is.EqualTo(RemaskStatistics.None));
    }
}
