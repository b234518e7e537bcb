using System.Text.Json;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Saber.Server.BrowserTests;

/// <summary>The canvas page (<c>GET /</c>) in a real browser against a real server: what it draws step by step and what it ends with.</summary>
public class CanvasPageTests
{
    // Short decodes of the tiny CPU model (milliseconds per step). With this prompt Saber re-masks, and Saber and
    // low-confidence end in different visible texts after different step counts (checked below, so no check is vacuous).
    private const string Prompt = "def add(a, b):\n    return ";
    private const int MaxTokens = 16;

    // Records every grid the page draws (a MutationObserver sees each step even when several arrive in one read, which
    // polling from the test could miss) and every value #steps shows.
    private const string Recorder = """
        () => {
          window.renders = []; window.stepValues = [];
          const current = new Map();
          new MutationObserver(records => {
            for (const r of records) {
              const t = r.target;
              if (t.id === "steps") { for (const n of r.addedNodes) window.stepValues.push(n.textContent); continue; }
              if (!(t instanceof HTMLElement) || !t.classList.contains("grid") || r.addedNodes.length === 0) continue;
              const strategy = t.parentElement.dataset.strategy;
              // draw() empties the grid, then appends the cells in order: no previous sibling starts a new drawing.
              if (r.previousSibling === null || !current.has(strategy)) {
                const render = { strategy, classes: [], text: [] };
                window.renders.push(render); current.set(strategy, render);
              }
              for (const n of r.addedNodes) { current.get(strategy).classes.push(n.className); current.get(strategy).text.push(n.textContent); }
            }
          }).observe(document.body, { childList: true, subtree: true });
        }
        """;

    private BrowserFixture fixture = null!;

