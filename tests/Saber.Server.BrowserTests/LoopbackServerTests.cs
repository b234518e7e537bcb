using System.Net;
using Saber.Tests.Shared;

namespace Saber.Server.BrowserTests;

/// <summary>
/// What the browser relies on beneath the page, checked without a browser (so these run where Chromium is missing): the
/// server on a real loopback socket, and canvas events that reach the client while the decode still runs.
/// </summary>
public class LoopbackServerTests
{
    private LoopbackSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await LoopbackSaberServer.StartAsync();

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (server is not null) await server.DisposeAsync();
    }

    [Test]
    public async Task ThePageIsServedOnALoopbackPort()
    {
        Assert.That(server.Address.Host, Is.EqualTo("127.0.0.1"), "loopback only");
        Assert.That(server.Address.Port, Is.Not.Zero, "the bound port, not the requested 0");
        using HttpResponseMessage response = await server.Client.GetAsync("/");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("id=\"canvas\""));
    }

    [Test]
    public async Task CanvasEventsArriveWhileTheDecodeRunsAndAClosedConnectionEndsIt()
    {
        // A long decode (256 single-token steps), so that it is still running when its first event arrives.
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/canvas")
        {
            Content = new StringContent("""{"model": "tiny", "prompt": "import os\n", "max_tokens": 256, "strategy": "low-confidence", "steps": 256}""",
                System.Text.Encoding.UTF8, "application/json"),
        };
        HttpResponseMessage response = await server.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/event-stream"));
        Assert.That(response.Headers.TransferEncodingChunked, Is.True, "streamed, not buffered to a Content-Length");
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.That(await reader.ReadLineAsync(), Does.StartWith("data: {\"step\":1,"));
        Assert.That(server.TinyEngine.ActiveCount + server.TinyEngine.WaitingCount, Is.EqualTo(1), "the first step arrived before the decode ended");

        // A closed tab closes the socket: the server cancels the decode.
        response.Dispose();
        for (int i = 0; i < 200 && server.TinyEngine.ActiveCount + server.TinyEngine.WaitingCount != 0; i++) await Task.Delay(50);
        Assert.That(server.TinyEngine.ActiveCount + server.TinyEngine.WaitingCount, Is.Zero, "the decode ends");
    }
}
