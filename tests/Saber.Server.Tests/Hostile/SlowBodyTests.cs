using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Saber.Tests.Shared;

namespace Saber.Server.Tests.Hostile;

/// <summary>
/// Clients that trickle their bodies (slowloris on the body): they take no generation slot while they send, and the
/// server ends them with a 408 once <c>Server:RequestBodyTimeoutSeconds</c> or <c>Server:MinRequestBodyBytesPerSecond</c> is broken.
/// </summary>
public class SlowBodyTests
{
    private const string ShortCompletion = """{"model": "tiny", "prompt": "def add(a, b):\n", "max_tokens": 8}""";

    /// <summary>A body of <paramref name="length"/> bytes that is valid JSON once whole.</summary>
    private static byte[] PaddedBody(int length)
    {
        string json = """{"model": "tiny", "prompt": "x", "max_tokens": 8}""";
        return Encoding.ASCII.GetBytes(json + new string(' ', length - json.Length));
    }

    [Test]
    public async Task TricklersHoldNoSlotAndGet408AtTheBodyDeadline()
    {
        var logs = new CapturedLogs();
        await using LoopbackSaberServer server = await LoopbackSaberServer.StartAsync(logs.AddTo,
            ("Server:MaxConcurrentRequests", "2"), ("Server:RequestBodyTimeoutSeconds", "3"));
        ConcurrentRequestLimiter limiter = server.App.Services.GetRequiredService<ConcurrentRequestLimiter>();
        logs.Clear();

        // Twice as many tricklers as slots, each promising 1000 bytes and sending one every 100 ms (it would take 100 s).
        byte[] body = PaddedBody(1000);
        using var stop = new CancellationTokenSource();
        var tricklers = new List<RawHttpConnection>();
        var trickles = new List<Task>();
        var clock = Stopwatch.StartNew();
        foreach (string path in new[] { "/v1/completions", "/v1/chat/completions", "/v1/canvas", "/v1/completions" })
        {
            RawHttpConnection connection = await RawHttpConnection.OpenAsync(server.Address);
            await connection.SendAsync(RawHttpConnection.PostHeaders(server.Address, path, body.Length));
            tricklers.Add(connection);
            trickles.Add(connection.TrickleAsync(body, TimeSpan.FromMilliseconds(100), stop.Token));
        }
        try
        {
            await Task.Delay(500);
            Assert.That(limiter.InFlight, Is.Zero, "a body still arriving holds no slot");

            // While they trickle, ordinary requests are served: two at once, the limit.
            HttpResponseMessage[] answers = await Task.WhenAll(
                server.Client.PostAsync("/v1/completions", new StringContent(ShortCompletion, Encoding.UTF8, "application/json")),
                server.Client.PostAsync("/v1/completions", new StringContent(ShortCompletion, Encoding.UTF8, "application/json")));
            foreach (HttpResponseMessage answer in answers)
                Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(3)), "served while the tricklers were still sending");

            // Each trickler is answered 408 at its deadline, and its connection closed.
            foreach (RawHttpConnection trickler in tricklers)
            {
                RawHttpResponse response = await trickler.ReadResponseAsync(TimeSpan.FromSeconds(15));
                Assert.That(response.Status, Is.EqualTo(408), response.Text);
                Assert.That(response.Error.GetProperty("code").GetString(), Is.EqualTo("request_timeout"));
                Assert.That(response.Error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
                Assert.That(response.Error.GetProperty("message").GetString(), Does.Contain("Server:RequestBodyTimeoutSeconds").And.Contain("3"));
                Assert.That(response.Headers["Connection"], Is.EqualTo("close"));
            }
            Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromSeconds(2.9)), "not before the deadline");
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(trickles);
            foreach (RawHttpConnection trickler in tricklers) await trickler.DisposeAsync();
        }
        Assert.That(limiter.Rejected, Is.Zero, "no 429: the tricklers never held a slot");
        logs.AssertQuietAboutClientFaults(saberLines: 0);
    }

    [Test]
    public async Task ABodyBelowTheMinimumRateIs408NotA500()
    {
        var logs = new CapturedLogs();
        // The whole-body deadline far away: Kestrel's rate check (after its 5 s grace) ends the request.
        await using LoopbackSaberServer server = await LoopbackSaberServer.StartAsync(logs.AddTo,
            ("Server:MinRequestBodyBytesPerSecond", "1000"), ("Server:RequestBodyTimeoutSeconds", "60"));
        logs.Clear();
        byte[] body = PaddedBody(1000);
        await using RawHttpConnection connection = await RawHttpConnection.OpenAsync(server.Address);
        await connection.SendAsync(RawHttpConnection.PostHeaders(server.Address, "/v1/completions", body.Length));
        using var stop = new CancellationTokenSource();
        Task trickle = connection.TrickleAsync(body, TimeSpan.FromMilliseconds(50), stop.Token);

        RawHttpResponse response = await connection.ReadResponseAsync(TimeSpan.FromSeconds(20));
        stop.Cancel();
        await trickle;
        Assert.That(response.Status, Is.EqualTo(408), response.Text);
        Assert.That(response.Error.GetProperty("code").GetString(), Is.EqualTo("request_timeout"));
        Assert.That(response.Error.GetProperty("message").GetString(), Does.Contain("Server:MinRequestBodyBytesPerSecond"));
        logs.AssertQuietAboutClientFaults();
    }
}
