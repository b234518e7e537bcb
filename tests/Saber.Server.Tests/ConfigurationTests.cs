using System.Net;
using System.Text.Json;

namespace Saber.Server.Tests;

/// <summary>Which models are served, and under which ids.</summary>
public class ConfigurationTests
{
    private static async Task<string[]> ModelIdsAsync(TestSaberServer server)
    {
        HttpResponseMessage response = await server.Client.GetAsync("/v1/models");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("data")
            .EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
    }

    [Test]
    public async Task WithoutConfiguredModelsTheShippedModelIsServedAsTiny()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(configureTiny: false);
        Assert.That(await ModelIdsAsync(server), Is.EqualTo(new[] { "tiny" }));
    }

    [Test]
    public async Task EachConfiguredModelHasItsOwnEngineAndAnswersUnderItsId()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(configureTiny: false,
            ("Server:Models:first", TestSaberServer.TinyDirectory), ("Server:Models:second", TestSaberServer.TinyDirectory));
        Assert.That(await ModelIdsAsync(server), Is.EquivalentTo(new[] { "first", "second" }));
        var models = server.App.Services.GetService(typeof(ServedModels)) as ServedModels;
        Assert.That(models!.All.Select(m => m.Engine).Distinct().Count(), Is.EqualTo(2));

        var (response, body) = await server.PostJsonAsync("/v1/completions", new { model = "second", prompt = "import os\n", max_tokens = 8 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("model").GetString(), Is.EqualTo("second"));
        (response, _) = await server.PostJsonAsync("/v1/completions", new { model = "tiny", prompt = "import os\n", max_tokens = 8 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public void AnInvalidLimitFailsTheStart()
    {
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:MaxTokens", "0"));
        });
        Assert.That(e!.Message, Does.Contain("Server:MaxTokens"));
    }
}
