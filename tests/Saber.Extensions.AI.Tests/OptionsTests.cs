using System.Text.Json;
using Microsoft.Extensions.AI;
using Saber.Service;

namespace Saber.Extensions.AI.Tests;

/// <summary>ChatOptions to DecodeOptions, and the prompt templates: every property, its default and its invalid values.</summary>
public class OptionsTests
{
    private static readonly ChatMessage[] Hello = [new(ChatRole.User, "hello")];

    private static async Task<T> WithClientAsync<T>(Func<SaberChatClient, T> body, SaberChatClientOptions? options = null)
    {
        await using var engine = new SaberEngine(new ScriptedDenoiser());
        using var client = new SaberChatClient(engine, new LetterTokenizer(), options);
        return body(client);
    }

    private static Task<SaberChatRequest> RequestAsync(ChatOptions? options, SaberChatClientOptions? settings = null) =>
        WithClientAsync(c => c.CreateRequest(Hello, options), settings);

    private static ChatOptions With(params (string Key, object? Value)[] extra)
    {
        var options = new ChatOptions { AdditionalProperties = [] };
        foreach (var (key, value) in extra) options.AdditionalProperties[key] = value;
        return options;
    }

    [Test]
    public async Task DefaultsAreSaberGreedyWithGSixtyFourAndBlocksOfThirtyTwo()
    {
        SaberChatRequest r = await RequestAsync(null);
        Assert.That(r.Prompt, Is.EqualTo("user: hello\nassistant: "));
        Assert.That(r.PromptTokens, Is.EqualTo(new LetterTokenizer().Encode(r.Prompt)));
        Assert.That(r.MaxOutputTokens, Is.EqualTo(64));
        Assert.That(r.Options.GenerationLength, Is.EqualTo(64));
        Assert.That(r.Options.BlockLength, Is.EqualTo(32));
        Assert.That(r.Options.Strategy, Is.EqualTo(new SaberStrategy()));
        Assert.That(r.Options.Temperature, Is.Zero);
        Assert.That(r.Options.Seed, Is.Zero);
        Assert.That((await RequestAsync(new ChatOptions())).Options, Is.EqualTo(r.Options), "empty ChatOptions = none");
    }

    [TestCase(10, null, 10, 10)]      // at or below the default block: one block of exactly L
    [TestCase(32, null, 32, 32)]
    [TestCase(50, null, 32, 64)]      // rounded up to a multiple of K
    [TestCase(64, null, 32, 64)]
    [TestCase(20, 8, 8, 24)]
    [TestCase(5, 8, 8, 8)]            // an explicit K above L: G = K
    [TestCase(1, null, 1, 1)]
    public async Task MaxOutputTokensIsTheLimitAndGIsItRoundedUpToTheBlockLength(int limit, int? block, int k, int g)
    {
        ChatOptions options = block is int b ? With(("block_length", b)) : new ChatOptions();
        options.MaxOutputTokens = limit;
        SaberChatRequest r = await RequestAsync(options);
        Assert.That((r.MaxOutputTokens, r.Options.BlockLength, r.Options.GenerationLength), Is.EqualTo((limit, k, g)));
    }

    [Test]
    public async Task TheDefaultsOfTheClientOptionsApply()
    {
        SaberChatRequest r = await RequestAsync(null, new SaberChatClientOptions { DefaultMaxOutputTokens = 40, DefaultBlockLength = 16 });
        Assert.That((r.MaxOutputTokens, r.Options.BlockLength, r.Options.GenerationLength), Is.EqualTo((40, 16, 48)));
    }

    [Test]
    public async Task TemperatureAndSeedMap()
    {
        SaberChatRequest r = await RequestAsync(new ChatOptions { Temperature = 0.7f, Seed = 42 });
        Assert.That((r.Options.Temperature, r.Options.Seed), Is.EqualTo((0.7f, 42UL)));
        r = await RequestAsync(new ChatOptions { Seed = -1 });
        Assert.That(r.Options.Seed, Is.EqualTo(ulong.MaxValue), "a negative seed is its two's complement");
    }

    [Test]
    public async Task SaberParametersMap()
    {
        SaberChatRequest r = await RequestAsync(With(("strategy", "saber"), ("variant", "paper"), ("n", 3), ("mu", 4L), ("backtracking", false),
            ("fixed_threshold", 0.75)));
        Assert.That(r.Options.Strategy, Is.EqualTo(new SaberStrategy(SaberVariant.Paper, 3, 4, false, 0.75f)));
    }

