using System.Text.Json;
using Saber.Denoisers;
using Saber.Json;

namespace Saber.Tests;

/// <summary>System.Text.Json support: the wire shape, round trips of options and results, and clear errors.</summary>
public class JsonTests
{
    /// <summary>Reflection over the attributes, as <c>JsonSerializer.Serialize(x)</c> does with no options.</summary>
    private static readonly JsonSerializerOptions Reflection = JsonSerializerOptions.Default;

    /// <summary>ASP.NET Core's defaults (camelCase policy, numbers from strings): the attributes fix the shape anyway.</summary>
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private static readonly JsonSerializerOptions[] AllOptions = [SaberJson.Options, Reflection, Web];

    public static IEnumerable<TestCaseData> Strategies()
    {
        foreach (SaberVariant variant in Enum.GetValues<SaberVariant>())
        {
            yield return new TestCaseData(new SaberStrategy(variant)).SetArgDisplayNames($"saber {variant} defaults");
            yield return new TestCaseData(new SaberStrategy(variant, 3, 5, false, 0.625f)).SetArgDisplayNames($"saber {variant} all set");
            yield return new TestCaseData(new SaberStrategy(variant, FixedThreshold: 1f)).SetArgDisplayNames($"saber {variant} theta=1");
        }
        foreach (ConfidenceMetric metric in Enum.GetValues<ConfidenceMetric>())
            yield return new TestCaseData(new LowConfidenceStrategy(32, metric)).SetArgDisplayNames($"low-confidence {metric}");
        yield return new TestCaseData(new ThresholdStrategy()).SetArgDisplayNames("threshold default");
        yield return new TestCaseData(new ThresholdStrategy(0.123456789f)).SetArgDisplayNames("threshold 0.123456789");
        yield return new TestCaseData(new FactorStrategy()).SetArgDisplayNames("factor default");
        yield return new TestCaseData(new FactorStrategy(2.718281828f)).SetArgDisplayNames("factor 2.718281828");
        yield return new TestCaseData(new FactorStrategy(1e-30f)).SetArgDisplayNames("factor 1e-30");
    }

    [TestCaseSource(nameof(Strategies))]
    public void EveryStrategyRoundTrips(DecodingStrategy strategy)
    {
        string expected = JsonSerializer.Serialize(strategy, SaberJsonContext.Default.DecodingStrategy);
        foreach (JsonSerializerOptions options in AllOptions)
        {
            string json = JsonSerializer.Serialize(strategy, options);
            Assert.That(json, Is.EqualTo(expected), "the same JSON from the context, reflection and web defaults");
            Assert.That(JsonSerializer.Deserialize<DecodingStrategy>(json, options), Is.EqualTo(strategy));
        }
        // The concrete type serialized on its own carries no discriminator but reads back the same.
        Type type = strategy.GetType();
        string bare = JsonSerializer.Serialize(strategy, type, SaberJson.Options);
        Assert.That(JsonSerializer.Deserialize(bare, type, SaberJson.Options), Is.EqualTo(strategy));
    }

    [TestCaseSource(nameof(Strategies))]
    public void DecodeOptionsWithEveryStrategyRoundTrip(DecodingStrategy strategy)
    {
        DecodeOptions[] all =
        [
            new() { GenerationLength = 64, Strategy = strategy },
            new() { GenerationLength = 64, BlockLength = 16, Strategy = strategy, Temperature = 0.7f, Seed = ulong.MaxValue, Trace = true },
        ];
        foreach (DecodeOptions original in all)
            foreach (JsonSerializerOptions options in AllOptions)
            {
                string json = JsonSerializer.Serialize(original, options);
                Assert.That(json, Is.EqualTo(JsonSerializer.Serialize(original, SaberJsonContext.Default.DecodeOptions)));
                DecodeOptions? back = JsonSerializer.Deserialize<DecodeOptions>(json, options);
                Assert.That(back, Is.EqualTo(original), json);
                Assert.That(back!.EffectiveBlockLength, Is.EqualTo(original.EffectiveBlockLength));
            }
    }

