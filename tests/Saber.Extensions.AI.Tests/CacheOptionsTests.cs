using System.Text.Json;
using Microsoft.Extensions.AI;
using Saber.Service;
using Saber.Testing;

namespace Saber.Extensions.AI.Tests;

/// <summary>
/// <c>AdditionalProperties["cache"]</c> and <see cref="SaberChatClientOptions.DefaultCache"/>: every accepted form, the
/// invalid ones by name, the cache reaching the decode and <c>forward_flops</c> in the usage.
/// </summary>
public class CacheOptionsTests
{
    private static readonly ChatMessage[] Hello = [new(ChatRole.User, "hello")];

    private static async Task<SaberChatRequest> RequestAsync(ChatOptions? options, SaberChatClientOptions? settings = null)
    {
        await using var engine = new SaberEngine(new ScriptedDenoiser());
        using var client = new SaberChatClient(engine, new LetterTokenizer(), settings);
        return client.CreateRequest(Hello, options);
    }

    private static ChatOptions With(object? cache) => new() { AdditionalProperties = new() { ["cache"] = cache } };

    private static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private static IEnumerable<TestCaseData> Accepted()
    {
        static TestCaseData Case(string name, object? value, CacheOptions expected) => new TestCaseData(value, expected).SetName(name);
        yield return Case("string dual", "dual", new CacheOptions(CachePolicy.Dual));
        yield return Case("string prefix", "prefix", new CacheOptions(CachePolicy.Prefix));
        yield return Case("string none", "none", CacheOptions.None);
        yield return Case("null", null, CacheOptions.None);
        yield return Case("JSON string", Json("\"dual\""), new CacheOptions(CachePolicy.Dual));
        yield return Case("JSON null", Json("null"), CacheOptions.None);
        yield return Case("JSON object", Json("""{"policy": "dual", "refresh_every": 8, "on_remask": "block"}"""), new CacheOptions(CachePolicy.Dual, 8, RemaskRefresh.Block));
        yield return Case("JSON object, policy only", Json("""{"policy": "prefix"}"""), new CacheOptions(CachePolicy.Prefix));
        yield return Case("CacheOptions", new CacheOptions(CachePolicy.Dual, 4), new CacheOptions(CachePolicy.Dual, 4));
    }

    [TestCaseSource(nameof(Accepted))]
    public async Task TheCacheMapsFromEveryAcceptedForm(object? value, CacheOptions expected) =>
        Assert.That((await RequestAsync(With(value))).Options.Cache, Is.EqualTo(expected));

    [Test]
    public async Task TheDefaultIsNoCacheOrTheClientsDefaultCache()
    {
        Assert.That((await RequestAsync(null)).Options.Cache, Is.EqualTo(CacheOptions.None));
        var settings = new SaberChatClientOptions { DefaultCache = new CacheOptions(CachePolicy.Dual, 2) };
        Assert.That((await RequestAsync(null, settings)).Options.Cache, Is.EqualTo(new CacheOptions(CachePolicy.Dual, 2)));
        Assert.That((await RequestAsync(With("none"), settings)).Options.Cache, Is.EqualTo(CacheOptions.None), "the request's own cache wins");
        // The cache is for any strategy: it is no strategy's foreign key.
        var threshold = With("prefix");
        threshold.AdditionalProperties!["strategy"] = "threshold";
        Assert.That((await RequestAsync(threshold)).Options.Cache, Is.EqualTo(new CacheOptions(CachePolicy.Prefix)));
    }

    private static IEnumerable<TestCaseData> Invalid()
    {
        static TestCaseData Case(string name, object value, string expected) => new TestCaseData(value, expected).SetName(name);
        yield return Case("unknown policy", "fast", "AdditionalProperties[\"cache\"] must be \"none\", \"prefix\" or \"dual\"; got \"fast\".");
        yield return Case("number", 3, "AdditionalProperties[\"cache\"] must be \"none\", \"prefix\", \"dual\" or an object {\"policy\", \"refresh_every\", \"on_remask\"}; got 3 (Int32).");
        yield return Case("JSON number", Json("2"), "AdditionalProperties[\"cache\"] must be \"none\", \"prefix\", \"dual\" or an object {\"policy\", \"refresh_every\", \"on_remask\"}; got 2.");
        yield return Case("object policy unknown", Json("""{"policy": "triple"}"""), "AdditionalProperties[\"cache.policy\"] must be \"none\", \"prefix\" or \"dual\"; got \"triple\".");
        yield return Case("object policy missing", Json("""{"refresh_every": 4}"""), "AdditionalProperties[\"cache.policy\"] is required in a cache object.");
        yield return Case("object refresh zero", Json("""{"policy": "dual", "refresh_every": 0}"""), "AdditionalProperties[\"cache.refresh_every\"] must be an integer >= 1; got 0.");
        yield return Case("object refresh text", Json("""{"policy": "dual", "refresh_every": "often"}"""), "AdditionalProperties[\"cache.refresh_every\"] must be an integer; got \"often\".");
        yield return Case("object rule unknown", Json("""{"policy": "dual", "on_remask": "all"}"""), "AdditionalProperties[\"cache.on_remask\"] must be \"positions\" or \"block\"; got \"all\".");
        yield return Case("object unknown field", Json("""{"policy": "dual", "refreshEvery": 4}"""), "AdditionalProperties[\"cache\"] has an unknown field \"refreshEvery\"; expected policy, refresh_every, on_remask.");
        yield return Case("CacheOptions refresh zero", new CacheOptions(CachePolicy.Dual, 0), "AdditionalProperties[\"cache.refresh_every\"] must be an integer >= 1; got 0.");
    }

