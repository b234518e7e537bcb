using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Saber.Service;
using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>Stopping the server with decodes in flight: they are cancelled at once and answered 503 <c>shutting_down</c>, within <see cref="ServerShutdown.Timeout"/>.</summary>
public class ShutdownTests
{
    /// <summary>A decode of 448 positions at four steps each: half a minute or more unless stopped.</summary>
    private const string Long = """{"model": "tiny", "prompt": "import os\n", "max_tokens": 448, "block_length": 8, "strategy": "low-confidence", "steps": 1792""";

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task AssertShuttingDownAsync(HttpResponseMessage response)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
        Assert.That(response.Headers.RetryAfter, Is.Not.Null);
        JsonElement error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("shutting_down"));
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
    }

    [Test]
    public async Task StoppingAnswersTheDecodesInFlightWithinTheBound()
    {
        await using LoopbackSaberServer server = await LoopbackSaberServer.StartAsync();
        SaberEngine engine = server.TinyEngine;
        Task<HttpResponseMessage> plain = server.Client.PostAsync("/v1/chat/completions",
            Json("""{"model": "tiny", "messages": [{"role": "user", "content": "def f(x):"}], "max_tokens": 448, "block_length": 8, "strategy": "low-confidence", "steps": 1792}"""));
        using HttpResponseMessage streamed = await server.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Json(Long + ", \"stream\": true}") }, HttpCompletionOption.ResponseHeadersRead);
        Assert.That(streamed.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using var events = new StreamReader(await streamed.Content.ReadAsStreamAsync());
        Assert.That(await events.ReadLineAsync(), Does.StartWith("data: {"), "the stream decodes");
        await ConcurrencyLimitTests.Until(() => engine.ActiveCount == 2, "both requests decode");

        var clock = Stopwatch.StartNew();
        await server.App.StopAsync();
        TimeSpan stopped = clock.Elapsed;

        await AssertShuttingDownAsync(await plain);
        string rest = await events.ReadToEndAsync();
        string last = rest.Trim('\n').Split("\n\n")[^1];   // the first event's blank line is still unread
        Assert.That(last, Does.StartWith("data: {\"error\""), rest);
        Assert.That(JsonDocument.Parse(last["data: ".Length..]).RootElement.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("shutting_down"));
        Assert.That(rest, Does.Not.Contain("[DONE]"));
        Assert.That(stopped, Is.LessThan(ServerShutdown.Timeout), "every answer was written before the host's timeout");
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero, "the decodes were cancelled");
    }

    [Test]
    public async Task ARequestArrivingWhileTheServerStopsIs503()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        server.App.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
        foreach (string path in new[] { "/v1/completions", "/v1/canvas" })
            await AssertShuttingDownAsync(await server.PostAsync(path, """{"model": "tiny", "prompt": "x", "max_tokens": 8}"""));
        await AssertShuttingDownAsync(await server.PostAsync("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8}"""));
        await AssertShuttingDownAsync(await server.Client.GetAsync("/v1/models"));
        Assert.That((await server.Client.GetAsync("/readyz")).StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That((await server.Client.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the process still lives");
    }

    [Test]
    public async Task TheHostWaitsNoLongerThanTheBound()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        Assert.That(server.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<HostOptions>>().Value.ShutdownTimeout,
            Is.EqualTo(TimeSpan.FromSeconds(2)).And.EqualTo(ServerShutdown.Timeout));
    }
}
