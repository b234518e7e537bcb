namespace Saber.Tests;

/// <summary>Every invalid input of spec §7: a clear error naming the value, thrown before anything changes.</summary>
public class ValidationTests
{
    private static readonly int[] Prompt = [1, 2, 3];

    private static DecodeOptions Options(DecodingStrategy? strategy = null) =>
        new() { GenerationLength = 8, BlockLength = 4, Strategy = strategy ?? new SaberStrategy() };

    public static IEnumerable<TestCaseData> BadOptions()
    {
        TestCaseData Case(string name, DecodeOptions options, string parameter, string value) =>
            new TestCaseData(options, parameter, value).SetArgDisplayNames(name);
        yield return Case("G=0", Options() with { GenerationLength = 0, BlockLength = null }, "GenerationLength", "got 0");
        yield return Case("G<0", Options() with { GenerationLength = -3, BlockLength = null }, "GenerationLength", "got -3");
        yield return Case("K=0", Options() with { BlockLength = 0 }, "BlockLength", "got 0");
        yield return Case("K<0", Options() with { BlockLength = -4 }, "BlockLength", "got -4");
        yield return Case("G%K", Options() with { BlockLength = 3 }, "BlockLength", "got 3");
        yield return Case("S not multiple", Options(new LowConfidenceStrategy(3)), "Steps", "got 3");
        yield return Case("S=0", Options(new LowConfidenceStrategy(0)), "Steps", "got 0");
        yield return Case("n=0", Options(new SaberStrategy(MinTokensPerStep: 0)), "MinTokensPerStep", "got 0");
        yield return Case("mu=0", Options(new SaberStrategy(RemaskDivisor: 0)), "RemaskDivisor", "got 0");
        yield return Case("T<0", Options() with { Temperature = -0.5f }, "Temperature", "got -0.5");
        yield return Case("T=NaN", Options() with { Temperature = float.NaN }, "Temperature", "got NaN");
        yield return Case("T=inf", Options() with { Temperature = float.PositiveInfinity }, "Temperature", "got Infinity");
        yield return Case("theta=0", Options(new ThresholdStrategy(0f)), "Threshold", "got 0");
        yield return Case("theta>1", Options(new ThresholdStrategy(1.5f)), "Threshold", "got 1.5");
        yield return Case("theta=NaN", Options(new ThresholdStrategy(float.NaN)), "Threshold", "got NaN");
        yield return Case("F=0", Options(new FactorStrategy(0f)), "Factor", "Factor F must be finite and > 0; got 0");
        yield return Case("F<0", Options(new FactorStrategy(-1.5f)), "Factor", "got -1.5");
        yield return Case("F=NaN", Options(new FactorStrategy(float.NaN)), "Factor", "got NaN");
        yield return Case("F=inf", Options(new FactorStrategy(float.PositiveInfinity)), "Factor", "got Infinity");
        yield return Case("fixed theta<0", Options(new SaberStrategy(FixedThreshold: -0.1f)), "FixedThreshold", "got -0.1");
        yield return Case("G=int.MaxValue", Options() with { GenerationLength = int.MaxValue, BlockLength = null }, "GenerationLength", "at most 1048576; got 2147483647");
        yield return Case("G=2^20+1", Options() with { GenerationLength = (1 << 20) + 1, BlockLength = 1 }, "GenerationLength", "got 1048577");
        yield return Case("S>16G", Options(new LowConfidenceStrategy(16 * 8 + 2)), "Steps", "at most 16 x G = 128 (steps past G commit nothing); got 130");
    }

    [Test]
    public void TheLargestLimitsAreAccepted()
    {
        Assert.That(() => (Options() with { GenerationLength = DecodeOptions.MaxGenerationLength, BlockLength = null }).Validate(), Throws.Nothing);
        Assert.That(() => Options(new LowConfidenceStrategy(16 * 8)).Validate(), Throws.Nothing);
    }