    [Test]
    public async Task LowConfidenceParametersMapAndStepsDefaultToG()
    {
        ChatOptions options = With(("strategy", "low-confidence"));
        options.MaxOutputTokens = 64;
        Assert.That((await RequestAsync(options)).Options.Strategy, Is.EqualTo(new LowConfidenceStrategy(64)));
        options = With(("strategy", "low-confidence"), ("steps", 16), ("metric", "negentropy"));
        Assert.That((await RequestAsync(options)).Options.Strategy, Is.EqualTo(new LowConfidenceStrategy(16, ConfidenceMetric.NegEntropy)));
        foreach (var (name, metric) in new[] { ("maxprob", ConfidenceMetric.MaxProb), ("margin", ConfidenceMetric.Margin), ("random", ConfidenceMetric.Random) })
            Assert.That((await RequestAsync(With(("strategy", "low-confidence"), ("metric", name)))).Options.Strategy,
                Is.EqualTo(new LowConfidenceStrategy(64, metric)), name);
    }

    [Test]
    public async Task ThresholdParametersMap()
    {
        Assert.That((await RequestAsync(With(("strategy", "threshold")))).Options.Strategy, Is.EqualTo(new ThresholdStrategy(0.9f)));
        Assert.That((await RequestAsync(With(("strategy", "threshold"), ("threshold", 0.5f)))).Options.Strategy, Is.EqualTo(new ThresholdStrategy(0.5f)));
    }

    [Test]
    public async Task FactorParametersMap()
    {
        Assert.That((await RequestAsync(With(("strategy", "factor")))).Options.Strategy, Is.EqualTo(new FactorStrategy(1f)));
        Assert.That((await RequestAsync(With(("strategy", "factor"), ("factor", 2.5f)))).Options.Strategy, Is.EqualTo(new FactorStrategy(2.5f)));
        Assert.That((await RequestAsync(With(("strategy", "factor"), ("factor", JsonDocument.Parse("3").RootElement.Clone())))).Options.Strategy,
            Is.EqualTo(new FactorStrategy(3f)));
        Assert.That((await RequestAsync(With(("strategy", "factor"), ("factor", "0.5")))).Options.Strategy, Is.EqualTo(new FactorStrategy(0.5f)));
    }

    [Test]
    public async Task ValuesMayBeStringsOrJsonElements()
    {
        static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement.Clone();
        SaberChatRequest r = await RequestAsync(With(("strategy", Json("\"saber\"")), ("n", Json("3")), ("mu", "5"), ("block_length", Json("16")),
            ("backtracking", Json("false")), ("variant", Json("\"paper\""))));
        Assert.That(r.Options.Strategy, Is.EqualTo(new SaberStrategy(SaberVariant.Paper, 3, 5, false)));
        Assert.That(r.Options.BlockLength, Is.EqualTo(16));
        r = await RequestAsync(With(("strategy", "threshold"), ("threshold", Json("0.25"))));
        Assert.That(r.Options.Strategy, Is.EqualTo(new ThresholdStrategy(0.25f)));
        r = await RequestAsync(With(("unrelated", new object()), ("n", null)));
        Assert.That(r.Options.Strategy, Is.EqualTo(new SaberStrategy()), "unknown keys are ignored, null values mean the default");
    }

