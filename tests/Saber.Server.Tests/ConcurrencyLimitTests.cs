using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Saber.Service;

namespace Saber.Server.Tests;

/// <summary><c>Server:MaxConcurrentRequests</c>: the server-wide limit on generation requests in flight (429), distinct from the engine's capacity (503).</summary>
public class ConcurrencyLimitTests
{
    /// <summary>A decode of 448 positions, one position at most per step (16 steps a position): minutes unless cancelled.</summary>
    private static string LongBody(bool stream, bool chat = false) => JsonSerializer.Serialize(chat
        ? new Dictionary<string, object>
        {
            ["model"] = "tiny", ["messages"] = new[] { new { role = "user", content = "import os\n" } }, ["max_tokens"] = 448, ["block_length"] = 8,
            ["strategy"] = "low-confidence", ["steps"] = 448 * 16, ["stream"] = stream,
        }
        : new Dictionary<string, object>
        {
            ["model"] = "tiny", ["prompt"] = "import os\n", ["max_tokens"] = 448, ["block_length"] = 8,
            ["strategy"] = "low-confidence", ["steps"] = 448 * 16, ["stream"] = stream,
        });

    /// <summary>A decode of 64 positions in blocks of 8, 16 steps a position (1024 steps): a second or so, its first chunk after the first block.</summary>
    private const string MediumBody = """{"model": "tiny", "prompt": "def main():\n", "max_tokens": 64, "block_length": 8, "strategy": "low-confidence", "steps": 1024, "stream": true}""";

    private const string ShortCompletion = """{"model": "tiny", "prompt": "def add(a, b):\n", "max_tokens": 8}""";
    private const string ShortChat = """{"model": "tiny", "messages": [{"role": "user", "content": "x = 1"}], "max_tokens": 8}""";
    private const string ShortCanvas = """{"model": "tiny", "prompt": "x", "max_tokens": 8}""";

    /// <summary>The long and medium bodies take 16 passes a position, above the default work limit of 4.</summary>
    private static readonly (string, string) SixteenPassesPerToken = ("Server:MaxForwardPassesPerToken", "16");

    private static ConcurrentRequestLimiter Limiter(TestSaberServer server) => server.App.Services.GetRequiredService<ConcurrentRequestLimiter>();

    private static HttpRequestMessage Post(string path, string body) =>
        new(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };

    /// <summary>Sends a streamed request and reads its first event: the stream is open and holds its slot.</summary>
    private static async Task<(HttpResponseMessage Response, StreamReader Reader)> OpenStreamAsync(TestSaberServer server, string path, string body, CancellationToken cancellationToken)
    {
        HttpResponseMessage response = await server.Client.SendAsync(Post(path, body), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        Assert.That(await reader.ReadLineAsync(cancellationToken), Does.StartWith("data: {"));
        return (response, reader);
    }

    private static async Task AssertTooManyAsync(HttpResponseMessage response, int limit)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests), text);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        Assert.That(response.Headers.RetryAfter, Is.Not.Null);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("rate_limit_exceeded"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("too_many_concurrent_requests"));
        Assert.That(error.GetProperty("param").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("Server:MaxConcurrentRequests").And.Contain(limit.ToString()));
    }

    private static async Task AssertOkAsync(Task<HttpResponseMessage> sent)
    {
        using HttpResponseMessage response = await sent;
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), text);
    }

    [Test]
    public async Task WithTwoStreamsOpenAThirdRequestIs429UntilTheyEnd()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxConcurrentRequests", "2"), SixteenPassesPerToken);
        ConcurrentRequestLimiter limiter = Limiter(server);
        Assert.That(limiter.Limit, Is.EqualTo(2));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var (first, firstReader) = await OpenStreamAsync(server, "/v1/completions", MediumBody, timeout.Token);
        var (second, secondReader) = await OpenStreamAsync(server, "/v1/canvas", MediumBody, timeout.Token);
        Assert.That(limiter.InFlight, Is.EqualTo(2));

        // Every generation endpoint is refused once its body is read (a slow body holds no slot); a body that is not even
        // JSON is the client's 400, whatever the load.
        await AssertTooManyAsync(await server.PostAsync("/v1/completions", ShortCompletion), 2);
        await AssertTooManyAsync(await server.PostAsync("/v1/chat/completions", ShortChat), 2);
        await AssertTooManyAsync(await server.PostAsync("/v1/canvas", ShortCanvas), 2);
        Assert.That((await server.PostAsync("/v1/completions", "{not json")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(limiter.Rejected, Is.EqualTo(3));

        // Health, readiness and the model list are not limited.
        foreach (string path in new[] { "/healthz", "/readyz", "/v1/models", "/v1/models/tiny" })
            Assert.That((await server.Client.GetAsync(path)).StatusCode, Is.EqualTo(HttpStatusCode.OK), path);

        // The two streams end normally, untouched by the rejections.
        string rest = await firstReader.ReadToEndAsync(timeout.Token);
        Assert.That(rest, Does.EndWith("data: [DONE]\n\n").And.Not.Contain("\"error\""));
        rest = await secondReader.ReadToEndAsync(timeout.Token);
        Assert.That(rest, Does.EndWith("data: [DONE]\n\n").And.Contain("final_text").And.Not.Contain("\"error\""));
        first.Dispose();
        second.Dispose();

        await Until(() => limiter.InFlight == 0, "the slots are given back");
        // Two at once pass again, on any generation endpoint.
        await Task.WhenAll(AssertOkAsync(server.PostAsync("/v1/completions", ShortCompletion)), AssertOkAsync(server.PostAsync("/v1/chat/completions", ShortChat)));
        // A handler gives its slot back just after its last byte is flushed, so the client may read the answer first.
        await Until(() => limiter.InFlight == 0, "the slots are given back");
        await AssertOkAsync(server.PostAsync("/v1/canvas", ShortCanvas));
        await Until(() => limiter.InFlight == 0, "the slot is given back");
    }

    [Test]
    public async Task EveryExitPathGivesTheSlotBack()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxConcurrentRequests", "2"), ("Server:MaxTokens", "448"), SixteenPassesPerToken);
        ConcurrentRequestLimiter limiter = Limiter(server);
        SaberEngine engine = server.Tiny.Engine;

        // Three rounds: two long requests fill the limit (a stream read mid-way, a non-streamed one decoding), a third is
        // refused, then both clients leave; their slots come back and the next round fills the limit again.
        for (int round = 0; round < 3; round++)
        {
            using var leave = new CancellationTokenSource();
            var (stream, _) = await OpenStreamAsync(server, "/v1/completions", LongBody(stream: true), leave.Token);
            Task<HttpResponseMessage> plain = server.Client.SendAsync(Post("/v1/chat/completions", LongBody(stream: false, chat: true)),
                HttpCompletionOption.ResponseHeadersRead, leave.Token);
            await Until(() => limiter.InFlight == 2 && engine.ActiveCount == 2, $"round {round}: both requests decode");
            await AssertTooManyAsync(await server.PostAsync("/v1/completions", ShortCompletion), 2);

            leave.Cancel();
            stream.Dispose();
            try
            {
                (await plain).Dispose();   // the TestServer may still hand back the aborted request's (empty) response
            }
            catch (OperationCanceledException)
            {
            }
            await Until(() => limiter.InFlight == 0 && engine.ActiveCount + engine.WaitingCount == 0, $"round {round}: the decodes end and the slots come back");
        }
        Assert.That(limiter.Rejected, Is.EqualTo(3));

        // Errors (400, 404) give their slots back too: many more than the limit, one after another.
        for (int i = 0; i < 5; i++)
        {
            Assert.That((await server.PostAsync("/v1/completions", "{not json")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((await server.PostAsync("/v1/chat/completions", ShortChat.Replace("\"tiny\"", "\"nope\""))).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That((await server.PostAsync("/v1/canvas", """{"model": "tiny", "prompt": "x", "strategy": "greedy"}""")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        }
        Assert.That(limiter.InFlight, Is.Zero, "an error is answered after its slot is given back");
        await Task.WhenAll(AssertOkAsync(server.PostAsync("/v1/completions", ShortCompletion)), AssertOkAsync(server.PostAsync("/v1/chat/completions", ShortChat)));
        await Until(() => limiter.InFlight == 0, "the slots are given back");
        Assert.That(limiter.Rejected, Is.EqualTo(3));
    }

    [Test]
    public async Task AFullEngineIsStill503NotTheLimits429()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Saber:Capacity", "1"), ("Server:MaxConcurrentRequests", "2"), ("Server:MaxTokens", "448"), SixteenPassesPerToken);
        ConcurrentRequestLimiter limiter = Limiter(server);
        using var leave = new CancellationTokenSource();
        var (stream, _) = await OpenStreamAsync(server, "/v1/completions", LongBody(stream: true), leave.Token);

        HttpResponseMessage full = await server.PostAsync("/v1/chat/completions", ShortChat);
        string text = await full.Content.ReadAsStringAsync();
        Assert.That(full.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), text);
        Assert.That(full.Headers.RetryAfter, Is.Not.Null);
        Assert.That(JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("engine_full"));
        Assert.That(limiter.Rejected, Is.Zero, "the limit was not reached");
        Assert.That(limiter.InFlight, Is.EqualTo(1), "the refused request gave its slot back");

        leave.Cancel();
        stream.Dispose();
        await Until(() => limiter.InFlight == 0, "the stream's slot comes back");
    }

    [Test]
    public async Task TheDefaultIs64()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        Assert.That(Limiter(server).Limit, Is.EqualTo(64));
    }

    [TestCase("0")]
    [TestCase("-3")]
    public void AnInvalidLimitFailsTheStart(string value)
    {
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxConcurrentRequests", value));
        });
        Assert.That(e!.Message, Does.Contain("Server:MaxConcurrentRequests").And.Contain(value));
    }

    internal static async Task Until(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(30)) Assert.Fail($"Timed out waiting until {what}.");
            await Task.Delay(5);
        }
    }
}
