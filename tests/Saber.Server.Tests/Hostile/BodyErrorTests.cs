using System.Net;
using System.Text;
using Saber.Tests.Shared;

namespace Saber.Server.Tests.Hostile;

/// <summary>
/// Bodies that break HTTP itself (cut short, a malformed chunk): the client's fault, answered with Kestrel's status in
/// OpenAI's shape where the connection still allows an answer, and never a 500 or a stack trace in the log.
/// </summary>
public class BodyErrorTests
{
    private CapturedLogs logs = null!;
    private LoopbackSaberServer server = null!;

    [SetUp]
    public async Task Start()
    {
        logs = new CapturedLogs();
        server = await LoopbackSaberServer.StartAsync(logs.AddTo, ("Server:RequestBodyTimeoutSeconds", "5"));
        logs.Clear();
    }

    [TearDown]
    public async Task Stop() => await server.DisposeAsync();

    [Test]
    public async Task AMalformedChunkIs400()
    {
        await using RawHttpConnection connection = await RawHttpConnection.OpenAsync(server.Address);
        await connection.SendAsync($"POST /v1/completions HTTP/1.1\r\nHost: {server.Address.Authority}\r\nContent-Type: application/json\r\n" +
            "Transfer-Encoding: chunked\r\n\r\n9\r\n{\"model\":\r\nzz\r\n");
        RawHttpResponse response = await connection.ReadResponseAsync(TimeSpan.FromSeconds(10));
        Assert.That(response.Status, Is.EqualTo(400), response.Text);
        Assert.That(response.Error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(response.Error.GetProperty("code").GetString(), Is.EqualTo("invalid_body"));
        logs.AssertQuietAboutClientFaults();
    }

    [Test]
    public async Task ABodyCutShortByAHalfCloseIsNoServerError()
    {
        await using RawHttpConnection connection = await RawHttpConnection.OpenAsync(server.Address);
        await connection.SendAsync(RawHttpConnection.PostHeaders(server.Address, "/v1/completions", 1000) + "{\"model\":");
        connection.HalfClose();
        RawHttpResponse response = await connection.ReadResponseAsync(TimeSpan.FromSeconds(10));
        // Kestrel takes a client's FIN for a disconnect (it aborts the request), so there may be no answer at all; if
        // there is one, it is the client's 400, never a 500.
        if (response.Text.Length > 0)
        {
            Assert.That(response.Status, Is.EqualTo(400), response.Text);
            Assert.That(response.Error.GetProperty("code").GetString(), Is.EqualTo("invalid_body"));
        }
        await Task.Delay(200);
        logs.AssertQuietAboutClientFaults();
        Assert.That((await server.Client.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the server carries on");
    }

    [Test]
    public async Task ABodyCutShortByAClosedConnectionLeavesNoStackTrace()
    {
        for (int i = 0; i < 5; i++)
        {
            RawHttpConnection connection = await RawHttpConnection.OpenAsync(server.Address);
            await connection.SendAsync(RawHttpConnection.PostHeaders(server.Address, i % 2 == 0 ? "/v1/chat/completions" : "/v1/canvas", 1000) + "{\"model\":");
            await connection.DisposeAsync();
        }
        await Task.Delay(500);
        logs.AssertQuietAboutClientFaults(saberLines: 5);
        // And the server still answers a whole request.
        HttpResponseMessage ok = await server.Client.PostAsync("/v1/completions",
            new StringContent("""{"model": "tiny", "prompt": "x", "max_tokens": 4}""", Encoding.UTF8, "application/json"));
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
    }
}
