using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Trace;

namespace Saber.Server.Tests;

/// <summary>A span per chat or completion request (OpenTelemetry's GenAI conventions), and its export over OTLP.</summary>
public class TracingTests
{
    /// <summary>A model id no other test serves, so that the spans recorded here are this test's.</summary>
    private const string TracedModel = "traced";

    /// <summary>Records the stopped spans of the server's activity source while it is alive.</summary>
    private sealed class SpanRecorder : IDisposable
    {
        private readonly ActivityListener listener;

        public SpanRecorder()
        {
            listener = new ActivityListener
            {
                ShouldListenTo = source => source.Name == SaberServer.TelemetrySourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = Stopped.Enqueue,
            };
            ActivitySource.AddActivityListener(listener);
        }

        public ConcurrentQueue<Activity> Stopped { get; } = new();

        /// <summary>The spans of <paramref name="model"/>, waiting up to a few seconds for at least one.</summary>
        public async Task<Activity[]> OfAsync(string model)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                Activity[] spans = Stopped.Where(a => (string?)a.GetTagItem("gen_ai.request.model") == model).ToArray();
                if (spans.Length > 0 || clock.Elapsed > TimeSpan.FromSeconds(10)) return spans;
                await Task.Delay(20);
            }
        }

        public void Dispose() => listener.Dispose();
    }

    private static Task<TestSaberServer> StartTracedAsync(params (string Key, string Value)[] settings) =>
        TestSaberServer.StartAsync(configureTiny: false, [($"Server:Models:{TracedModel}", TestSaberServer.TinyDirectory), .. settings]);

    [TestCase("/v1/chat/completions", false)]
    [TestCase("/v1/completions", true)]
    public async Task ARequestIsOneChatSpanWithTheGenAiAttributesAndTheResponsesUsage(string path, bool stream)
    {
        using var recorder = new SpanRecorder();
        await using TestSaberServer server = await StartTracedAsync();
        const string prompt = "def secret_function(x):\n";
        object body = path.EndsWith("chat/completions", StringComparison.Ordinal)
            ? new { model = TracedModel, messages = new[] { new { role = "user", content = prompt } }, max_tokens = 12, temperature = 0.5, seed = 7, stream, stream_options = new { include_usage = true } }
            : new { model = TracedModel, prompt, max_tokens = 12, temperature = 0.5, seed = 7, stream, stream_options = new { include_usage = true } };
        HttpResponseMessage response = await server.PostAsync(path, JsonSerializer.Serialize(body));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        // The non-streamed body, or the streamed chunks: the first names the response, the one before [DONE] holds the usage.
        List<JsonElement> chunks = stream
            ? (await TestSaberServer.EventsAsync(response)).SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList()
            : [JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement];
        JsonElement usage = chunks[^1].GetProperty("usage");
        string responseId = chunks[0].GetProperty("id").GetString()!;
        string? finishReason = chunks.Select(c => c.GetProperty("choices")).Where(c => c.GetArrayLength() > 0)
            .Select(c => c[0].GetProperty("finish_reason")).LastOrDefault(f => f.ValueKind == JsonValueKind.String).GetString();

        Activity[] spans = await recorder.OfAsync(TracedModel);
        Assert.That(spans, Has.Length.EqualTo(1), "one span per request");
        Activity span = spans[0];
        Assert.Multiple(() =>
        {
            Assert.That(span.DisplayName, Is.EqualTo($"chat {TracedModel}"));
            Assert.That(span.Status, Is.Not.EqualTo(ActivityStatusCode.Error));
            Assert.That(span.GetTagItem("gen_ai.operation.name"), Is.EqualTo("chat"));
            Assert.That(span.GetTagItem("gen_ai.provider.name"), Is.EqualTo("saber"));
            Assert.That(span.GetTagItem("gen_ai.request.model"), Is.EqualTo(TracedModel));
            Assert.That(span.GetTagItem("gen_ai.response.model"), Is.EqualTo(TracedModel));
            Assert.That(Convert.ToInt64(span.GetTagItem("gen_ai.request.max_tokens")), Is.EqualTo(12));
            Assert.That(Convert.ToDouble(span.GetTagItem("gen_ai.request.temperature")), Is.EqualTo(0.5));
            Assert.That(Convert.ToInt64(span.GetTagItem("gen_ai.request.seed")), Is.EqualTo(7));
            // The body's id is "chatcmpl-" or "cmpl-" and the chat client's response id.
            Assert.That(responseId, Does.EndWith("-" + span.GetTagItem("gen_ai.response.id")));
            Assert.That(span.GetTagItem("gen_ai.response.finish_reasons")?.ToString(), Does.Contain($"\"{finishReason}\""));
            Assert.That(Convert.ToInt64(span.GetTagItem("gen_ai.usage.input_tokens")), Is.EqualTo(usage.GetProperty("prompt_tokens").GetInt64()));
            Assert.That(Convert.ToInt64(span.GetTagItem("gen_ai.usage.output_tokens")), Is.EqualTo(usage.GetProperty("completion_tokens").GetInt64()));
            // No sensitive data: the prompt's text is in no attribute.
            Assert.That(span.TagObjects.Select(t => t.Value?.ToString() ?? ""), Has.None.Contain("secret_function"));
        });
    }

    [Test]
    public async Task ARefusedRequestsSpanCarriesTheErrorType()
    {
        using var recorder = new SpanRecorder();
        await using TestSaberServer server = await StartTracedAsync();
        HttpResponseMessage response = await server.PostAsync("/v1/completions",
            JsonSerializer.Serialize(new { model = TracedModel, prompt = "x = ", max_tokens = 8, strategy = "greedy" }));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));

        Activity[] spans = await recorder.OfAsync(TracedModel);
        Assert.That(spans, Has.Length.EqualTo(1));
        Assert.That(spans[0].Status, Is.EqualTo(ActivityStatusCode.Error));
        // The chat client refuses an unknown strategy with an ArgumentException (or a subclass), named by its full type name.
        Assert.That(spans[0].GetTagItem("error.type"), Is.AnyOf(typeof(ArgumentException).FullName, typeof(ArgumentOutOfRangeException).FullName));
    }

    [Test]
    public async Task WithoutTracingSettingsTheServerRegistersNoTracerProvider()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        Assert.That(server.App.Services.GetService<TracerProvider>(), Is.Null);
    }

    [Test]
    public async Task TracingDisabledWinsOverAnEndpoint()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(
            ("Server:Tracing:Enabled", "false"), ("Server:Tracing:OtlpEndpoint", "http://127.0.0.1:1"));
        Assert.That(server.App.Services.GetService<TracerProvider>(), Is.Null);
    }

    [TestCase("Server:Tracing:OtlpEndpoint", "collector:4317")]
    [TestCase("Server:Tracing:OtlpEndpoint", "ftp://collector")]
    [TestCase("Server:Tracing:OtlpProtocol", "http/json")]
    public void ABadTracingSettingFailsTheStartNamingIt(string key, string value)
    {
        var e = Assert.ThrowsAsync<ArgumentException>(async () =>
        {
            await using TestSaberServer server = await TestSaberServer.StartAsync((key, value));
        });
        Assert.That(e!.Message, Does.Contain(key).And.Contain($"'{value}'"));
    }

    /// <summary>An OTLP/HTTP collector on a free loopback port: records the POSTs to <c>/v1/traces</c> and answers 200.</summary>
    private sealed class LoopbackCollector : IAsyncDisposable
    {
        private readonly WebApplication app;

        private LoopbackCollector(WebApplication app) => this.app = app;

        public ConcurrentQueue<(string? ContentType, byte[] Body)> TracePosts { get; } = new();

        public string BaseAddress => app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();

        public static async Task<LoopbackCollector> StartAsync()
        {
            WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Logging.ClearProviders();
            WebApplication app = builder.Build();
            var collector = new LoopbackCollector(app);
            app.MapPost("/v1/traces", async (HttpContext context) =>
            {
                var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                collector.TracePosts.Enqueue((context.Request.ContentType, body.ToArray()));
                context.Response.StatusCode = StatusCodes.Status200OK;
                context.Response.ContentType = "application/x-protobuf";
            });
            await app.StartAsync();
            return collector;
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [TestCase(false, TestName = "TheSpansReachAnOtlpHttpCollector(Server:Tracing)")]
    [TestCase(true, TestName = "TheSpansReachAnOtlpHttpCollector(OTEL_EXPORTER_OTLP_*)")]
    public async Task TheSpansReachAnOtlpHttpCollector(bool standardVariables)
    {
        await using LoopbackCollector collector = await LoopbackCollector.StartAsync();
        // The standard keys as the host's configuration holds the environment variables of the same names.
        (string, string)[] settings = standardVariables
            ? [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.BaseAddress), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]
            : [("Server:Tracing:OtlpEndpoint", collector.BaseAddress), ("Server:Tracing:OtlpProtocol", "http/protobuf")];
        await using TestSaberServer server = await StartTracedAsync(settings);
        // A caller's W3C trace context: the server's spans continue its trace.
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { model = TracedModel, prompt = "import os\n", max_tokens = 8 }), Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        HttpResponseMessage response = await server.Client.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());

        // The chat span ends inside the request, but a batch exported while it was still open (the 5 s schedule) or a
        // retried export can leave it for a later flush: flush until the span has reached the collector, or 10 s pass.
        TracerProvider tracer = server.App.Services.GetRequiredService<TracerProvider>();
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!collector.TracePosts.Any(p => Encoding.UTF8.GetString(p.Body).Contains($"chat {TracedModel}", StringComparison.Ordinal))
               && waited.Elapsed < TimeSpan.FromSeconds(10))
        {
            Assert.That(tracer.ForceFlush(10_000), Is.True, "the exporter flushed");
            await Task.Delay(50);
        }
        Assert.That(collector.TracePosts, Is.Not.Empty, "a POST to /v1/traces");
        var (contentType, payload) = collector.TracePosts.First();
        Assert.That(contentType, Is.EqualTo("application/x-protobuf"));
        Assert.That(payload, Is.Not.Empty);
        // Protobuf stores strings as their UTF-8 bytes: the span's name and a GenAI attribute key are in the body.
        byte[] exported = collector.TracePosts.SelectMany(p => p.Body).ToArray();
        Assert.That(Encoding.UTF8.GetString(exported), Does.Contain($"chat {TracedModel}").And.Contain("gen_ai.usage.output_tokens"));
        // ... and so are trace ids, as their 16 bytes: the caller's.
        Assert.That(exported.AsSpan().IndexOf(Convert.FromHexString(traceId.ToHexString())), Is.GreaterThanOrEqualTo(0), "the caller's trace id");
    }
}
