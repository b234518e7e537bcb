using System.Globalization;
using System.Net;

namespace Saber.Server.Tests;

/// <summary><c>GET /metrics</c>: the engines' and ASP.NET Core's meters in Prometheus's text format.</summary>
public class MetricsTests
{
    /// <summary>The value of the one sample whose name and labels contain every fragment given.</summary>
    private static double Sample(string exposition, string name, params string[] labels)
    {
        string[] matches = exposition.Split('\n')
            .Where(line => !line.StartsWith('#') && (line.StartsWith(name + "{") || line.StartsWith(name + " ")))
            .Where(line => labels.All(line.Contains))
            .ToArray();
        Assert.That(matches, Has.Length.EqualTo(1), $"samples of {name} with {string.Join(", ", labels)} in:\n{exposition}");
        string[] fields = matches[0].Split(' ');
        // "name{labels} value" or "name{labels} value timestamp": the value follows the closing brace.
        string value = matches[0].Contains('}') ? matches[0][(matches[0].LastIndexOf('}') + 2)..].Split(' ')[0] : fields[1];
        return double.Parse(value, CultureInfo.InvariantCulture);
    }

    [Test]
    public async Task TheScrapeCountsTheRequestsStepsAndPassesTheServerServed()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        int nfe = 0, promptTokens = 0, completionTokens = 0;
        foreach (string prompt in new[] { "import os\n", "def f(x):\n" })
        {
            var (response, body) = await server.PostJsonAsync("/v1/completions", new { model = "tiny", prompt, max_tokens = 8 });
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            nfe += body.GetProperty("usage").GetProperty("nfe").GetInt32();
            promptTokens += body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
            completionTokens += body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        }

        HttpResponseMessage scrape = await server.Client.GetAsync(SaberServer.MetricsPath);
        Assert.That(scrape.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(scrape.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/plain"));
        string text = await scrape.Content.ReadAsStringAsync();

        Assert.That(Sample(text, "saber_requests_total", "outcome=\"completed\""), Is.EqualTo(2));
        Assert.That(Sample(text, "saber_request_nfe_count"), Is.EqualTo(2));
        Assert.That(Sample(text, "saber_request_nfe_sum"), Is.EqualTo(nfe), "the NFE histogram sums the requests' usage.nfe");
        // Requests decoded one after the other: one forward pass per step, as many as the two decodes' NFE together.
        Assert.That(Sample(text, "saber_forward_passes_total"), Is.EqualTo(nfe));
        Assert.That(Sample(text, "saber_active_sequences"), Is.EqualTo(0));
        // Every engine series names the served model.
        Assert.That(Sample(text, "saber_requests_total", "model=\"tiny\"", "outcome=\"completed\""), Is.EqualTo(2));
        string[] engineSamples = text.Split('\n').Where(line => line.StartsWith("saber_", StringComparison.Ordinal)).ToArray();
        Assert.That(engineSamples, Is.Not.Empty.And.All.Contain("model=\"tiny\""));
        // ASP.NET Core's own request meter, by route.
        Assert.That(Sample(text, "http_server_request_duration_seconds_count", "http_route=\"/v1/completions\"", "http_response_status_code=\"200\""),
            Is.EqualTo(2));
        // The request pipelines' GenAI meter (Microsoft.Extensions.AI's OpenTelemetryChatClient): durations and token usage.
        Assert.That(Sample(text, "gen_ai_client_operation_duration_seconds_count", "gen_ai_request_model=\"tiny\""), Is.EqualTo(2));
        Assert.That(Sample(text, "gen_ai_client_token_usage_sum", "gen_ai_token_type=\"input\""), Is.EqualTo(promptTokens));
        Assert.That(Sample(text, "gen_ai_client_token_usage_sum", "gen_ai_token_type=\"output\""), Is.EqualTo(completionTokens));
    }

    [Test]
    public async Task MetricsOffAnswersTheEndpointWithA404()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:Metrics", "false"));
        HttpResponseMessage scrape = await server.Client.GetAsync(SaberServer.MetricsPath);
        Assert.That(scrape.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }
}
