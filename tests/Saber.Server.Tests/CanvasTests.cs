using System.Net;
using System.Text.Json;

namespace Saber.Server.Tests;

/// <summary><c>POST /v1/canvas</c> (one event per decode step) and the page at <c>GET /</c>.</summary>
public class CanvasTests
{
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await TestSaberServer.StartAsync();

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    [TestCase("saber")]
    [TestCase("low-confidence")]
    [TestCase("threshold")]
    [TestCase("factor")]
    public async Task StreamsEveryStepThenTheCompletionsText(string strategy)
    {
        string body = JsonSerializer.Serialize(new { model = "tiny", prompt = "def fibonacci(n):\n\t", max_tokens = 24, temperature = 0.8, seed = 5, strategy, block_length = 8 });
        HttpResponseMessage response = await server.PostAsync("/v1/canvas", body);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        List<string> events = await TestSaberServer.EventsAsync(response);
        Assert.That(events[^1], Is.EqualTo("[DONE]"));
        List<JsonElement> steps = events.Take(events.Count - 2).Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        Assert.That(steps, Is.Not.Empty);
        int mask = steps[0].GetProperty("mask_id").GetInt32();
        int[]? previous = null;
        for (int k = 0; k < steps.Count; k++)
        {
            JsonElement s = steps[k];
            Assert.That(s.GetProperty("step").GetInt32(), Is.EqualTo(k + 1));
            int[] tokens = s.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
            Assert.That(s.GetProperty("text").GetArrayLength(), Is.EqualTo(tokens.Length));
            Assert.That(s.GetProperty("masked").GetInt32(), Is.EqualTo(tokens.Count(t => t == mask)));
            var committed = s.GetProperty("committed").EnumerateArray().Select(t => t.GetInt32()).ToHashSet();
            var remasked = s.GetProperty("remasked").EnumerateArray().Select(t => t.GetInt32()).ToHashSet();
            foreach (int c in committed.Except(remasked)) Assert.That(tokens[c], Is.Not.EqualTo(mask), $"step {k + 1}: committed {c}");
            foreach (int r in remasked.Except(committed)) Assert.That(tokens[r], Is.EqualTo(mask), $"step {k + 1}: re-masked {r}");
            if (previous is not null)
                for (int i = 0; i < tokens.Length; i++)
                    if (!committed.Contains(i) && !remasked.Contains(i))
                        Assert.That(tokens[i], Is.EqualTo(previous[i]), $"step {k + 1}: position {i} changed without a trace");
            Assert.That(s.GetProperty("finished").GetBoolean(), Is.EqualTo(k == steps.Count - 1));
            previous = tokens;
        }
        Assert.That(steps[^1].GetProperty("masked").GetInt32(), Is.Zero);

        JsonElement final = JsonDocument.Parse(events[^2]).RootElement;
        var (completion, json) = await server.PostJsonAsync("/v1/completions", JsonSerializer.Deserialize<JsonElement>(body));
        Assert.That(completion.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(final.GetProperty("final_text").GetString(), Is.EqualTo(json.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.That(final.GetProperty("steps").GetInt32(), Is.EqualTo(steps.Count));
        Assert.That(final.GetProperty("usage").GetProperty("completion_tokens").GetInt32(),
            Is.EqualTo(json.GetProperty("usage").GetProperty("completion_tokens").GetInt32()));
        // The re-masks the steps showed, as the completion's usage counts them.
        Assert.That(final.GetProperty("usage").GetProperty("remasks").GetInt32(), Is.EqualTo(steps.Sum(s => s.GetProperty("remasked").GetArrayLength())));
        foreach (string key in new[] { "remasks", "remasks_changed", "positions_remasked_twice" })
            Assert.That(final.GetProperty("usage").GetProperty(key).GetInt32(), Is.EqualTo(json.GetProperty("usage").GetProperty(key).GetInt32()), key);
    }

    [TestCase("{not json", HttpStatusCode.BadRequest)]
    [TestCase("""{"model": "nope", "prompt": "x"}""", HttpStatusCode.NotFound)]
    [TestCase("""{"model": "tiny", "prompt": "x", "max_tokens": 100000}""", HttpStatusCode.BadRequest)]
    public async Task ErrorsAreOpenAIErrors(string body, HttpStatusCode status)
    {
        HttpResponseMessage response = await server.PostAsync("/v1/canvas", body);
        Assert.That(response.StatusCode, Is.EqualTo(status));
        JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("message").GetString(), Is.Not.Empty);
    }

    [Test]
    public async Task TheRootIsThePage()
    {
        HttpResponseMessage response = await server.Client.GetAsync("/");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));
        string html = await response.Content.ReadAsStringAsync();
        foreach (string id in new[] { "prompt", "strategy", "run", "canvas", "steps", "final-text", "side-by-side" })
            Assert.That(html, Does.Contain($"id=\"{id}\""));
        Assert.That(html, Does.Contain("fetch(\"/v1/canvas\"").And.Contain("getReader()").And.Not.Contain("innerHTML"));
    }

    [Test]
    public async Task ADisconnectCancelsTheDecode()
    {
        using var leave = new CancellationTokenSource();
        string body = """{"model": "tiny", "prompt": "import os\n", "max_tokens": 256, "strategy": "low-confidence", "steps": 256}""";
        HttpResponseMessage response = await server.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/v1/canvas") { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") },
            HttpCompletionOption.ResponseHeadersRead, leave.Token);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(leave.Token));
        Assert.That(await reader.ReadLineAsync(leave.Token), Does.StartWith("data: {"));
        leave.Cancel();
        response.Dispose();
        var engine = server.Tiny.Engine;
        for (int i = 0; i < 200 && engine.ActiveCount + engine.WaitingCount != 0; i++) await Task.Delay(50);
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero, "the decode ends");
    }
}