    /// <summary>A canvas whose logits [P + G, V] cannot be one array is rejected before any state is allocated.</summary>
    [Test]
    public void ACanvasWhoseLogitsExceedAnArrayIsRejectedUpFront()
    {
        const int vocabulary = 1 << 12;   // 2^20 positions x 2^12 = 2^32 logits
        var denoiser = new CountingDenoiser(new RandomDenoiser(1, vocabulary, 0));
        var options = new DecodeOptions { GenerationLength = DecodeOptions.MaxGenerationLength };
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], options));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20), "nothing of the canvas size was allocated");
        Assert.That(e!.ParamName, Is.EqualTo("GenerationLength"));
        Assert.That(e.Message, Does.Contain($"a canvas of {3 + (1 << 20)} positions, whose logits [{3 + (1 << 20)}, V={vocabulary}] exceed the largest array"));
        Assert.That(denoiser.Calls, Is.Zero);
    }

    [Test]
    public void TheModelsLongestCanvasIsCheckedBeforeTheFirstCall()
    {
        var denoiser = new CountingDenoiser(new LimitedDenoiser(new RandomDenoiser(1, 11, 10), maxSequenceLength: 10));
        var options = Options();   // P = 3, G = 8: 11 positions
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(denoiser, [new[] { 1 }, Prompt], options));
        Assert.That(e!.ParamName, Is.EqualTo("GenerationLength"));
        Assert.That(e.Message, Does.Contain("Prompt 1 (3 tokens) plus generation length G=8 makes a canvas of 11 positions; the model takes at most 10."));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeStepsAsync(denoiser, [Prompt], options));
        Assert.That(denoiser.Calls, Is.Zero);
        Assert.That(() => new CpuSampler().DecodeAsync(denoiser, [new[] { 1, 2 }], options).Wait(), Throws.Nothing, "10 positions fit");
    }

    [Test]
    public void MoreSequencesThanABatchHoldsAreRejected()
    {
        var prompts = Enumerable.Repeat((ReadOnlyMemory<int>)Prompt, DecodeInputs.MaxBatch + 1).ToArray();
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(new RandomDenoiser(1, 11, 10), prompts, Options()));
        Assert.That(e!.Message, Does.Contain("at most 65535 sequences; got 65536 prompts"));
    }

    [TestCaseSource(nameof(BadOptions))]
    public void InvalidOptionsThrowBeforeAnyModelCall(DecodeOptions options, string parameter, string value)
    {
        var denoiser = new RandomDenoiser(1, 11, 10);
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], options));
        Assert.That(e!.ParamName, Is.EqualTo(parameter));
        Assert.That(e.Message, Does.Contain(value));
        // The streaming API validates when called, not at the first MoveNextAsync.
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeStepsAsync(denoiser, [Prompt], options));
    }

    [TestCase(11, "got 11")]
    [TestCase(-1, "got -1")]
    public void MaskIdOutsideTheVocabulary(int mask, string value)
    {
        var denoiser = new RandomDenoiser(1, 11, mask);
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], Options()));
        Assert.That(e!.Message, Does.Contain("Mask id").And.Contain(value));
    }

    [TestCase(new[] { 1, 11, 2 }, "token 11 at position 1")]
    [TestCase(new[] { -2 }, "token -2 at position 0")]
    [TestCase(new[] { 4, 5, 10 }, "mask id 10 at position 2")]
    public void BadPromptTokens(int[] prompt, string message)
    {
        var denoiser = new CountingDenoiser(new RandomDenoiser(1, 11, 10));
        var e = Assert.CatchAsync<ArgumentException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt, prompt], Options()));
        Assert.That(e!.Message, Does.Contain("Prompt 1").And.Contain(message));
        Assert.That(denoiser.Calls, Is.Zero);
    }

    public static IEnumerable<TestCaseData> BadLogits()
    {
        // Step 1 of a Saber decode with P = 3, G = 8, K = 4 reads positions 3..6.
        TestCaseData Case(string name, Action<int, int, float[]> edit, string message) =>
            new TestCaseData(edit, message).SetArgDisplayNames(name);
        yield return Case("NaN", (pos, _, row) => { if (pos == 5) row[7] = float.NaN; }, "logit NaN at vocabulary index 7 of position 5");
        yield return Case("+inf", (pos, _, row) => { if (pos == 4) row[0] = float.PositiveInfinity; }, "logit Infinity at vocabulary index 0 of position 4");
        yield return Case("only mask finite", (pos, _, row) => { if (pos == 6) { Array.Fill(row, float.NegativeInfinity); row[10] = 0; } },
            "position 6 (sequence 0, step 1) has no finite logit besides the mask id 10");
    }

    [TestCaseSource(nameof(BadLogits))]
    public void NonFiniteLogitInAnActiveRow(Action<int, int, float[]> edit, string message)
    {
        var denoiser = new RandomDenoiser(1, 11, 10) { Edit = (step, _, pos, row) => edit(pos, step, row) };
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], Options()));
        Assert.That(e!.Message, Does.Contain(message));
    }

    [Test]
    public async Task NonFiniteLogitsOutsideTheActiveRowsAndMinusInfinityAreAllowed()
    {
        // Prompt rows (0..2) and rows past the active end are never read; −∞ bans a token.
        var denoiser = new RandomDenoiser(1, 11, 10)
        {
            Edit = (_, _, pos, row) =>
            {
                if (pos < 3) row[1] = float.NaN;
                if (pos >= 7) row[2] = float.PositiveInfinity;
                row[3] = float.NegativeInfinity;
            },
        };
        var options = Options(new ThresholdStrategy(0.99f)) with { GenerationLength = 4, BlockLength = 4 };
        var result = await new CpuSampler().DecodeAsync(denoiser, [Prompt], options);
        Assert.That(result.Sequences[0].Tokens.ToArray(), Has.None.EqualTo(3), "a banned token was committed");
    }

    [TestCase(-1, "returned 10 rows for a canvas of 11 positions")]
    [TestCase(1, "logits have shape [12, 11]; expected [11, 11]")]
    public void WrongNumberOfRows(int extraRows, string message)
    {
        var denoiser = new ShapeDenoiser(11, 10, rows => rows + extraRows, 11);
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], Options()));
        Assert.That(e!.Message, Does.Contain(message));
    }

    [Test]
    public void WrongVocabulary()
    {
        var denoiser = new ShapeDenoiser(11, 10, rows => rows, 12);
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt], Options()));
        Assert.That(e!.Message, Does.Contain("vocabulary 12; the model reports V=11"));
    }

    [Test]
    public void WrongNumberOfSequences()
    {
        var denoiser = new ShapeDenoiser(11, 10, rows => rows, 11, dropLast: true);
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(denoiser, [Prompt, Prompt], Options()));
        Assert.That(e!.Message, Does.Contain("logits for 1 sequences; 2 canvases were sent"));
    }

    [Test]
    public void FailedStepLeavesTheBatchUnchanged()
    {
        // A step whose logits are bad throws before any state changes: retrying it with good logits
        // gives exactly what a batch that never saw the bad logits gives.
        var good = new RandomDenoiser(5, 13, 12);
        var bad = new RandomDenoiser(5, 13, 12) { Edit = (_, seq, pos, row) => { if (seq == 1 && pos == 9) row[4] = float.NaN; } };
        int[][] prompts = [[1, 2], [3, 4, 5]];
        var options = new DecodeOptions { GenerationLength = 8, Strategy = new SaberStrategy(MinTokensPerStep: 3), Trace = true };
        DecodeBatch Create() => DecodeBatch.Create(prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options, 13, 12);

        var retried = Create();
        var clean = Create();
        IReadOnlyList<SequenceLogits> Forward(IDenoiser d, DecodeBatch batch) => d.ForwardAsync(batch.NextRequest(), default).AsTask().Result;

        retried.Apply(Forward(good, retried), snapshots: false);
        clean.Apply(Forward(good, clean), snapshots: false);
        Assert.Throws<InvalidLogitsException>(() => retried.Apply(Forward(bad, retried), snapshots: false));
        Assert.That(retried.Step, Is.EqualTo(1));
        while (!clean.Finished)
        {
            clean.Apply(Forward(good, clean), snapshots: false);
            retried.Apply(Forward(good, retried), snapshots: false);
        }
        Assert.That(retried.Finished, Is.True);
        var a = retried.ToResult(TimeSpan.Zero);
        var b = clean.ToResult(TimeSpan.Zero);
        for (int s = 0; s < prompts.Length; s++)
        {
            Assert.That(a.Sequences[s].Canvas, Is.EqualTo(b.Sequences[s].Canvas));
            Assert.That(a.Sequences[s].Nfe, Is.EqualTo(b.Sequences[s].Nfe));
            for (int t = 0; t < b.Sequences[s].Trace.Count; t++)
                TraceComparison.AssertIdenticalStep(b.Sequences[s].Trace[t], a.Sequences[s].Trace[t], s);
        }
    }

    /// <summary>Finite logits of a chosen (possibly wrong) shape.</summary>
    private sealed class ShapeDenoiser(int vocabulary, int mask, Func<int, int> rows, int returnedVocabulary, bool dropLast = false) : IDenoiser
    {
        public int VocabularySize => vocabulary;
        public int MaskId => mask;

        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
        {
            var result = request.Canvases.Select(c =>
            {
                int r = rows(c.Length);
                return SequenceLogits.FromFloat32(new float[r * returnedVocabulary], r, returnedVocabulary);
            }).ToList();
            if (dropLast) result.RemoveAt(result.Count - 1);
            return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
        }
    }
}

/// <summary>Counts the calls made to another denoiser.</summary>
/// <summary>A denoiser that declares a longest canvas.</summary>
internal sealed class LimitedDenoiser(IDenoiser inner, int maxSequenceLength) : IDenoiser
{
    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => maxSequenceLength;
    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken) => inner.ForwardAsync(request, cancellationToken);
}

internal sealed class CountingDenoiser(IDenoiser inner) : IDenoiser
{
    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => inner.MaxSequenceLength;
    public int Calls { get; private set; }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Calls++;
        return inner.ForwardAsync(request, cancellationToken);
    }
}
