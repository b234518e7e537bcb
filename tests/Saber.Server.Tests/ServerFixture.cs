using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>The server on a TestServer, serving the shipped models/tiny as "tiny".</summary>
internal sealed class TestSaberServer : IAsyncDisposable
{
    public static string TinyDirectory => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    private TestSaberServer(WebApplication app)
    {
        App = app;
        Client = app.GetTestClient();
    }

    public WebApplication App { get; }
    public HttpClient Client { get; }
    public ServedModel Tiny => App.Services.GetRequiredService<ServedModels>().All.Single(m => m.Id == "tiny");

    public static Task<TestSaberServer> StartAsync(params (string Key, string Value)[] settings) =>
        StartAsync(configureTiny: true, settings);

    public static Task<TestSaberServer> StartAsync(bool configureTiny, params (string Key, string Value)[] settings) =>
        StartAsync(configureTiny, configure: null, settings);

    /// <summary>The server with <paramref name="configure"/> run on its builder before it is built (a log capture).</summary>
    public static Task<TestSaberServer> StartAsync(Action<WebApplicationBuilder> configure, params (string Key, string Value)[] settings) =>
        StartAsync(configureTiny: true, configure, settings);

    private static async Task<TestSaberServer> StartAsync(bool configureTiny, Action<WebApplicationBuilder>? configure, params (string Key, string Value)[] settings)
    {
        var values = new Dictionary<string, string?>();
        if (configureTiny) values["Server:Models:tiny"] = TinyDirectory;
        foreach (var (key, value) in settings) values[key] = value;
        WebApplication app = await SaberTestHost.StartAsync([], values, builder =>
        {
            builder.WebHost.UseTestServer();
            configure?.Invoke(builder);
        });
        return new TestSaberServer(app);
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json, CancellationToken cancellationToken = default) =>
        Client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"), cancellationToken);

    public async Task<(HttpResponseMessage Response, JsonElement Body)> PostJsonAsync(string path, object body)
    {
        HttpResponseMessage response = await PostAsync(path, JsonSerializer.Serialize(body));
        string text = await response.Content.ReadAsStringAsync();
        return (response, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The events of a server-sent-event stream: each <c>data: ...</c> payload, in order.</summary>
    public static async Task<List<string>> EventsAsync(HttpResponseMessage response)
    {
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/event-stream"));
        string text = await response.Content.ReadAsStringAsync();
        var events = new List<string>();
        foreach (string block in text.Split("\n\n"))
        {
            if (block.Length == 0) continue;
            Assert.That(block, Does.StartWith("data: "), $"an event that is not 'data: ...': {block}");
            events.Add(block["data: ".Length..]);
        }
        Assert.That(text, Does.EndWith("data: [DONE]\n\n"));
        return events;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