    private static IEnumerable<TestCaseData> Invalid()
    {
        static TestCaseData Case(string name, string expected, ChatOptions options) => new TestCaseData(options, expected).SetName(name);
        ChatOptions Extra(params (string, object?)[] extra) => With(extra);
        yield return Case("MaxOutputTokens zero", "ChatOptions.MaxOutputTokens must be >= 1; got 0", new ChatOptions { MaxOutputTokens = 0 });
        yield return Case("MaxOutputTokens huge", "ChatOptions.MaxOutputTokens must be at most 1048576", new ChatOptions { MaxOutputTokens = int.MaxValue });
        yield return Case("Temperature negative", "ChatOptions.Temperature must be finite and >= 0; got -1", new ChatOptions { Temperature = -1 });
        yield return Case("Temperature NaN", "ChatOptions.Temperature must be finite", new ChatOptions { Temperature = float.NaN });
        yield return Case("strategy unknown", "AdditionalProperties[\"strategy\"] must be \"saber\", \"low-confidence\", \"threshold\" or \"factor\"; got \"greedy\"", Extra(("strategy", "greedy")));
        yield return Case("strategy number", "AdditionalProperties[\"strategy\"] must be a string; got 3", Extra(("strategy", 3)));
        yield return Case("block_length zero", "AdditionalProperties[\"block_length\"] must be an integer >= 1; got 0", Extra(("block_length", 0)));
        yield return Case("block_length fraction", "AdditionalProperties[\"block_length\"] must be an integer; got 2.5", Extra(("block_length", 2.5)));
        yield return Case("block_length text", "AdditionalProperties[\"block_length\"] must be an integer; got \"big\"", Extra(("block_length", "big")));
        yield return Case("n zero", "AdditionalProperties[\"n\"] (minimum tokens per step) must be an integer >= 1; got 0", Extra(("n", 0)));
        yield return Case("mu zero", "AdditionalProperties[\"mu\"] (remask divisor) must be an integer >= 1; got 0", Extra(("mu", 0)));
        yield return Case("variant unknown", "AdditionalProperties[\"variant\"] must be \"reference\" or \"paper\"; got \"novel\"", Extra(("variant", "novel")));
        yield return Case("backtracking text", "AdditionalProperties[\"backtracking\"] must be true or false; got \"maybe\"", Extra(("backtracking", "maybe")));
        yield return Case("fixed_threshold above one", "AdditionalProperties[\"fixed_threshold\"] must lie in (0, 1]; got 1.5", Extra(("fixed_threshold", 1.5)));
        yield return Case("steps not a multiple", "AdditionalProperties[\"steps\"] must be a positive multiple of the block count 2 (G=64, K=32)",
            Extra(("strategy", "low-confidence"), ("steps", 3)));
        yield return Case("steps too many", "at most 1024; got 2048", Extra(("strategy", "low-confidence"), ("steps", 2048)));
        yield return Case("metric unknown", "AdditionalProperties[\"metric\"] must be \"maxprob\", \"margin\", \"negentropy\" or \"random\"; got \"loudness\"",
            Extra(("strategy", "low-confidence"), ("metric", "loudness")));
        yield return Case("threshold zero", "AdditionalProperties[\"threshold\"] must lie in (0, 1]; got 0", Extra(("strategy", "threshold"), ("threshold", 0)));
        yield return Case("threshold NaN", "AdditionalProperties[\"threshold\"] must lie in (0, 1]; got NaN", Extra(("strategy", "threshold"), ("threshold", double.NaN)));
        yield return Case("factor zero", "AdditionalProperties[\"factor\"] must be finite and > 0; got 0", Extra(("strategy", "factor"), ("factor", 0)));
        yield return Case("factor negative", "AdditionalProperties[\"factor\"] must be finite and > 0; got -2", Extra(("strategy", "factor"), ("factor", -2)));
        yield return Case("factor NaN", "AdditionalProperties[\"factor\"] must be finite and > 0; got NaN", Extra(("strategy", "factor"), ("factor", double.NaN)));
        yield return Case("factor text", "AdditionalProperties[\"factor\"] must be", Extra(("strategy", "factor"), ("factor", "big")));
        yield return Case("factor with saber", "AdditionalProperties[\"factor\"] does not apply to strategy \"saber\"", Extra(("factor", 2)));
        yield return Case("factor with threshold", "AdditionalProperties[\"factor\"] does not apply to strategy \"threshold\"", Extra(("strategy", "threshold"), ("factor", 2)));
        yield return Case("threshold with factor", "AdditionalProperties[\"threshold\"] does not apply to strategy \"factor\"", Extra(("strategy", "factor"), ("threshold", 0.5)));
        yield return Case("steps with factor", "AdditionalProperties[\"steps\"] does not apply to strategy \"factor\"", Extra(("strategy", "factor"), ("steps", 64)));
        yield return Case("steps with saber", "AdditionalProperties[\"steps\"] does not apply to strategy \"saber\"", Extra(("steps", 64)));
        yield return Case("threshold with saber", "AdditionalProperties[\"threshold\"] does not apply to strategy \"saber\"", Extra(("threshold", 0.5)));
        yield return Case("n with threshold", "AdditionalProperties[\"n\"] does not apply to strategy \"threshold\"", Extra(("strategy", "threshold"), ("n", 2)));
        yield return Case("mu with low-confidence", "AdditionalProperties[\"mu\"] does not apply to strategy \"low-confidence\"", Extra(("strategy", "low-confidence"), ("mu", 2)));
    }