    /// <summary>The wire shape, written out by hand: property names, discriminators and enum names as the CLI spells them.</summary>
    [Test]
    public void TheJsonShapeIsTheDocumentedOne()
    {
        var options = new DecodeOptions
        {
            GenerationLength = 64, BlockLength = 16, Temperature = 0.5f, Seed = 42, Trace = true,
            Strategy = new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 3, RemaskDivisor: 4, Backtracking: false, FixedThreshold: 0.75f),
        };
        const string expected =
            """{"generationLength":64,"blockLength":16,"strategy":{"type":"saber","variant":"paper","minTokensPerStep":3,"remaskDivisor":4,"backtracking":false,"fixedThreshold":0.75},"temperature":0.5,"seed":42,"trace":true}""";
        Assert.That(JsonSerializer.Serialize(options, SaberJson.Options), Is.EqualTo(expected));
        Assert.That(JsonSerializer.Serialize(options, Reflection), Is.EqualTo(expected));

        Assert.That(JsonSerializer.Serialize<DecodingStrategy>(new SaberStrategy(), SaberJson.Options),
            Is.EqualTo("""{"type":"saber","variant":"reference","minTokensPerStep":2,"remaskDivisor":8,"backtracking":true,"fixedThreshold":null}"""));
        Assert.That(JsonSerializer.Serialize<DecodingStrategy>(new LowConfidenceStrategy(32, ConfidenceMetric.MaxProb), SaberJson.Options),
            Is.EqualTo("""{"type":"low-confidence","steps":32,"metric":"maxprob"}"""));
        Assert.That(JsonSerializer.Serialize<DecodingStrategy>(new LowConfidenceStrategy(8, ConfidenceMetric.NegEntropy), SaberJson.Options),
            Is.EqualTo("""{"type":"low-confidence","steps":8,"metric":"negentropy"}"""));
        Assert.That(JsonSerializer.Serialize<DecodingStrategy>(new ThresholdStrategy(0.9f), SaberJson.Options),
            Is.EqualTo("""{"type":"threshold","threshold":0.9}"""));
        Assert.That(JsonSerializer.Serialize<DecodingStrategy>(new FactorStrategy(), SaberJson.Options),
            Is.EqualTo("""{"type":"factor","factor":1}"""));

