using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Saber.Server;
using Saber.Service;

namespace Saber.Tests.Shared;

/// <summary>
/// <c>saber serve</c>'s application on a real loopback port (Kestrel, not a TestServer), serving the shipped models/tiny
/// as "tiny": what browsers, the official OpenAI client and raw-socket attacks need. Compiled into the server's test
/// projects from tests/Shared.
/// </summary>
internal sealed class LoopbackSaberServer : IAsyncDisposable
{
    private LoopbackSaberServer(WebApplication app, Uri address)
    {
        App = app;
        Address = address;
        // Loopback only; an HTTP_PROXY in the environment must not route the requests elsewhere.
        Client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
    }

    public WebApplication App { get; }

    /// <summary>The bound address, e.g. http://127.0.0.1:41234/.</summary>
    public Uri Address { get; }

    public HttpClient Client { get; }

    public SaberEngine TinyEngine => App.Services.GetRequiredService<ServedModels>().All.Single(m => m.Id == "tiny").Engine;

    /// <summary>Starts the server on 127.0.0.1 at a port the OS picks, with <paramref name="settings"/> over the defaults.</summary>
    public static Task<LoopbackSaberServer> StartAsync(params (string Key, string Value)[] settings) => StartAsync(configure: null, settings);

    /// <summary>
    /// <see cref="StartAsync(ValueTuple{string, string}[])"/>, with <paramref name="configure"/> run on the builder before it
    /// is built (a log capture, a Kestrel endpoint).
    /// </summary>
    public static async Task<LoopbackSaberServer> StartAsync(Action<WebApplicationBuilder>? configure, params (string Key, string Value)[] settings)
    {
        // As `saber serve --urls http://127.0.0.1:0` builds it.
        var values = new Dictionary<string, string?> { ["Server:Models:tiny"] = Path.Combine(AppContext.BaseDirectory, "models", "tiny") };
        foreach (var (key, value) in settings) values[key] = value;
        WebApplication app = await SaberTestHost.StartAsync(["--urls", "http://127.0.0.1:0"], values, configure);
        return new LoopbackSaberServer(app, new Uri(app.Urls.Single()));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>How the server's test fixtures build and start the application: its settings over one ONNX Runtime thread, warnings and above logged.</summary>
internal static class SaberTestHost
{
    public static async Task<WebApplication> StartAsync(string[] args, Dictionary<string, string?> settings, Action<WebApplicationBuilder>? configure)
    {
        WebApplicationBuilder builder = SaberServer.CreateBuilder(args);
        var values = new Dictionary<string, string?>(settings);
        values.TryAdd("Server:IntraOpThreads", "1");
        builder.Configuration.AddInMemoryCollection(values);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        configure?.Invoke(builder);
        WebApplication app = SaberServer.Build(builder);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            // A refused start (a bad setting, a non-loopback address without keys) may have bound a port already.
            await app.DisposeAsync();
            throw;
        }
        return app;
    }
}
