using System.Net;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Saber.Checkpoints.Fixtures;
using Saber.Import;

namespace Saber.Server.Tests;

/// <summary>
/// <c>saber serve --model NAME=DIR</c> on checkpoints imported by <c>saber import</c>: chat completions prompt with the
/// checkpoint's own chat template, text completions and the canvas stream answer as for the shipped model.
/// </summary>
public sealed class ImportedModelServerTests
{
    private string root = "";
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task ImportAndServe()
    {
        root = Directory.CreateTempSubdirectory("saber-served-imports-").FullName;
        var settings = new List<(string, string)>();
        foreach (Family family in new[] { Family.LLaDA, Family.Dream })
        {
            string checkpoint = Path.Combine(root, $"{family}-checkpoint"), model = Path.Combine(root, family.ToString());
            CheckpointFixture.Write(checkpoint, new FixtureOptions { Family = family, DType = FixtureDType.BF16, Shards = 2 });
            new ModelImporter().Import(checkpoint, model);
            settings.Add(($"Server:Models:{family.ToString().ToLowerInvariant()}", model));
        }
        server = await TestSaberServer.StartAsync(configureTiny: false, [.. settings]);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await server.DisposeAsync();
        Directory.Delete(root, recursive: true);
    }

    private ServedModel Model(string id) => server.App.Services.GetRequiredService<ServedModels>().All.Single(m => m.Id == id);

    [TestCase("llada", "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWrite a loop.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [TestCase("dream", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a loop.<|im_end|>\n<|im_start|>assistant\n")]
    public async Task ChatCompletionsUseTheCheckpointsTemplate(string id, string prompt)
    {
        foreach (string strategy in new[] { "saber", "low-confidence", "threshold", "factor" })
        {
            var (response, body) = await server.PostJsonAsync("/v1/chat/completions", new
            {
                model = id,
                messages = new[] { new { role = "user", content = "Write a loop." } },
                max_tokens = 16, strategy, block_length = 8,
            });
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            ServedModel model = Model(id);
            Assert.That(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(model.Model.Tokenizer.Encode(prompt).Length),
                $"{strategy}: the prompt is the checkpoint's template rendered");
            Assert.That(body.GetProperty("usage").GetProperty("nfe").GetInt32(), Is.InRange(1, 16));
            ChatResponse expected = await model.Chat.GetResponseAsync([new ChatMessage(ChatRole.User, "Write a loop.")],
                new ChatOptions { MaxOutputTokens = 16, AdditionalProperties = new() { ["strategy"] = strategy, ["block_length"] = 8 } });
            Assert.That(body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), Is.EqualTo(expected.Text), strategy);
        }
    }

    [TestCase("llada")]
    [TestCase("dream")]
    public async Task TextCompletionsAndTheCanvasStreamAnswer(string id)
    {
        var (response, body) = await server.PostJsonAsync("/v1/completions", new { model = id, prompt = "def f(x):", max_tokens = 16, block_length = 8 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(Model(id).Model.Tokenizer.Encode("def f(x):").Length));

        HttpResponseMessage canvas = await server.PostAsync("/v1/canvas", JsonSerializer.Serialize(new { model = id, prompt = "def f(x):", max_tokens = 16, block_length = 8 }));
        Assert.That(canvas.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        List<string> events = await TestSaberServer.EventsAsync(canvas);
        Assert.That(events.Count, Is.GreaterThanOrEqualTo(3), "at least one step, the final text and [DONE]");
        using JsonDocument first = JsonDocument.Parse(events[0]);
        Assert.That(first.RootElement.GetProperty("tokens").GetArrayLength(), Is.EqualTo(16));
        Assert.That(first.RootElement.GetProperty("mask_id").GetInt32(), Is.EqualTo(Model(id).Model.Tokenizer.MaskId));
    }

    [Test]
    public async Task TheModelsListNamesBothImports()
    {
        HttpResponseMessage response = await server.Client.GetAsync("/v1/models");
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.That(body.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()), Is.EquivalentTo(new[] { "llada", "dream" }));
    }
}
