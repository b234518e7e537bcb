using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Saber.Extensions.AI;
using Saber.Service;

namespace Saber.Server;

/// <summary>
/// The OpenAI-compatible HTTP server: <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c>, <c>GET /v1/models</c>,
/// <c>GET /healthz</c>, <c>GET /readyz</c> and <c>GET /metrics</c>, over one <see cref="SaberEngine"/> per configured model.
/// </summary>
/// <remarks>
/// Settings: the section <c>"Server"</c> (<see cref="SaberServerOptions"/>: models by id, limits) and the section
/// <c>"Saber"</c> (<see cref="SaberServiceOptions"/>'s engine settings, used for every model's engine). It listens on
/// <see cref="SaberServerOptions.DefaultUrl"/> (loopback) unless the <c>urls</c> setting names addresses. No CORS.
/// </remarks>
public static class SaberServer
{
    /// <summary>A builder with the server's services; add configuration or replace the server (tests: a TestServer), then <see cref="Build"/>.</summary>
    public static WebApplicationBuilder CreateBuilder(string[]? args = null)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(args ?? []);
        if (string.IsNullOrEmpty(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
            builder.WebHost.UseUrls(SaberServerOptions.DefaultUrl);
        builder.Services.AddOptions<SaberServerOptions>().BindConfiguration(SaberServerOptions.SectionName);
        builder.Services.AddOptions<SaberServiceOptions>().BindConfiguration(SaberServiceOptions.SectionName);
        builder.Services.AddSingleton<ServedModels>();
        builder.Services.AddSingleton<ConcurrentRequestLimiter>();
        builder.Services.AddSingleton<ApiKeyAuthentication>();
        builder.Services.AddSingleton<HostFilter>();
        builder.Services.AddHostedService<ListenAddressCheck>();
        builder.Services.AddHostedService<ModelLoader>();
        ServerShutdown.Configure(builder.Services);
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var server = new SaberServerOptions();
            context.Configuration.GetSection(SaberServerOptions.SectionName).Bind(server);
            kestrel.Limits.MaxRequestBodySize = server.MaxRequestBodyBytes;
            kestrel.Limits.MinRequestBodyDataRate = server.MinRequestBodyBytesPerSecond > 0
                ? new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(server.MinRequestBodyBytesPerSecond, TimeSpan.FromSeconds(5)) : null;
        });
        if (MetricsEnabled(builder.Configuration))
        {
            builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
                .AddMeter(SaberEngineMetrics.MeterName)
                // ASP.NET Core's built-in meters: request durations and active requests, connections.
                .AddMeter("Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
                // The request pipelines' GenAI meter: gen_ai.client.operation.duration and gen_ai.client.token.usage.
                .AddMeter(TelemetrySourceName)
                .AddPrometheusExporter());
        }
        return builder;
    }

    /// <summary>Builds the application and maps the endpoints.</summary>
    public static WebApplication Build(WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        AddTracing(builder);
        WebApplication app = builder.Build();
        Map(app);
        return app;
    }

    /// <summary>
    /// The activity source of the requests' spans and the meter of their GenAI metrics (Microsoft.Extensions.AI's
    /// <c>OpenTelemetryChatClient</c> in each model's <see cref="ServedModel.ChatPipeline"/> and <see cref="ServedModel.CompletionPipeline"/>).
    /// </summary>
    public const string TelemetrySourceName = "Saber.Server";

    /// <summary>
    /// Traces to OTLP when <c>Server:Tracing</c> (<see cref="SaberServerTracingOptions"/>) or <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>
    /// asks for it. Read when the application is built, not in <see cref="CreateBuilder"/>, so that configuration added
    /// to the builder in between counts.
    /// </summary>
    /// <exception cref="ArgumentException">A bad <c>Server:Tracing</c> value, named.</exception>
    private static void AddTracing(WebApplicationBuilder builder)
    {
        var tracing = new SaberServerTracingOptions();
        builder.Configuration.GetSection(SaberServerTracingOptions.SectionName).Bind(tracing);
        Uri? endpoint = tracing.Endpoint();
        OtlpExportProtocol? protocol = tracing.Protocol();
        if (!tracing.IsEnabled(builder.Configuration[SaberServerTracingOptions.StandardEndpointVariable]))
            return;
        builder.Services.AddOpenTelemetry().WithTracing(traces => traces
            .AddSource(TelemetrySourceName)
            // The HTTP server span of each API request, the parent of its GenAI span: ASP.NET Core starts an activity
            // per request, and a span under an unrecorded parent is dropped by the default (parent-based) sampler.
            // Probes and scrapes (/healthz, /readyz, /metrics) are not traced.
            .AddAspNetCoreInstrumentation(http => http.Filter = context => context.Request.Path.StartsWithSegments("/v1"))
            .AddOtlpExporter(otlp =>
            {
                // The exporter has read OTEL_EXPORTER_OTLP_* by now; the server's settings take precedence.
                if (protocol is { } chosen) otlp.Protocol = chosen;
                if (endpoint is not null) otlp.Endpoint = SaberServerTracingOptions.TracesEndpoint(endpoint, otlp.Protocol);
            }));
    }

    /// <summary><see cref="Build"/> of <see cref="CreateBuilder"/>.</summary>
    public static WebApplication Create(string[]? args = null) => Build(CreateBuilder(args));

    private static void Map(WebApplication app)
    {
        app.Use(app.Services.GetRequiredService<HostFilter>().InvokeAsync);
        app.Use(app.Services.GetRequiredService<ApiKeyAuthentication>().InvokeAsync);
        ServerShutdown.RefuseWhileStopping(app);
        app.MapPost("/v1/chat/completions", (HttpContext context) => Guard(context, () => Limited(context, chat: true, request => CompleteAsync(context, request, chat: true))));
        app.MapPost("/v1/canvas", (HttpContext context) => Guard(context, () => Limited(context, chat: false, request => CanvasAsync(context, request))));
        app.MapGet("/", async (HttpContext context) =>
        {
            context.Response.ContentType = "text/html; charset=utf-8";
            await using Stream page = typeof(SaberServer).Assembly.GetManifestResourceStream("Saber.Server.canvas.html")!;
            await page.CopyToAsync(context.Response.Body, context.RequestAborted);
        });
        app.MapPost("/v1/completions", (HttpContext context) => Guard(context, () => Limited(context, chat: false, request => CompleteAsync(context, request, chat: false))));
        app.MapGet("/v1/models", (HttpContext context) => Guard(context, () => WriteJsonAsync(context.Response, json => ModelsBody(json, Models(context)))));
        app.MapGet("/v1/models/{id}", (HttpContext context, string id) => Guard(context, () =>
        {
            ServedModel model = Find(Models(context), id);
            return WriteJsonAsync(context.Response, json => ModelBody(json, model));
        }));
        app.MapMethods("/healthz", ProbeMethods, (HttpContext context) => WriteJsonAsync(context.Response, json =>
        {
            json.WriteStartObject();
            json.WriteString("status", "ok");
            json.WriteEndObject();
        }));
        app.MapMethods("/readyz", ProbeMethods, (HttpContext context) =>
        {
            ServedModels models = Models(context);
            bool stopping = context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested;
            bool ready = models.Ready && !stopping;
            context.Response.StatusCode = ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
            return WriteJsonAsync(context.Response, json =>
            {
                json.WriteStartObject();
                json.WriteString("status", ready ? "ready" : "not_ready");
                json.WriteStartArray("models");
                foreach (ServedModel m in models.All) json.WriteStringValue(m.Id);
                json.WriteEndArray();
                json.WriteEndObject();
            });
        });
        if (MetricsEnabled(app.Configuration))
            app.MapPrometheusScrapingEndpoint(MetricsPath);
        app.MapFallback((HttpContext context) => Guard(context, () => throw AllowedMethods.NoEndpoint(context, app)));
    }

    /// <summary>The probes answer HEAD too (Kestrel sends a HEAD's headers without the body).</summary>
    private static readonly string[] ProbeMethods = [HttpMethods.Get, HttpMethods.Head];

    /// <summary>Where Prometheus scrapes the metrics when <see cref="SaberServerOptions.Metrics"/> is on.</summary>
    public const string MetricsPath = "/metrics";

    private static bool MetricsEnabled(IConfiguration configuration) =>
        configuration.GetSection(SaberServerOptions.SectionName).GetValue(nameof(SaberServerOptions.Metrics), defaultValue: true);

    /// <summary>
    /// A generation request: its body read and parsed first (so a slow or bad body holds no slot), then it holds one of
    /// <c>Server:MaxConcurrentRequests</c> slots while it runs, else a 429.
    /// </summary>
    private static async Task Limited(HttpContext context, bool chat, Func<CompletionRequest, Task> handler)
    {
        SaberServerOptions limits = context.RequestServices.GetRequiredService<IOptions<SaberServerOptions>>().Value;
        CompletionRequest request = await CompletionRequest.ReadAsync(context.Request, chat, limits);
        await context.RequestServices.GetRequiredService<ConcurrentRequestLimiter>().RunAsync(() => handler(request));
    }

    private static ServedModels Models(HttpContext context) => context.RequestServices.GetRequiredService<ServedModels>();

    private static ServedModel Find(ServedModels models, string id) =>
        models.TryGet(id, out ServedModel model)
            ? model
            : throw new OpenAIErrorException(StatusCodes.Status404NotFound,
                $"The model '{id}' does not exist here; served: {string.Join(", ", models.All.Select(m => m.Id))}.", param: "model", code: "model_not_found");

    /// <summary>Runs a handler and answers its failures in OpenAI's error shape; never a stack trace.</summary>
    private static async Task Guard(HttpContext context, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left (a cancelled decode, or a write to a closed connection): nobody to answer.
        }
        catch (Exception e)
        {
            OpenAIErrorException error = e switch
            {
                OpenAIErrorException known => known,
                SaberEngineFullException full => new OpenAIErrorException(StatusCodes.Status503ServiceUnavailable,
                    $"The model's engine is full ({full.Capacity} requests waiting or decoding, Saber:Capacity); retry later.", OpenAIErrorException.ServerError, code: "engine_full"),
                // The host began to stop (the decode's token is linked to it): answered, unlike a client that left.
                OperationCanceledException when ServerShutdown.Stopping(context) => ServerShutdown.Error(),
                ObjectDisposedException => new OpenAIErrorException(StatusCodes.Status503ServiceUnavailable, "The server is shutting down.", OpenAIErrorException.ServerError, code: "shutting_down"),
                ArgumentException argument => CompletionRequest.Invalid(argument),
                // The engine refuses a cache the model cannot run (no cache graph) when the request is submitted: the request's fault.
                CacheUnavailableException unavailable => OpenAIErrorException.BadRequest(unavailable.Message, SaberChatOptionKeys.Cache, "cache_unavailable"),
                _ => new OpenAIErrorException(StatusCodes.Status500InternalServerError, "The server had an error while processing the request.", OpenAIErrorException.ServerError),
            };
            if (error.Status == StatusCodes.Status500InternalServerError)
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(SaberServer)).LogError(e, "Request {Path} failed", context.Request.Path);
            if (context.Response.HasStarted)
            {
                // Streaming: the status is sent; the error goes as one last event.
                await WriteEventAsync(context, json => error.WriteBody(json));
                return;
            }
            context.Response.Clear();
            await error.WriteAsync(context.Response);
        }
    }

    private static async Task CompleteAsync(HttpContext context, CompletionRequest request, bool chat)
    {
        SaberServerOptions limits = context.RequestServices.GetRequiredService<IOptions<SaberServerOptions>>().Value;
        ServedModel model = Find(Models(context), request.Model);
        SaberChatClient client = chat ? model.Chat : model.Completion;
        // The calls go through the traced pipeline; the Saber client itself gives the tokenizer and template.
        IChatClient pipeline = chat ? model.ChatPipeline : model.CompletionPipeline;

        CheckPromptLength(client.Tokenizer.Encode(client.Options.PromptTemplate.Format(request.Messages, request.Options)).Length, limits,
            chat ? "messages" : "prompt");
        if (DecodeOptionsOrNull(client, request) is DecodeOptions decode) WorkLimit.Check(decode, limits);

        CancellationToken aborted = ServerShutdown.DecodeToken(context);
        if (!request.Stream)
        {
            ChatResponse response = await pipeline.GetResponseAsync(request.Messages, request.Options, aborted);
            await WriteJsonAsync(context.Response, json => ResponseBody(json, response, model.Id, chat));
            return;
        }

        IAsyncEnumerable<ChatResponseUpdate> updates = pipeline.GetStreamingResponseAsync(request.Messages, request.Options, aborted);
        await using IAsyncEnumerator<ChatResponseUpdate> e = updates.GetAsyncEnumerator(aborted);
        // The first update (or the engine's refusal) comes before the headers, so that a full engine is still a 503.
        bool more = await e.MoveNextAsync();
        StartEventStream(context.Response);
        bool first = true;
        UsageDetails? usage = null;
        string id = "";
        long createdAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        while (more)
        {
            ChatResponseUpdate update = e.Current;
            id = update.ResponseId ?? id;
            createdAt = update.CreatedAt?.ToUnixTimeSeconds() ?? createdAt;
            usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
            bool isFirst = first;
            await WriteEventAsync(context, json => ChunkBody(json, id, createdAt, model.Id, chat, isFirst, update.Text, FinishReason(update.FinishReason), null));
            first = false;
            more = await e.MoveNextAsync();
        }
        if (request.IncludeUsage && usage is not null)
            await WriteEventAsync(context, json => ChunkBody(json, id, createdAt, model.Id, chat, false, null, null, usage));
        await EndEventStreamAsync(context);
    }

    /// <summary>
    /// The request's decode options, for the work limit; null where the option mapping refuses them, which is left to the
    /// traced pipeline, so that the refusal is recorded on the request's span.
    /// </summary>
    private static DecodeOptions? DecodeOptionsOrNull(SaberChatClient client, CompletionRequest request)
    {
        try
        {
            return client.CreateRequest(request.Messages, request.Options).Options;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary><c>POST /v1/canvas</c>: a text completion streamed as one SSE event per decode step, then the final text.</summary>
    private static async Task CanvasAsync(HttpContext context, CompletionRequest request)
    {
        SaberServerOptions limits = context.RequestServices.GetRequiredService<IOptions<SaberServerOptions>>().Value;
        ServedModel model = Find(Models(context), request.Model);
        SaberChatRequest submitted = model.Completion.CreateRequest(request.Messages, request.Options);
        CheckPromptLength(submitted.PromptTokens.Length, limits, "prompt");
        WorkLimit.Check(submitted.Options, limits);
        Saber.Onnx.IModelTokenizer tokenizer = model.Model.Tokenizer;
        int p = submitted.PromptTokens.Length;
        CancellationToken aborted = ServerShutdown.DecodeToken(context);
        await using IAsyncEnumerator<SequenceStep> e = model.Engine.DecodeStepsAsync(submitted.PromptTokens, submitted.Options, aborted).GetAsyncEnumerator(aborted);
        bool more = await e.MoveNextAsync();
        StartEventStream(context.Response);
        int[] last = [];
        int steps = 0;
        RemaskStatistics? remasks = null;
        while (more)
        {
            SequenceStep step = e.Current;
            last = step.Canvas[p..];
            steps = step.Trace.Step;
            remasks = step.RemaskStatistics;
            int[] tokens = last;
            await WriteEventAsync(context, json =>
            {
                json.WriteStartObject();
                json.WriteNumber("step", step.Trace.Step);
                json.WriteNumber("nfe", step.Trace.Step);
                if (step.Trace.Tau is double tau && double.IsFinite(tau)) json.WriteNumber("tau", tau); else json.WriteNull("tau");
                json.WriteStartArray("tokens");
                foreach (int t in tokens) json.WriteNumberValue(t);
                json.WriteEndArray();
                json.WriteStartArray("text");
                foreach (int t in tokens) json.WriteStringValue(t == tokenizer.MaskId ? tokenizer.MaskGlyph : tokenizer.Decode([t]));
                json.WriteEndArray();
                json.WriteStartArray("committed");
                foreach (var c in step.Trace.Committed) json.WriteNumberValue(c.Position - p);
                json.WriteEndArray();
                json.WriteStartArray("remasked");
                foreach (var r in step.Trace.Remasked) json.WriteNumberValue(r.Position - p);
                json.WriteEndArray();
                json.WriteNumber("masked", tokens.Count(t => t == tokenizer.MaskId));
                json.WriteBoolean("finished", step.Finished);
                json.WriteNumber("mask_id", tokenizer.MaskId);
                json.WriteEndObject();
            });
            more = await e.MoveNextAsync();
        }
        // The output as /v1/completions counts it: the first max_tokens generated ids, cut before the first end-of-text id.
        ReadOnlySpan<int> output = last.AsSpan(0, Math.Min(last.Length, submitted.MaxOutputTokens));
        int eos = tokenizer.IndexOfEndOfText(output);
        if (eos >= 0) output = output[..eos];
        string text = tokenizer.Decode(output);
        int completion = output.Length;
        await WriteEventAsync(context, json =>
        {
            json.WriteStartObject();
            json.WriteNumber("steps", steps);
            json.WriteString("final_text", text);
            json.WriteStartObject("usage");
            json.WriteNumber("prompt_tokens", p);
            json.WriteNumber("completion_tokens", completion);
            json.WriteNumber("total_tokens", p + completion);
            if (remasks is not null)
            {
                json.WriteNumber(SaberChatClient.RemasksCount, remasks.Remasks);
                json.WriteNumber(SaberChatClient.RemasksChangedCount, remasks.RemasksChanged);
                json.WriteNumber(SaberChatClient.PositionsRemaskedTwiceCount, remasks.PositionsRemaskedTwice);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        });
        await EndEventStreamAsync(context);
    }

    private static string? FinishReason(ChatFinishReason? reason) =>
        reason is null ? null : reason == ChatFinishReason.Stop ? "stop" : reason == ChatFinishReason.Length ? "length" : reason.Value.Value;

    /// <summary>Rejects a prompt of more tokens than the configured limit (a 400 naming the limit and <paramref name="param"/>).</summary>
    private static void CheckPromptLength(int promptTokens, SaberServerOptions limits, string param)
    {
        if (promptTokens > limits.MaxPromptTokens)
            throw OpenAIErrorException.BadRequest(
                $"The prompt is {promptTokens} tokens, above this server's limit of {limits.MaxPromptTokens} ({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxPromptTokens)}).",
                param, "prompt_too_long");
    }

    /// <summary>The headers of a server-sent event stream (sent with the first event).</summary>
    private static void StartEventStream(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
    }

    /// <summary>The stream's end marker, flushed.</summary>
    private static async Task EndEventStreamAsync(HttpContext context)
    {
        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task WriteEventAsync(HttpContext context, Action<Utf8JsonWriter> body)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, OpenAIErrorException.WriterOptions)) body(json);
        await context.Response.WriteAsync("data: ", context.RequestAborted);
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
        await context.Response.WriteAsync("\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task WriteJsonAsync(HttpResponse response, Action<Utf8JsonWriter> body)
    {
        response.ContentType = "application/json";
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, OpenAIErrorException.WriterOptions)) body(json);
        await response.Body.WriteAsync(buffer.WrittenMemory, response.HttpContext.RequestAborted);
    }

    private static void ResponseBody(Utf8JsonWriter json, ChatResponse response, string modelId, bool chat)
    {
        json.WriteStartObject();
        json.WriteString("id", chat ? "chatcmpl-" + response.ResponseId : "cmpl-" + response.ResponseId);
        json.WriteString("object", chat ? "chat.completion" : "text_completion");
        json.WriteNumber("created", (response.CreatedAt ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds());
        json.WriteString("model", modelId);
        json.WriteStartArray("choices");
        json.WriteStartObject();
        json.WriteNumber("index", 0);
        if (chat)
        {
            json.WriteStartObject("message");
            json.WriteString("role", "assistant");
            json.WriteString("content", response.Text);
            json.WriteEndObject();
        }
        else
        {
            json.WriteString("text", response.Text);
        }
        WriteNullable(json, "finish_reason", FinishReason(response.FinishReason));
        json.WriteEndObject();
        json.WriteEndArray();
        Usage(json, response.Usage);
        json.WriteEndObject();
    }

    private static void ChunkBody(Utf8JsonWriter json, string id, long created, string modelId, bool chat, bool first, string? text, string? finish, UsageDetails? usage)
    {
        json.WriteStartObject();
        json.WriteString("id", chat ? "chatcmpl-" + id : "cmpl-" + id);
        json.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
        json.WriteNumber("created", created);
        json.WriteString("model", modelId);
        json.WriteStartArray("choices");
        if (usage is null)
        {
            json.WriteStartObject();
            json.WriteNumber("index", 0);
            if (chat)
            {
                json.WriteStartObject("delta");
                if (first) json.WriteString("role", "assistant");
                if (!string.IsNullOrEmpty(text)) json.WriteString("content", text);
                json.WriteEndObject();
            }
            else
            {
                json.WriteString("text", text ?? "");
            }
            WriteNullable(json, "finish_reason", finish);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        if (usage is not null) Usage(json, usage);
        json.WriteEndObject();
    }

    private static void Usage(Utf8JsonWriter json, UsageDetails? usage)
    {
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", usage?.InputTokenCount ?? 0);
        json.WriteNumber("completion_tokens", usage?.OutputTokenCount ?? 0);
        json.WriteNumber("total_tokens", usage?.TotalTokenCount ?? 0);
        if (usage?.AdditionalCounts is { } extra && extra.TryGetValue(SaberChatClient.NfeCount, out long nfe))
            json.WriteNumber(SaberChatClient.NfeCount, nfe);
        if (usage?.AdditionalCounts is { } counts && counts.TryGetValue(SaberChatClient.ForwardFlopsCount, out long flops))
            json.WriteNumber(SaberChatClient.ForwardFlopsCount, flops);
        foreach (string key in (ReadOnlySpan<string>)[SaberChatClient.RemasksCount, SaberChatClient.RemasksChangedCount, SaberChatClient.PositionsRemaskedTwiceCount])
            if (usage?.AdditionalCounts is { } remasks && remasks.TryGetValue(key, out long count))
                json.WriteNumber(key, count);
        json.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null) json.WriteNull(name); else json.WriteString(name, value);
    }

    private static void ModelsBody(Utf8JsonWriter json, ServedModels models)
    {
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (ServedModel m in models.All) ModelBody(json, m);
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void ModelBody(Utf8JsonWriter json, ServedModel model)
    {
        json.WriteStartObject();
        json.WriteString("id", model.Id);
        json.WriteString("object", "model");
        json.WriteNumber("created", model.Created.ToUnixTimeSeconds());
        json.WriteString("owned_by", "saber");
        if (model.Model.Denoiser.MaxSequenceLength is int max) json.WriteNumber("max_sequence_length", max);
        json.WriteEndObject();
    }

    /// <summary>Loads the models when the host starts, so that a missing model fails the start and /readyz follows the load.</summary>
    private sealed class ModelLoader(IServiceProvider services) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            services.GetRequiredService<ServedModels>();
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