    [OneTimeSetUp]
    public async Task Start() => fixture = await BrowserFixture.StartAsync();

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (fixture is not null) await fixture.DisposeAsync();
    }

    [Test]
    public async Task ASingleRunDrawsEveryStepAndEndsWithTheServersText()
    {
        CanvasRun expected = await fixture.Server.CanvasAsync(Prompt, MaxTokens, "saber");
        Assert.That(expected.StepCount, Is.GreaterThan(1), "a decode of several steps");
        Assert.That(expected.Remasks, Is.True, "the prompt is chosen so that Saber re-masks; pick another if the model changes");
        Assert.That(expected.FinalText.Trim(), Is.Not.Empty, "a visible final text to compare");

        IPage page = await fixture.OpenCanvasAsync();
        await page.EvaluateAsync(Recorder);
        await page.FillAsync("#prompt", Prompt);
        await page.SelectOptionAsync("#strategy", "saber");
        await page.FillAsync("#max-tokens", MaxTokens.ToString());
        await page.ClickAsync("#run");
        await Expect(page.Locator("#canvas")).ToHaveAttributeAsync("data-state", "done");

        Assert.That(await page.TextContentAsync("#final-text"), Is.EqualTo(expected.FinalText));
        Assert.That(await page.TextContentAsync("#steps"), Is.EqualTo(expected.StepCount.ToString()));

        // #steps counted up through the decode, one value per step.
        List<string> stepValues = await StringsAsync(page, "window.stepValues");
        Assert.That(stepValues.Where(v => v != "0"), Is.EqualTo(Enumerable.Range(1, expected.StepCount).Select(k => k.ToString()).Append(expected.StepCount.ToString())));

        List<Render> renders = await RendersAsync(page);
        AssertDrawn(renders, "saber", expected);
        Assert.That(renders.Any(r => r.Classes.Contains("cell committed")), "some step draws a committed cell");
        Assert.That(renders.Any(r => r.Classes.Contains("cell remasked")), "some step draws a re-masked cell");
        await ScreenshotAsync(page, "canvas-single");
    }

    [Test]
    public async Task SideBySideRunsSaberAndLowConfidenceEachToItsOwnText()
    {
        CanvasRun saber = await fixture.Server.CanvasAsync(Prompt, MaxTokens, "saber");
        CanvasRun lowConfidence = await fixture.Server.CanvasAsync(Prompt, MaxTokens, "low-confidence");
        Assert.That(lowConfidence.StepCount, Is.Not.EqualTo(saber.StepCount), "the prompt is chosen so that the two strategies differ");
        Assert.That(lowConfidence.FinalText, Is.Not.EqualTo(saber.FinalText));
        Assert.That(lowConfidence.FinalText.Trim(), Is.Not.Empty);

        IPage page = await fixture.OpenCanvasAsync();
        await page.EvaluateAsync(Recorder);
        await page.FillAsync("#prompt", Prompt);
        await page.FillAsync("#max-tokens", MaxTokens.ToString());
        await page.CheckAsync("#side-by-side");
        await page.ClickAsync("#run");
        await Expect(page.Locator("#canvas")).ToHaveAttributeAsync("data-state", "done");

        Assert.That(await page.Locator("#canvas .panel").EvaluateAllAsync<string[]>("ps => ps.map(p => p.dataset.strategy)"),
            Is.EqualTo(new[] { "saber", "low-confidence" }));
        foreach (var (strategy, run) in new[] { ("saber", saber), ("low-confidence", lowConfidence) })
        {
            ILocator panel = page.Locator($"#canvas .panel[data-strategy=\"{strategy}\"]");
            Assert.That(await panel.GetAttributeAsync("data-done"), Is.EqualTo("true"), strategy);
            Assert.That(await panel.Locator(".final-text").TextContentAsync(), Is.EqualTo(run.FinalText), strategy);
            Assert.That(await panel.GetAttributeAsync("data-steps"), Is.EqualTo(run.StepCount.ToString()), strategy);
        }
        Assert.That(await page.Locator("#canvas .panel[data-strategy=\"saber\"]").GetAttributeAsync("data-steps"),
            Is.Not.EqualTo(await page.Locator("#canvas .panel[data-strategy=\"low-confidence\"]").GetAttributeAsync("data-steps")), "each panel counts its own steps");
        Assert.That(await page.TextContentAsync("#steps"), Is.EqualTo($"saber {saber.StepCount}, low-confidence {lowConfidence.StepCount}"));
        Assert.That(await page.TextContentAsync("#final-text"), Is.Empty, "side by side, the final texts are the panels'");

        List<Render> renders = await RendersAsync(page);
        AssertDrawn(renders, "saber", saber);
        AssertDrawn(renders, "low-confidence", lowConfidence);
        await ScreenshotAsync(page, "canvas-side-by-side");
    }

    private sealed record Render(string Strategy, string[] Classes, string[] Text);

    /// <summary>The page drew exactly the server's steps for <paramref name="strategy"/>, in order: each cell's class and text.</summary>
    private static void AssertDrawn(List<Render> renders, string strategy, CanvasRun expected)
    {
        var drawn = renders.Where(r => r.Strategy == strategy).ToList();
        var steps = expected.ExpectedRenders();
        Assert.That(drawn, Has.Count.EqualTo(steps.Count), $"{strategy}: one drawing per step");
        for (int k = 0; k < steps.Count; k++)
        {
            Assert.That(drawn[k].Classes, Is.EqualTo(steps[k].Classes), $"{strategy} step {k + 1}: cell classes");
            Assert.That(drawn[k].Text, Is.EqualTo(steps[k].Text), $"{strategy} step {k + 1}: cell text");
        }
    }

    private static async Task<List<Render>> RendersAsync(IPage page)
    {
        JsonElement json = await page.EvaluateAsync<JsonElement>("() => window.renders");
        return json.EnumerateArray().Select(r => new Render(r.GetProperty("strategy").GetString()!,
            r.GetProperty("classes").EnumerateArray().Select(c => c.GetString()!).ToArray(),
            r.GetProperty("text").EnumerateArray().Select(c => c.GetString()!).ToArray())).ToList();
    }

    private static async Task<List<string>> StringsAsync(IPage page, string expression)
    {
        JsonElement json = await page.EvaluateAsync<JsonElement>("() => " + expression);
        return json.EnumerateArray().Select(v => v.GetString()!).ToList();
    }

    /// <summary>A full-page PNG of the finished page under the test output directory, attached to the test's result.</summary>
    private static async Task ScreenshotAsync(IPage page, string name)
    {
        string path = Path.Combine(TestContext.CurrentContext.TestDirectory, "screenshots", name + ".png");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        byte[] png = await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        Assert.That(png.AsSpan(0, 8).SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), "a PNG");
        TestContext.AddTestAttachment(path, "the finished canvas page");
        await page.Context.CloseAsync();
    }
}
