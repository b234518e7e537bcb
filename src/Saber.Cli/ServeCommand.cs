using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Saber.Server;

namespace Saber.Cli;

/// <summary><c>saber serve</c>: the OpenAI-compatible HTTP server (Saber.Server) until Ctrl+C.</summary>
internal static partial class ServeCommand
{
    public const string Usage =
        "usage: saber serve [--model NAME=DIR ...] [--urls URL]\n" +
        "  --model NAME=DIR   serve the model in DIR (model.onnx and tokenizer.json) as model id NAME; repeatable\n" +
        "                     (default: the shipped models/tiny as \"tiny\"). Requests name models by id, never by path\n" +
        "  --urls URL         where to listen, e.g. http://127.0.0.1:8080 (the default: loopback only); ';' separates several\n" +
        "                     (an address other machines reach needs Server:ApiKeys or Server:ApiKeysFile; clients send\n" +
        "                     Authorization: Bearer KEY)\n" +
        "  --engine E         onnx (default, the CPU), onnx-cuda or onnx-tensorrt: where every model's forward pass runs\n" +
        "  --device N         the CUDA device of onnx-cuda and onnx-tensorrt (default 0)\n" +
        "  --precision P      onnx-tensorrt: model (default), fp16 or bf16\n" +
        "Endpoints:\n" +
        "  POST /v1/chat/completions   chat (OpenAI's shape; \"stream\": true for server-sent events)\n" +
        "  POST /v1/completions        text completion (OpenAI's legacy shape)\n" +
        "  POST /v1/canvas             a text completion streamed one event per decode step\n" +
        "  GET  /                      the canvas page (watch a decode in a browser)\n" +
        "  GET  /v1/models             the served models;  GET /v1/models/{id}  one of them\n" +
        "  GET  /healthz               liveness;  GET /readyz  readiness (503 while loading or stopping)\n" +
        "  GET  /metrics               Prometheus metrics (Server:Metrics)\n" +
        "Settings: appsettings.json in the working directory or environment variables (Server__MaxTokens=...):\n" +
        "section Server (" + ServerSettings + ")\n" +
        "and section Saber (the engine: Capacity, MaxBatchSize, ...). Requests choose their strategy and cache\n" +
        "(\"cache\": \"dual\", on a model with model.cache.onnx).\n" +
        "Ctrl+C or SIGTERM stops it: unfinished requests are cancelled and answered 503 shutting_down (a stream: a last error\n" +
        "event), and the process exits within 2 s (exit code 0).";

    /// <summary>The settings of section Server, as they are named in configuration (every public property of <see cref="SaberServerOptions"/>).</summary>
    private const string ServerSettings =
        "Models, MaxRequestBodyBytes, MaxPromptTokens, MaxTokens, DefaultMaxTokens, Metrics, MaxConcurrentRequests,\n" +
        "MaxForwardPassesPerToken, RequestBodyTimeoutSeconds, MinRequestBodyBytesPerSecond, ApiKeys, ApiKeysFile,\n" +
        "AllowUnauthenticatedRemote, IntraOpThreads, MaxCacheBytes, Engine, Device, Precision,\n" +
        "Tracing (OtlpEndpoint, OtlpProtocol, Enabled)";

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, bool verbose, CancellationToken cancellationToken)
    {
        var models = new List<(string Name, string Directory)>();
        var single = new Dictionary<string, string>();
        for (int i = 0; i < argv.Length; i++)
        {
            string option = argv[i];
            if (option is not ("--model" or "--urls" or "--engine" or "--device" or "--precision"))
                throw new UsageException(option.StartsWith("--", StringComparison.Ordinal) ? $"Unknown option {option}." : $"Unexpected argument '{option}'.");
            if (i + 1 >= argv.Length) throw new UsageException($"Option {option} needs a value.");
            string value = argv[++i];
            if (option != "--model")
            {
                if (!single.TryAdd(option, value)) throw new UsageException($"Option {option} is given twice.");
                continue;
            }
            int eq = value.IndexOf('=');
            if (eq <= 0 || eq == value.Length - 1)
                throw new UsageException($"--model takes NAME=DIR; got '{value}'.");
            string name = value[..eq];
            if (!ModelName().IsMatch(name))
                throw new UsageException($"Model id '{name}' may hold only letters, digits, '.', '_' and '-'.");
            if (models.Any(m => m.Name == name))
                throw new UsageException($"Model id '{name}' is given twice.");
            models.Add((name, Path.GetFullPath(value[(eq + 1)..])));
        }

        string? urls = single.GetValueOrDefault("--urls");
        string[] hostArgs = urls is null ? [] : ["--urls", urls];
        int? device = null;
        if (single.TryGetValue("--device", out string? deviceText))
            device = int.TryParse(deviceText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int d)
                ? d : throw new UsageException($"--device expects a CUDA device number >= 0; got '{deviceText}'.");
        if (single.GetValueOrDefault("--engine") is { } engineName && Saber.Onnx.ExecutionProviders.TryFromEngineName(engineName) is null)
            throw new UsageException($"--engine expects onnx, onnx-cuda or onnx-tensorrt; got '{engineName}'.");
        WebApplicationBuilder builder = SaberServer.CreateBuilder(hostArgs);
        builder.Logging.SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Warning);
        // As every command: stdout carries results (here the listening line), every log line goes to stderr, one line each.
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        // The host logs a failed start (a missing model, an address in use) as an exception with its stack trace, then
        // rethrows it; Program reports it in one line. Its stop failures are rethrown too.
        if (!verbose) builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        // Command-line engine settings replace configured ones (the server checks them as it starts).
        builder.Services.PostConfigure<SaberServerOptions>(o =>
        {
            if (single.TryGetValue("--engine", out string? engine)) o.Engine = engine;
            if (device is int value) o.Device = value;
            if (single.TryGetValue("--precision", out string? precision)) o.Precision = precision;
        });
        if (models.Count > 0)
        {
            // Command-line models replace any configured ones.
            builder.Services.PostConfigure<SaberServerOptions>(o =>
            {
                o.Models.Clear();
                foreach (var (name, directory) in models) o.Models[name] = directory;
            });
        }
        await using WebApplication app = SaberServer.Build(builder);
        await app.StartAsync(cancellationToken);
        string addresses = string.Join(", ", app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? []);
        string served = string.Join(", ", app.Services.GetRequiredService<ServedModels>().All.Select(m => m.Id));
        stdout.WriteLine($"saber serve: listening on {addresses} (models: {served}); Ctrl+C stops");
        stdout.Flush();
        try
        {
            await app.WaitForShutdownAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
        await app.StopAsync(CancellationToken.None);
        stdout.WriteLine("saber serve: stopped");
        return 0;
    }

    [GeneratedRegex("^[A-Za-z0-9._-]+$")]
    private static partial Regex ModelName();
}
