using System.Net;
using System.Text.Json;

namespace Saber.Server.Tests;

/// <summary><c>Server:MaxForwardPassesPerToken</c>: a request whose worst-case forward passes exceed the limit is a 400 before it is submitted.</summary>
public class WorkLimitTests
{
    /// <summary>130 bytes that asked for 7,680 forward passes (16 per position) and held the engine for two minutes.</summary>
    private const string CostlyBody =
        """{"model":"tiny","prompt":"x","max_tokens":480,"block_length":480,"strategy":"low-confidence","steps":7680}""";

    private static async Task AssertTooMuchWorkAsync(HttpResponseMessage response, long passes, long limit)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("too_much_work"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("steps"));
        Assert.That(error.GetProperty("message").GetString(),
            Does.Contain("Server:MaxForwardPassesPerToken").And.Contain($"{passes} forward passes").And.Contain($"limit of {limit}"));
    }

    [Test]
    public async Task TheCostlyRequestIsRefusedBeforeItReachesTheEngine()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        Assert.That(CostlyBody.Length, Is.LessThanOrEqualTo(130));
        foreach (string path in new[] { "/v1/completions", "/v1/canvas" })
            await AssertTooMuchWorkAsync(await server.PostAsync(path, CostlyBody), 7680, 4 * 480);
        await AssertTooMuchWorkAsync(await server.PostAsync("/v1/chat/completions",
            """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":480,"block_length":480,"strategy":"low-confidence","steps":7680,"stream":true}"""),
            7680, 4 * 480);
        Assert.That(server.Tiny.Engine.Steps, Is.Zero, "nothing was decoded");
    }

    [Test]
    public async Task ARequestAtExactlyTheLimitIsServed()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        var (response, body) = await server.PostJsonAsync("/v1/completions",
            new Dictionary<string, object> { ["model"] = "tiny", ["prompt"] = "x = ", ["max_tokens"] = 8, ["strategy"] = "low-confidence", ["steps"] = 32 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("usage").GetProperty("nfe").GetInt32(), Is.EqualTo(32));

        HttpResponseMessage over = await server.PostAsync("/v1/completions",
            """{"model": "tiny", "prompt": "x = ", "max_tokens": 8, "strategy": "low-confidence", "steps": 40}""");
        await AssertTooMuchWorkAsync(over, 40, 32);
    }

    [Test]
    public async Task TheLimitIsPerGeneratedPositionAndConfigurable()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxForwardPassesPerToken", "1"));
        // G is max_tokens rounded up to the block length: 6 tokens in blocks of 4 lay out 8 positions.
        HttpResponseMessage over = await server.PostAsync("/v1/completions",
            """{"model": "tiny", "prompt": "x = ", "max_tokens": 6, "block_length": 4, "strategy": "low-confidence", "steps": 10}""");
        await AssertTooMuchWorkAsync(over, 10, 8);
        var (ok, body) = await server.PostJsonAsync("/v1/completions",
            new Dictionary<string, object> { ["model"] = "tiny", ["prompt"] = "x = ", ["max_tokens"] = 6, ["block_length"] = 4, ["strategy"] = "low-confidence", ["steps"] = 8 });
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        // Saber commits at least one token net per step: at most G passes, within any limit.
        var (saber, saberBody) = await server.PostJsonAsync("/v1/completions", new Dictionary<string, object> { ["model"] = "tiny", ["prompt"] = "x = ", ["max_tokens"] = 8 });
        Assert.That(saber.StatusCode, Is.EqualTo(HttpStatusCode.OK), saberBody.ToString());
    }

    [TestCase("0")]
    [TestCase("-1")]
    public void AnInvalidLimitFailsTheStart(string value)
    {
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxForwardPassesPerToken", value));
        });
        Assert.That(e!.Message, Does.Contain("Server:MaxForwardPassesPerToken").And.Contain(value));
    }

    [Test]
    public void TheWorstCaseOfEachStrategyIsItsBoundFromTheSpecification()
    {
        DecodeOptions options = new() { GenerationLength = 64, BlockLength = 8 };
        Assert.That(WorkLimit.WorstCaseForwardPasses(options), Is.EqualTo(64), "Saber: one token net per step");
        Assert.That(WorkLimit.WorstCaseForwardPasses(options with { Strategy = new ThresholdStrategy() }), Is.EqualTo(64));
        Assert.That(WorkLimit.WorstCaseForwardPasses(options with { Strategy = new FactorStrategy() }), Is.EqualTo(64));
        Assert.That(WorkLimit.WorstCaseForwardPasses(options with { Strategy = new LowConfidenceStrategy(512) }), Is.EqualTo(512), "NFE = S");
        // A full pass of a cache is the step's own call, not an extra one.
        Assert.That(WorkLimit.WorstCaseForwardPasses(options with { Cache = new CacheOptions(CachePolicy.Dual, RefreshEvery: 1) }), Is.EqualTo(64));
    }
}