        var trace = new StepTrace(3, 0.8125, [new CommittedToken(7, 42, 0.5f)], [new RemaskedToken(5, -0.25f), new RemaskedToken(9, float.PositiveInfinity)]);
        Assert.That(JsonSerializer.Serialize(trace, SaberJson.Options), Is.EqualTo(
            """{"step":3,"tau":0.8125,"committed":[{"position":7,"token":42,"confidence":0.5}],"remasked":[{"position":5,"delta":-0.25},{"position":9,"delta":"Infinity"}]}"""));
        Assert.That(JsonSerializer.Serialize(new StepTrace(1, null, [], []), SaberJson.Options),
            Is.EqualTo("""{"step":1,"tau":null,"committed":[],"remasked":[]}"""));
    }

    /// <summary>Hand-written requests: "type" anywhere, omitted parameters take their defaults, enum names in any case.</summary>
    [Test]
    public void HandWrittenJsonReads()
    {
        foreach (JsonSerializerOptions options in AllOptions)
        {
            DecodeOptions? o = JsonSerializer.Deserialize<DecodeOptions>(
                """{"strategy":{"metric":"Margin","steps":8,"type":"low-confidence"},"generationLength":16}""", options);
            Assert.That(o, Is.EqualTo(new DecodeOptions { GenerationLength = 16, Strategy = new LowConfidenceStrategy(8, ConfidenceMetric.Margin) }));
            Assert.That(JsonSerializer.Deserialize<DecodeOptions>("""{"generationLength":16}""", options)!.Strategy, Is.EqualTo(new SaberStrategy()));
            Assert.That(JsonSerializer.Deserialize<DecodingStrategy>("""{"type":"saber","variant":"paper"}""", options), Is.EqualTo(new SaberStrategy(SaberVariant.Paper)));
            Assert.That(JsonSerializer.Deserialize<DecodingStrategy>("""{"type":"threshold"}""", options), Is.EqualTo(new ThresholdStrategy()));
            Assert.That(JsonSerializer.Deserialize<DecodingStrategy>("""{"type":"factor"}""", options), Is.EqualTo(new FactorStrategy(1f)));
            Assert.That(JsonSerializer.Deserialize<DecodingStrategy>("""{"factor":0.5,"type":"factor"}""", options), Is.EqualTo(new FactorStrategy(0.5f)));
        }
    }

    private static JsonException ReadFails<T>(string json, JsonSerializerOptions options) =>
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<T>(json, options), json)!;

    [Test]
    public void AnUnknownDiscriminatorIsAJsonExceptionNamingIt()
    {
        foreach (JsonSerializerOptions options in AllOptions)
        {
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"beam-search","steps":4}""", options).Message,
                Does.Contain("'beam-search'").And.Contain("saber, low-confidence, threshold"));
            Assert.That(ReadFails<DecodeOptions>("""{"generationLength":8,"strategy":{"type":"Saber"}}""", options).Message, Does.Contain("'Saber'"));
            Assert.That(ReadFails<DecodingStrategy>("""{"type":3}""", options).Message, Does.Contain("\"type\" must be a string").And.Contain("got 3"));
        }
    }

    [Test]
    public void AMissingDiscriminatorIsAJsonException()
    {
        foreach (JsonSerializerOptions options in AllOptions)
        {
            Assert.That(ReadFails<DecodingStrategy>("""{"steps":4,"metric":"margin"}""", options).Message, Does.Contain("needs a \"type\""));
            Assert.That(ReadFails<DecodeOptions>("""{"generationLength":8,"strategy":{}}""", options).Message, Does.Contain("needs a \"type\""));
            Assert.That(ReadFails<DecodingStrategy>("""[1]""", options).Message, Does.Contain("must be a JSON object"));
        }
    }

    [Test]
    public void InvalidValuesAreJsonExceptionsNamingThem()
    {
        foreach (JsonSerializerOptions options in AllOptions)
        {
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"saber","variant":"forward"}""", options).Message,
                Does.Contain("Unknown Saber variant 'forward'").And.Contain("reference, paper"));
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"saber","variant":1}""", options).Message, Does.Contain("Saber variant must be a string").And.Contain("got 1"));
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"low-confidence","steps":8,"metric":"entropy"}""", options).Message,
                Does.Contain("Unknown confidence metric 'entropy'").And.Contain("maxprob, margin, negentropy, random"));
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"low-confidence","metric":"margin"}""", options).Message, Does.Contain("steps"));
            Assert.That(ReadFails<DecodingStrategy>("""{"type":"saber","minTokens":3}""", options).Message, Does.Contain("minTokens"));
            Assert.That(ReadFails<DecodeOptions>("""{"generationLength":8,"blockSize":4}""", options).Message, Does.Contain("blockSize"));
            Assert.That(ReadFails<DecodeOptions>("""{"blockLength":4}""", options).Message, Does.Contain("generationLength"));
        }
        Assert.Throws<JsonException>(() => JsonSerializer.Serialize<DecodingStrategy>(new SaberStrategy((SaberVariant)7), SaberJson.Options));
    }

    /// <summary>JSON does not validate: a deserialized invalid option is rejected when used, with today's message.</summary>
    [TestCaseSource(typeof(ValidationTests), nameof(ValidationTests.BadOptions))]
    public void DeserializedInvalidOptionsAreRejectedWhenUsedWithTheSameMessage(DecodeOptions options, string parameter, string value)
    {
        var direct = Assert.Throws<ArgumentOutOfRangeException>(options.Validate)!;
        foreach (JsonSerializerOptions json in new[] { SaberJson.Options, Reflection })
        {
            DecodeOptions back = JsonSerializer.Deserialize<DecodeOptions>(JsonSerializer.Serialize(options, json), json)!;
            Assert.That(back, Is.EqualTo(options));
            var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(new RandomDenoiser(1, 11, 10), [new[] { 1, 2, 3 }], back));
            Assert.That(e!.ParamName, Is.EqualTo(parameter));
            Assert.That(e.Message, Is.EqualTo(direct.Message));
            Assert.That(e.Message, Does.Contain(value));
        }
    }

    [Test]
    public void ANullStrategyIsRejectedWhenReadStrictlyAndWhenUsedOtherwise()
    {
        const string json = """{"generationLength":8,"strategy":null}""";
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<DecodeOptions>(json, SaberJson.Options));
        DecodeOptions lax = JsonSerializer.Deserialize<DecodeOptions>(json, Reflection)!;
        Assert.That(lax.Validate, Throws.InstanceOf<ArgumentNullException>().With.Property("ParamName").EqualTo("Strategy"));
    }

    private static async Task<(SyntheticDenoiser Model, ReadOnlyMemory<int>[] Prompts)> Model()
    {
        await Task.Yield();
        SyntheticTask task = SyntheticTask.Random(5, vocabulary: 48, promptLengths: [4, 9], generationLength: 32, traps: 3);
        return (new SyntheticDenoiser(task), task.Prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray());
    }

    private static void AssertSameTrace(IReadOnlyList<StepTrace> actual, IReadOnlyList<StepTrace> expected)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.That(actual[i].Step, Is.EqualTo(expected[i].Step));
            Assert.That(actual[i].Tau, Is.EqualTo(expected[i].Tau), $"step {expected[i].Step}: tau");
            if (expected[i].Tau is double tau)
                Assert.That(BitConverter.DoubleToInt64Bits(actual[i].Tau!.Value), Is.EqualTo(BitConverter.DoubleToInt64Bits(tau)), "tau to the bit");
            Assert.That(actual[i].Committed, Is.EqualTo(expected[i].Committed), $"step {expected[i].Step}: committed");
            Assert.That(actual[i].Remasked, Is.EqualTo(expected[i].Remasked), $"step {expected[i].Step}: remasked");
        }
    }

    private static void AssertSameResult(DecodeResult actual, DecodeResult expected)
    {
        Assert.That(actual.Elapsed, Is.EqualTo(expected.Elapsed));
        Assert.That(actual.Steps, Is.EqualTo(expected.Steps));
        Assert.That(actual.Sequences, Has.Count.EqualTo(expected.Sequences.Count));
        for (int s = 0; s < expected.Sequences.Count; s++)
        {
            SequenceResult a = actual.Sequences[s], e = expected.Sequences[s];
            Assert.That(a.Canvas, Is.EqualTo(e.Canvas));
            Assert.That(a.PromptLength, Is.EqualTo(e.PromptLength));
            Assert.That(a.Tokens.ToArray(), Is.EqualTo(e.Tokens.ToArray()));
            Assert.That(a.Nfe, Is.EqualTo(e.Nfe));
            Assert.That(a.RemaskStatistics, Is.EqualTo(e.RemaskStatistics));
            AssertSameTrace(a.Trace, e.Trace);
        }
    }

    [TestCase(SaberVariant.Reference)]
    [TestCase(SaberVariant.Paper)]
    public async Task ARealSaberResultRoundTripsWithTauAndInfiniteDeltas(SaberVariant variant)
    {
        var (model, prompts) = await Model();
        var options = new DecodeOptions { GenerationLength = 32, BlockLength = 16, Strategy = new SaberStrategy(variant), Trace = true };
        DecodeResult decoded = await new CpuSampler().DecodeAsync(model, prompts, options);
        var steps = decoded.Sequences.SelectMany(s => s.Trace).ToArray();
        Assert.That(steps, Is.Not.Empty);
        Assert.That(steps.All(t => t.Tau is not null), "set-up: Saber reports tau");
        Assert.That(steps.SelectMany(t => t.Remasked).Any(r => float.IsFinite(r.Delta)), "set-up: finite deltas");

        // A re-masked Δ of +∞ (a position that just became active) needs fewer finite candidates than re-masks, which
        // the block rule does not allow in a decode like this one; so one re-mask of the real trace is given Δ = +∞.
        SequenceResult first = decoded.Sequences[0];
        int at = first.Trace.ToList().FindIndex(t => t.Remasked.Count > 0);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), "set-up: a step that re-masks");
        StepTrace original = first.Trace[at];
        var trace = first.Trace.ToArray();
        trace[at] = original with { Remasked = [original.Remasked[0] with { Delta = float.PositiveInfinity }, .. original.Remasked.Skip(1)] };
        DecodeResult result = decoded with { Sequences = [first with { Trace = trace }, .. decoded.Sequences.Skip(1)] };

        string json = JsonSerializer.Serialize(result, SaberJson.Options);
        Assert.That(JsonSerializer.Serialize(result, Reflection), Is.EqualTo(json), "reflection writes the same JSON");
        Assert.That(JsonSerializer.Serialize(result, Web), Is.EqualTo(json), "web defaults write the same JSON");
        Assert.That(json, Does.Contain($"\"remasked\":[{{\"position\":{original.Remasked[0].Position},\"delta\":\"Infinity\"}}"));
        Assert.That(json, Does.Contain("\"canvas\":[").And.Contain("\"promptLength\":4").And.Contain("\"nfe\":").And.Contain("\"tau\":0."));
        Assert.That(json, Does.Not.Contain("\"tokens\"").And.Not.Contain("\"steps\""));
        RemaskStatistics remasks = first.RemaskStatistics!;
        Assert.That(json, Does.Contain($"\"remaskStatistics\":{{\"remasks\":{remasks.Remasks},\"remasksChanged\":{remasks.RemasksChanged}," +
            $"\"positionsRemaskedTwice\":{remasks.PositionsRemaskedTwice},\"remasksPending\":0}}"));
        foreach (JsonSerializerOptions read in AllOptions)
            AssertSameResult(JsonSerializer.Deserialize<DecodeResult>(json, read)!, result);
    }

    [TestCase(ConfidenceMetric.MaxProb)]
    [TestCase(ConfidenceMetric.Random)]
    public async Task ABaselineResultRoundTripsWithNullTau(ConfidenceMetric metric)
    {
        var (model, prompts) = await Model();
        var options = new DecodeOptions { GenerationLength = 32, BlockLength = 16, Strategy = new LowConfidenceStrategy(16, metric), Trace = true, Seed = 9 };
        DecodeResult result = await new CpuSampler().DecodeAsync(model, prompts, options);
        string json = JsonSerializer.Serialize(result, SaberJsonContext.Default.DecodeResult);
        Assert.That(JsonSerializer.Serialize(result, Reflection), Is.EqualTo(json));
        Assert.That(json, Does.Contain("\"tau\":null").And.Not.Contain("\"tau\":0"));
        DecodeResult back = JsonSerializer.Deserialize(json, SaberJsonContext.Default.DecodeResult)!;
        AssertSameResult(back, result);
        Assert.That(back.Sequences.SelectMany(s => s.Trace).All(t => t.Tau is null));
    }

    [Test]
    public async Task AnUntracedResultRoundTrips()
    {
        var (model, prompts) = await Model();
        DecodeResult result = await new CpuSampler().DecodeAsync(model, prompts, new DecodeOptions { GenerationLength = 32, Strategy = new ThresholdStrategy(0.5f) });
        string json = JsonSerializer.Serialize(result, SaberJson.Options);
        Assert.That(json, Does.Contain("\"trace\":[]"));
        AssertSameResult(JsonSerializer.Deserialize<DecodeResult>(json, SaberJson.Options)!, result);
    }

    [Test]
    public async Task StreamedStepsRoundTrip()
    {
        var (model, prompts) = await Model();
        var options = new DecodeOptions { GenerationLength = 32, BlockLength = 8, Strategy = new SaberStrategy(), Trace = true };
        int updates = 0, finished = 0;
        await foreach (DecodeStepUpdate update in new CpuSampler().DecodeStepsAsync(model, prompts, options))
        {
            updates++;
            string json = JsonSerializer.Serialize(update, SaberJsonContext.Default.DecodeStepUpdate);
            Assert.That(JsonSerializer.Serialize(update, Reflection), Is.EqualTo(json));
            foreach (JsonSerializerOptions read in AllOptions)
            {
                DecodeStepUpdate back = JsonSerializer.Deserialize<DecodeStepUpdate>(json, read)!;
                Assert.That(back.Step, Is.EqualTo(update.Step));
                Assert.That(back.Sequences, Has.Count.EqualTo(update.Sequences.Count));
                for (int i = 0; i < update.Sequences.Count; i++)
                {
                    SequenceStep a = back.Sequences[i], e = update.Sequences[i];
                    Assert.That(a.Sequence, Is.EqualTo(e.Sequence));
                    Assert.That(a.Canvas, Is.EqualTo(e.Canvas));
                    Assert.That(a.Finished, Is.EqualTo(e.Finished));
                    Assert.That(a.RemaskStatistics, Is.EqualTo(e.RemaskStatistics).And.Not.Null);
                    AssertSameTrace([a.Trace], [e.Trace]);
                }
            }
            finished += update.Sequences.Count(s => s.Finished);
        }
        Assert.That(updates, Is.GreaterThan(1));
        Assert.That(finished, Is.EqualTo(prompts.Length));
    }
}
