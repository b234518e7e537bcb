using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using Saber.Tests.Shared;

namespace Saber.Server.BrowserTests;

/// <summary>
/// The loopback server and the system Chromium driven by Playwright. No browser is ever downloaded: without Chromium at
/// <see cref="ChromiumPath"/> the calling fixture's tests are ignored, with the reason.
/// </summary>
internal sealed class BrowserFixture : IAsyncDisposable
{
    /// <summary>Where Chromium is looked for: <c>SABER_CHROMIUM</c> when set (a missing path checks the skip), else Debian's /usr/bin/chromium.</summary>
    public static string ChromiumPath => Environment.GetEnvironmentVariable("SABER_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    private readonly IPlaywright playwright;

    private BrowserFixture(LoopbackSaberServer server, IPlaywright playwright, IBrowser browser)
    {
        Server = server;
        this.playwright = playwright;
        Browser = browser;
    }

    public LoopbackSaberServer Server { get; }
    public IBrowser Browser { get; }

    public static async Task<BrowserFixture> StartAsync()
    {
        string chromium = ChromiumPath;
        if (!File.Exists(chromium))
            Assert.Ignore($"Chromium not installed at {chromium} (apt-get install chromium); .ci/run installs it");
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");

        LoopbackSaberServer server = await LoopbackSaberServer.StartAsync();
        IPlaywright playwright = await Playwright.CreateAsync();
        IBrowser browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            // Playwright gives each launch a fresh temporary profile; these keep Chromium off the network and quiet.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"],
        });
        return new BrowserFixture(server, playwright, browser);
    }

    /// <summary>A new page (its own context) on the canvas page, loaded.</summary>
    public async Task<IPage> OpenCanvasAsync()
    {
        IBrowserContext context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        IPage page = await context.NewPageAsync();
        page.SetDefaultTimeout(20_000);
        IResponse? response = await page.GotoAsync(Server.Address.ToString());
        Assert.That(response?.Status, Is.EqualTo(200));
        return page;
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        playwright.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>One decode as the server streams it.</summary>
internal sealed record CanvasRun(List<JsonElement> Steps, string FinalText, int StepCount)
{
    /// <summary>The cells the page should draw for each step: the CSS class and text of each position.</summary>
    public List<(string[] Classes, string[] Text)> ExpectedRenders() => Steps.Select(s =>
    {
        int mask = s.GetProperty("mask_id").GetInt32();
        int[] tokens = s.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        var committed = s.GetProperty("committed").EnumerateArray().Select(t => t.GetInt32()).ToHashSet();
        var remasked = s.GetProperty("remasked").EnumerateArray().Select(t => t.GetInt32()).ToHashSet();
        string[] classes = tokens.Select((t, i) => "cell" + (committed.Contains(i) ? " committed" : remasked.Contains(i) ? " remasked" : t == mask ? " masked" : "")).ToArray();
        string[] text = s.GetProperty("text").EnumerateArray().Select(t => t.GetString()!).ToArray();
        return (classes, text);
    }).ToList();

    /// <summary>Whether some step re-masks a position it does not also commit (the page draws those red).</summary>
    public bool Remasks => Steps.Any(s =>
    {
        var committed = s.GetProperty("committed").EnumerateArray().Select(t => t.GetInt32()).ToHashSet();
        return s.GetProperty("remasked").EnumerateArray().Any(r => !committed.Contains(r.GetInt32()));
    });
}

/// <summary>The page's requests, made without a browser.</summary>
internal static class CanvasRequests
{
    /// <summary>The decode the page asks for, through <c>POST /v1/canvas</c>: every step event and the final event.</summary>
    public static async Task<CanvasRun> CanvasAsync(this LoopbackSaberServer server, string prompt, int maxTokens, string strategy)
    {
        using HttpResponseMessage response = await server.Client.PostAsync("/v1/canvas", CanvasBody(prompt, maxTokens, strategy));
        string text = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(200), text);
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).ToList();
        Assert.That(events[^1], Is.EqualTo("[DONE]"));
        var steps = events.Take(events.Count - 2).Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        JsonElement final = JsonDocument.Parse(events[^2]).RootElement.Clone();
        return new CanvasRun(steps, final.GetProperty("final_text").GetString()!, final.GetProperty("steps").GetInt32());
    }

    /// <summary>The body the page posts (greedy by default, so the decode is deterministic).</summary>
    public static StringContent CanvasBody(string prompt, int maxTokens, string strategy) =>
        new(JsonSerializer.Serialize(new { model = "tiny", prompt, max_tokens = maxTokens, strategy }), Encoding.UTF8, "application/json");
}
