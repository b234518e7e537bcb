using Saber.Testing;
using System.Net;
using System.Text.Json;

namespace Saber.Server.Tests;

/// <summary>
/// The <c>"cache"</c> request field: bad values are 400s naming the field, a cache the model cannot run is a 400 (a copy
/// of the shipped model without its cache graph), <c>"none"</c> answers as a request without the field, <c>Server:MaxCacheBytes</c>.
/// </summary>
public class CacheTests
{
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await TestSaberServer.StartAsync();

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    private static string Chat(string extra, bool stream = false) =>
        $$"""{"model": "tiny", "messages": [{"role": "user", "content": "x = 1"}], "max_tokens": 8, "stream": {{(stream ? "true" : "false")}}{{extra}}}""";

    private static async Task<JsonElement> ErrorAsync(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        return error;
    }

    [TestCase(", \"cache\": \"fast\"", "cache", "'cache' must be \"none\", \"prefix\" or \"dual\"; got \"fast\".")]
    [TestCase(", \"cache\": 5", "cache", "'cache' must be \"none\", \"prefix\", \"dual\" or an object {\"policy\", \"refresh_every\", \"on_remask\"}; got 5.")]
    [TestCase(", \"cache\": {\"policy\": \"triple\"}", "cache.policy", "'cache.policy' must be \"none\", \"prefix\" or \"dual\"; got \"triple\".")]
    [TestCase(", \"cache\": {\"policy\": \"dual\", \"refresh_every\": 0}", "cache.refresh_every", "'cache.refresh_every' must be an integer >= 1; got 0.")]
    [TestCase(", \"cache\": {\"policy\": \"dual\", \"on_remask\": \"all\"}", "cache.on_remask", "'cache.on_remask' must be \"positions\" or \"block\"; got \"all\".")]
    [TestCase(", \"cache\": {\"policy\": \"dual\", \"size\": 3}", "cache", "'cache' has an unknown field \"size\"; expected policy, refresh_every, on_remask.")]
    public async Task BadCacheValuesAre400NamingTheField(string extra, string param, string message)
    {
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/chat/completions", Chat(extra)));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("message").GetString(), Is.EqualTo(message));
    }

    [TestCase("/v1/chat/completions", false)]
    [TestCase("/v1/chat/completions", true)]
    [TestCase("/v1/completions", false)]
    [TestCase("/v1/canvas", false)]
    public async Task ACacheTheModelCannotRunIs400NamingTheCache(string path, bool stream)
    {
        await using TestSaberServer plain = await TestSaberServer.StartAsync(configureTiny: false,
            ("Server:Models:tiny", ShippedModels.WithoutCacheGraph(TestSaberServer.TinyDirectory)));
        string body = path == "/v1/chat/completions" ? Chat(", \"cache\": {\"policy\": \"dual\", \"refresh_every\": 4}", stream)
            : """{"model": "tiny", "prompt": "x = 1", "max_tokens": 8, "cache": "prefix"}""";
        JsonElement error = await ErrorAsync(await plain.PostAsync(path, body));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("cache"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("cache_unavailable"));
        Assert.That(error.GetProperty("message").GetString(), Does.StartWith("Cache policy '").And.Contain("needs a model with a cache graph"));
    }

    [Test]
    public async Task CacheNoneAnswersAsARequestWithoutTheFieldAndReportsTheModelsFlops()
    {
        var (plain, plainBody) = await server.PostJsonAsync("/v1/completions", new { model = "tiny", prompt = "def f(x):\n", max_tokens = 16, block_length = 8 });
        var (none, noneBody) = await server.PostJsonAsync("/v1/completions", new { model = "tiny", prompt = "def f(x):\n", max_tokens = 16, block_length = 8, cache = "none" });
        Assert.That(plain.StatusCode, Is.EqualTo(HttpStatusCode.OK), plainBody.ToString());
        Assert.That(none.StatusCode, Is.EqualTo(HttpStatusCode.OK), noneBody.ToString());
        Assert.That(noneBody.GetProperty("choices")[0].GetProperty("text").GetString(), Is.EqualTo(plainBody.GetProperty("choices")[0].GetProperty("text").GetString()));
        JsonElement usage = noneBody.GetProperty("usage");
        Assert.That(usage.GetProperty("nfe").GetInt32(), Is.EqualTo(plainBody.GetProperty("usage").GetProperty("nfe").GetInt32()));
        // Uncached, every call runs the whole canvas (prompt + 16): NFE times the model card's FLOPs of one pass.
        int n = "def f(x):\n".Length + 16;
        Assert.That(usage.GetProperty("forward_flops").GetInt64(), Is.EqualTo(usage.GetProperty("nfe").GetInt32() * ShippedModels.PlainPassFlops(n)), usage.ToString());
    }

    [Test]
    public void ANegativeCacheLimitFailsTheStart()
    {
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await using TestSaberServer bad = await TestSaberServer.StartAsync(("Server:MaxCacheBytes", "-1"));
        });
        Assert.That(e!.Message, Does.StartWith("Server:MaxCacheBytes must be >= 0 or unset; got -1."));
    }

    [Test]
    public async Task ACacheLimitStartsTheServer()
    {
        await using TestSaberServer limited = await TestSaberServer.StartAsync(("Server:MaxCacheBytes", "1048576"));
        var (response, body) = await limited.PostJsonAsync("/v1/completions", new { model = "tiny", prompt = "x", max_tokens = 8 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
    }
}