    [TestCaseSource(nameof(Invalid))]
    public async Task InvalidOptionsAreRejectedByName(ChatOptions options, string expected)
    {
        await using var engine = new SaberEngine(new ScriptedDenoiser());
        using var client = new SaberChatClient(engine, new LetterTokenizer());
        var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), () => client.CreateRequest(Hello, options));
        Assert.That(e!.Message, Does.Contain(expected));
        Assert.That(async () => await client.GetResponseAsync(Hello, options), Throws.InstanceOf<ArgumentException>().With.Message.Contains(expected));
        Assert.That(() => client.GetStreamingResponseAsync(Hello, options), Throws.InstanceOf<ArgumentException>().With.Message.Contains(expected),
            "the streaming call throws before anything is submitted");
        Assert.That(engine.ForwardPasses, Is.Zero);
    }

    [Test]
    public async Task AnOutputLimitBeyondTheModelIsRejectedNamingMaxOutputTokensAndWhatFits()
    {
        var settings = new SaberChatClientOptions { MaxSequenceLength = 100 };
        // The prompt "user: hello\nassistant: " is 23 tokens: 77 positions are left, 64 of them in whole blocks of 32.
        var e = Assert.ThrowsAsync<ContextLengthExceededException>(() => RequestAsync(new ChatOptions { MaxOutputTokens = 70 }, settings));
        Assert.That(e!.Message, Does.Contain("ChatOptions.MaxOutputTokens=70").And.Contain("the model takes at most 100").And.Contain("at most 64 fits here"));
        Assert.That((e.MaxOutputTokens, e.PromptTokens, e.MaxSequenceLength, e.BlockLength, e.LargestFit), Is.EqualTo((70, 23, 100, 32, 64)), "the numbers, for callers' own words");
        Assert.That((await RequestAsync(new ChatOptions { MaxOutputTokens = 64 }, settings)).Options.GenerationLength, Is.EqualTo(64));
        e = Assert.ThrowsAsync<ContextLengthExceededException>(() => RequestAsync(With(("block_length", 50)), settings));
        Assert.That(e!.Message, Does.Contain("at most 50 fits here"));
        var tiny = new SaberChatClientOptions { MaxSequenceLength = 40 };
        e = Assert.ThrowsAsync<ContextLengthExceededException>(() => RequestAsync(new ChatOptions { MaxOutputTokens = 20 }, tiny));
        Assert.That(e!.Message, Does.Contain("at most 17 fits here"), "17 positions left, under one default block: any L up to 17 is one block");
        var none = new SaberChatClientOptions { MaxSequenceLength = 23 };
        Assert.That(() => RequestAsync(null, none), Throws.TypeOf<ContextLengthExceededException>().With.Message.Contains("leaves no room")
            .And.Property(nameof(ContextLengthExceededException.LargestFit)).EqualTo(0));
    }

    [Test]
    public void InvalidClientOptionsAreRejected()
    {
        var engine = new SaberEngine(new ScriptedDenoiser());
        Assert.That(() => new SaberChatClient(engine, new LetterTokenizer(), new SaberChatClientOptions { DefaultMaxOutputTokens = 0 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("DefaultMaxOutputTokens"));
        Assert.That(() => new SaberChatClient(engine, new LetterTokenizer(), new SaberChatClientOptions { DefaultBlockLength = 0 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("DefaultBlockLength"));
        Assert.That(() => new SaberChatClient(engine, new LetterTokenizer(), new SaberChatClientOptions { MaxSequenceLength = 0 }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxSequenceLength"));
        Assert.That(() => new SaberChatClient(null!, new LetterTokenizer()), Throws.ArgumentNullException);
        Assert.That(() => new SaberChatClient(engine, null!), Throws.ArgumentNullException);
        engine.DisposeAsync().AsTask().Wait();
    }

    [Test]
    public void TheRoleTaggedTemplateWritesOneLinePerTurnAndEndsWithTheAssistantTag()
    {
        IChatPromptTemplate t = ChatPromptTemplate.RoleTagged;
        ChatMessage[] conversation = [new(ChatRole.System, "be brief"), new(ChatRole.User, "hi"), new(ChatRole.Assistant, "hello"), new(ChatRole.User, "two\nlines")];
        Assert.That(t.Format(conversation, null), Is.EqualTo("system: be brief\nuser: hi\nassistant: hello\nuser: two\nlines\nassistant: "));
        Assert.That(t.Format(conversation, new ChatOptions { Instructions = "use tabs" }),
            Is.EqualTo("system: use tabs\nsystem: be brief\nuser: hi\nassistant: hello\nuser: two\nlines\nassistant: "), "instructions come first");
        Assert.That(t.Format([new(ChatRole.User, "hi"), new(ChatRole.Assistant, "the answer is")], null), Is.EqualTo("user: hi\nassistant: the answer is"),
            "a last assistant turn is continued");
        Assert.That(t.Format([], null), Is.EqualTo("assistant: "));
        Assert.That(t.Format([new(new ChatRole("critic"), "meh")], null), Is.EqualTo("critic: meh\nassistant: "));
        Assert.That(t.Format(conversation, null), Is.EqualTo(t.Format(conversation.ToList(), null)), "deterministic");
    }

    [Test]
    public void TheRawTemplateConcatenatesTheTexts()
    {
        IChatPromptTemplate t = ChatPromptTemplate.Raw;
        Assert.That(t.Format([new(ChatRole.User, "def f(x):\n"), new(ChatRole.Assistant, "\treturn")], new ChatOptions { Instructions = "# a\n" }),
            Is.EqualTo("# a\ndef f(x):\n\treturn"));
    }
}