    [TestCaseSource(nameof(Invalid))]
    public async Task InvalidCachesAreRejectedByName(object value, string expected)
    {
        await using var engine = new SaberEngine(new ScriptedDenoiser());
        using var client = new SaberChatClient(engine, new LetterTokenizer());
        var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), () => client.CreateRequest(Hello, With(value)));
        string message = e!.Message;
        int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        Assert.That(message.Split('\n')[0], Is.EqualTo(expected));
        Assert.That(engine.ForwardPasses, Is.Zero);
    }

    [Test]
    public void AnInvalidDefaultCacheIsRejected()
    {
        var engine = new SaberEngine(new ScriptedDenoiser());
        Assert.That(() => new SaberChatClient(engine, new LetterTokenizer(), new SaberChatClientOptions { DefaultCache = new CacheOptions(CachePolicy.Dual, 0) }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("DefaultCache.RefreshEvery must be >= 1 or null; got 0."));
        Assert.That(() => new SaberChatClient(engine, new LetterTokenizer(), new SaberChatClientOptions { DefaultCache = null! }),
            Throws.ArgumentNullException);
        engine.DisposeAsync().AsTask().Wait();
    }

    [Test]
    public async Task ACachedResponseRunsTheCacheAndReportsItsForwardFlops()
    {
        var model = new ScriptedDenoiser();
        var tokenizer = new LetterTokenizer();
        model.Add(tokenizer.Encode("user: hello\nassistant: "), LetterTokenizer.Target("hello there#"), seed: 3, 1, 4);
        var caching = new WindowedDenoiser(model);
        await using var engine = new SaberEngine(caching);
        using var client = new SaberChatClient(engine, tokenizer);
        var options = new ChatOptions { MaxOutputTokens = 16, AdditionalProperties = new() { ["cache"] = "dual", ["block_length"] = 8 } };

        ChatResponse response = await client.GetResponseAsync(Hello, options);
        var result = (SequenceResult)response.RawRepresentation!;
        Assert.That(result.Cache?.Policy, Is.EqualTo(CachePolicy.Dual));
        Assert.That(caching.WindowedCalls, Is.GreaterThan(0));
        long flops = response.Usage!.AdditionalCounts![SaberChatClient.ForwardFlopsCount];
        Assert.That(flops, Is.GreaterThanOrEqualTo(result.Cache!.ComputedPositions * WindowedDenoiser.FlopsPerQuery));
        Assert.That(flops, Is.LessThanOrEqualTo(result.Cache.ComputedPositions * (WindowedDenoiser.FlopsPerQuery + WindowedDenoiser.FlopsPerLogitsRow)));
        Assert.That(response.Usage.AdditionalCounts[SaberChatClient.NfeCount], Is.EqualTo(result.Nfe));
    }

    [Test]
    public async Task WithoutFlopsFromTheModelTheUsageHasNoForwardFlops()
    {
        var model = new ScriptedDenoiser();
        var tokenizer = new LetterTokenizer();
        model.Add(tokenizer.Encode("user: hello\nassistant: "), LetterTokenizer.Target("hello there#"), seed: 3);
        await using var engine = new SaberEngine(model);
        using var client = new SaberChatClient(engine, tokenizer);
        ChatResponse response = await client.GetResponseAsync(Hello, new ChatOptions { MaxOutputTokens = 16 });
        Assert.That(response.Usage!.AdditionalCounts!.ContainsKey(SaberChatClient.ForwardFlopsCount), Is.False);
        Assert.That(((SequenceResult)response.RawRepresentation!).Cache, Is.Null);
    }
}
