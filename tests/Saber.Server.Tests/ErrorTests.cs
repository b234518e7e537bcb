using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using System.Text.Json;
using Saber.Service;

namespace Saber.Server.Tests;

/// <summary>Every failure in OpenAI's error shape with its status; limits; the engine full; a client that leaves.</summary>
public class ErrorTests
{
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await TestSaberServer.StartAsync(("Server:MaxTokens", "100"), ("Server:MaxPromptTokens", "64"),
        ("Server:MaxRequestBodyBytes", "4096"));

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    private static async Task<JsonElement> ErrorAsync(HttpResponseMessage response, HttpStatusCode status, string? param, string? code)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(status), text);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("message").GetString(), Is.Not.Empty);
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo((int)status >= 500 ? "server_error" : "invalid_request_error"));
        Assert.That(error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("code").ValueKind == JsonValueKind.Null ? null : error.GetProperty("code").GetString(), Is.EqualTo(code));
        Assert.That(text, Does.Not.Contain("   at "), "no stack trace");
        return error;
    }

    private static string Chat(string extra = "", string model = "tiny", string content = "x = 1") =>
        $$"""{"model": "{{model}}", "messages": [{"role": "user", "content": "{{content}}"}], "max_tokens": 8{{extra}}}""";

    [Test]
    public async Task BadJsonIs400() =>
        await ErrorAsync(await server.PostAsync("/v1/chat/completions", "{\"model\": \"tiny\", "), HttpStatusCode.BadRequest, null, "invalid_json");

    [Test]
    public async Task AMissingFieldIs400() =>
        await ErrorAsync(await server.PostAsync("/v1/completions", """{"model": "tiny"}"""), HttpStatusCode.BadRequest, "prompt", "missing_required_parameter");

    [Test]
    public async Task AnUnknownModelIs404()
    {
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/chat/completions", Chat(model: "../../etc")), HttpStatusCode.NotFound, "model", "model_not_found");
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("tiny"), "names the served models");
    }

    [TestCase(", \"strategy\": \"greedy\"", "strategy", "invalid_value")]
    [TestCase(", \"variant\": \"other\"", "variant", "invalid_value")]
    [TestCase(", \"strategy\": \"low-confidence\", \"metric\": \"loudest\"", "metric", "invalid_value")]
    [TestCase(", \"strategy\": \"threshold\", \"threshold\": 1.5", "threshold", "invalid_value")]
    [TestCase(", \"strategy\": \"threshold\", \"steps\": 4", "steps", "invalid_value")]
    [TestCase(", \"strategy\": \"factor\", \"factor\": 0", "factor", "invalid_value")]
    [TestCase(", \"strategy\": \"threshold\", \"factor\": 2", "factor", "invalid_value")]
    [TestCase(", \"block_length\": 0", "block_length", "invalid_value")]
    [TestCase(", \"min_tokens_per_step\": \"two\"", "min_tokens_per_step", "invalid_value")]
    [TestCase(", \"temperature\": -1", "temperature", "invalid_value")]
    [TestCase(", \"seed\": 1.5", "seed", "invalid_type")]
    [TestCase(", \"stream\": \"yes\"", "stream", "invalid_type")]
    public async Task BadSamplerValuesAre400NamingTheField(string extra, string param, string code)
    {
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/chat/completions", Chat(extra)), HttpStatusCode.BadRequest, param, code);
        Assert.That(error.GetProperty("message").GetString(), Does.Contain(param).And.Not.Contain("AdditionalProperties"));
    }

    [Test]
    public async Task ABodyOverTheLimitIs413()
    {
        string big = Chat(content: new string('a', 5000));
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/chat/completions", big), HttpStatusCode.RequestEntityTooLarge, null, "request_too_large");
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("4096").And.Contain("MaxRequestBodyBytes"));

        // Without a Content-Length (chunked): the limit holds while reading.
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        content.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        await ErrorAsync(await server.Client.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, null, "request_too_large");
    }

    [Test]
    public async Task MaxTokensOverTheLimitIs400()
    {
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 101}"""),
            HttpStatusCode.BadRequest, "max_tokens", "max_tokens_too_large");
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("100").And.Contain("Server:MaxTokens"));
    }

    [Test]
    public async Task WithoutMaxTokensTheDefaultIsCappedByTheLimit()
    {
        await using TestSaberServer small = await TestSaberServer.StartAsync(("Server:MaxTokens", "5"));
        HttpResponseMessage response = await small.PostAsync("/v1/completions", """{"model": "tiny", "prompt": "import os\n"}""");
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), text);
        Assert.That(JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), Is.LessThanOrEqualTo(5));
    }

    [Test]
    public async Task APromptOverTheLimitIs400()
    {
        JsonElement error = await ErrorAsync(await server.PostAsync("/v1/completions", $$"""{"model": "tiny", "prompt": "{{new string('a', 65)}}"}"""),
            HttpStatusCode.BadRequest, "prompt", "prompt_too_long");
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("65").And.Contain("Server:MaxPromptTokens"));
    }

    [Test]
    public async Task AnUnknownPathIs404() =>
        await ErrorAsync(await server.Client.GetAsync("/v1/embeddings"), HttpStatusCode.NotFound, null, "not_found");
}

/// <summary>One request fills an engine of capacity 1: the next is a 503; the first client leaving cancels its decode.</summary>
public class CapacityAndDisconnectTests
{
    [Test]
    public async Task AFullEngineIs503AndADisconnectCancelsTheDecode()
    {
        var outcomes = new List<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == SaberEngineMetrics.MeterName && instrument.Name == SaberEngineMetrics.RequestsName) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == SaberEngineMetrics.OutcomeTag)
                    lock (outcomes) outcomes.Add((string)tag.Value!);
        });
        listener.Start();

        await using TestSaberServer server = await TestSaberServer.StartAsync(("Saber:Capacity", "1"), ("Server:MaxTokens", "448"), ("Server:MaxForwardPassesPerToken", "16"));
        SaberEngine engine = server.Tiny.Engine;
        // A long decode: one position at most per step, 16 steps a position.
        string longBody = JsonSerializer.Serialize(new
        {
            model = "tiny", prompt = "import os\n", max_tokens = 448, block_length = 448, strategy = "low-confidence", steps = 448 * 16, stream = true,
        });
        using var leave = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(longBody, Encoding.UTF8, "application/json") };
        Task<HttpResponseMessage> first = server.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, leave.Token);
        await Until(() => engine.ActiveCount + engine.WaitingCount == 1, "the first request reaches the engine");

        HttpResponseMessage second = await server.PostAsync("/v1/chat/completions",
            """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8}""");
        string text = await second.Content.ReadAsStringAsync();
        Assert.That(second.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), text);
        Assert.That(second.Headers.RetryAfter, Is.Not.Null);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("engine_full"));
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.EqualTo(1), "the first request still decodes");

        // The first client leaves (mid-stream, or before its first chunk): its decode is cancelled.
        long stepsBefore = engine.Steps;
        leave.Cancel();
        try
        {
            using HttpResponseMessage r = await first;
            await r.Content.ReadAsStringAsync(leave.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or HttpRequestException or IOException)
        {
            // Cancelled before the headers, or while reading the stream.
        }
        await Until(() => engine.ActiveCount + engine.WaitingCount == 0, "the decode ends");
        await Until(() => { lock (outcomes) return outcomes.Contains("cancelled"); }, "the engine counts a cancellation");
        lock (outcomes)
        {
            Assert.That(outcomes, Does.Contain("rejected"));
            Assert.That(outcomes, Does.Not.Contain("completed"), "the long decode did not finish");
        }
        Assert.That(engine.Steps - stepsBefore, Is.LessThan(448 * 16));
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task AClientLeavingMidDecodeCancelsIt(bool stream)
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxTokens", "448"), ("Server:MaxForwardPassesPerToken", "16"));
        SaberEngine engine = server.Tiny.Engine;
        // Blocks of 8, 128 steps each: the first block's text streams early, the whole decode takes 7168 steps.
        string body = JsonSerializer.Serialize(new
        {
            model = "tiny", messages = new[] { new { role = "user", content = "def fibonacci(n):\n\t" } },
            max_tokens = 448, block_length = 8, strategy = "low-confidence", steps = 448 * 16, stream,
        });
        using var leave = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        Task<HttpResponseMessage> sent = server.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, leave.Token);
        if (stream)
        {
            // Mid-stream: the first chunk has arrived.
            using HttpResponseMessage response = await sent;
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            string? line = await reader.ReadLineAsync();
            Assert.That(line, Does.StartWith("data: {"));
            Assert.That(engine.ActiveCount, Is.EqualTo(1), "still decoding");
            leave.Cancel();
        }
        else
        {
            await Until(() => engine.ActiveCount == 1 && engine.Steps > 0, "the decode runs");
            leave.Cancel();
            try
            {
                (await sent).Dispose();   // the TestServer may still hand back the aborted request's (empty) response
            }
            catch (OperationCanceledException)
            {
            }
        }
        await Until(() => engine.ActiveCount + engine.WaitingCount == 0, "the decode ends");
        Assert.That(engine.Steps, Is.LessThan(448 * 16), "cancelled, not finished");
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) Assert.Fail($"Timed out waiting until {what}.");
            await Task.Delay(5);
        }
    }
}
