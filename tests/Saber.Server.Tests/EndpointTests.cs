using System.Net;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Saber.Extensions.AI;

namespace Saber.Server.Tests;

/// <summary>The endpoints' shapes and results, on the shipped model.</summary>
public class EndpointTests
{
    private const string Code = "def fibonacci(n):\n\t";
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await TestSaberServer.StartAsync();

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    private static ChatOptions Options(int maxTokens, string strategy, int block) => new()
    {
        MaxOutputTokens = maxTokens,
        Temperature = 0.8f,
        Seed = 5,
        AdditionalProperties = new() { ["strategy"] = strategy, ["block_length"] = block },
    };

    [TestCase("saber")]
    [TestCase("low-confidence")]
    [TestCase("threshold")]
    [TestCase("factor")]
    public async Task ChatCompletionHasOpenAIsShapeAndTheChatClientsResult(string strategy)
    {
        var (response, body) = await server.PostJsonAsync("/v1/chat/completions", new
        {
            model = "tiny",
            messages = new[] { new { role = "user", content = Code } },
            max_tokens = 24, temperature = 0.8, seed = 5, strategy, block_length = 8,
        });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        ChatResponse expected = await server.Tiny.Chat.GetResponseAsync([new ChatMessage(ChatRole.User, Code)], Options(24, strategy, 8));

        Assert.That(body.GetProperty("id").GetString(), Does.StartWith("chatcmpl-"));
        Assert.That(body.GetProperty("object").GetString(), Is.EqualTo("chat.completion"));
        Assert.That(body.GetProperty("created").GetInt64(), Is.GreaterThan(1_600_000_000));
        Assert.That(body.GetProperty("model").GetString(), Is.EqualTo("tiny"));
        JsonElement choice = body.GetProperty("choices").EnumerateArray().Single();
        Assert.That(choice.GetProperty("index").GetInt32(), Is.EqualTo(0));
        Assert.That(choice.GetProperty("message").GetProperty("role").GetString(), Is.EqualTo("assistant"));
        Assert.That(choice.GetProperty("message").GetProperty("content").GetString(), Is.EqualTo(expected.Text));
        Assert.That(choice.GetProperty("finish_reason").GetString(), Is.EqualTo(expected.FinishReason == ChatFinishReason.Stop ? "stop" : "length"));
        JsonElement usage = body.GetProperty("usage");
        Assert.That(usage.GetProperty("prompt_tokens").GetInt64(), Is.EqualTo(expected.Usage!.InputTokenCount));
        Assert.That(usage.GetProperty("prompt_tokens").GetInt64(), Is.EqualTo(("user: " + Code + "\nassistant: ").Length), "the role-tagged template, one token a character");
        Assert.That(usage.GetProperty("completion_tokens").GetInt64(), Is.EqualTo(expected.Usage.OutputTokenCount));
        Assert.That(usage.GetProperty("total_tokens").GetInt64(),
            Is.EqualTo(usage.GetProperty("prompt_tokens").GetInt64() + usage.GetProperty("completion_tokens").GetInt64()));
    }

    [Test]
    public async Task CompletionHasOpenAIsShapeAndTheEnginesResult()
    {
        var (response, body) = await server.PostJsonAsync("/v1/completions", new
        {
            model = "tiny", prompt = Code, max_tokens = 32, strategy = "low-confidence", block_length = 16, steps = 32,
        });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        // What the engine decodes for the prompt as is (no template), cut at the first end-of-text.
        ServedModel tiny = server.Tiny;
        SaberChatRequest request = tiny.Completion.CreateRequest([new ChatMessage(ChatRole.User, Code)],
            new ChatOptions { MaxOutputTokens = 32, AdditionalProperties = new() { ["strategy"] = "low-confidence", ["block_length"] = 16, ["steps"] = 32 } });
        int[] prompt = tiny.Model.Tokenizer.Encode(Code);
        Assert.That(request.PromptTokens, Is.EqualTo(prompt));
        SequenceResult direct = await tiny.Engine.DecodeAsync(prompt, request.Options);
        string expected = tiny.Model.Tokenizer.Decode(direct.Tokens);   // G = L = 32; Decode stops at the first end-of-text

        Assert.That(body.GetProperty("id").GetString(), Does.StartWith("cmpl-"));
        Assert.That(body.GetProperty("object").GetString(), Is.EqualTo("text_completion"));
        Assert.That(body.GetProperty("model").GetString(), Is.EqualTo("tiny"));
        JsonElement choice = body.GetProperty("choices").EnumerateArray().Single();
        Assert.That(choice.GetProperty("index").GetInt32(), Is.EqualTo(0));
        string text = choice.GetProperty("text").GetString()!;
        Assert.That(text, Is.EqualTo(expected));
        Assert.That(choice.GetProperty("finish_reason").GetString(), Is.AnyOf("stop", "length"));
        JsonElement usage = body.GetProperty("usage");
        Assert.That(usage.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(prompt.Length));
        Assert.That(usage.GetProperty("completion_tokens").GetInt32(), Is.EqualTo(text.Length), "one token a character");
        Assert.That(usage.GetProperty("total_tokens").GetInt32(), Is.EqualTo(prompt.Length + text.Length));
        Assert.That(usage.GetProperty("nfe").GetInt32(), Is.EqualTo(direct.Nfe));
        Assert.That(usage.GetProperty("remasks").GetInt32(), Is.Zero, "low-confidence never re-masks");
        Assert.That(usage.GetProperty("remasks_changed").GetInt32(), Is.Zero);
        Assert.That(usage.GetProperty("positions_remasked_twice").GetInt32(), Is.Zero);
    }

    [TestCase(true, "low-confidence")]
    [TestCase(true, "saber")]
    [TestCase(false, "threshold")]
    [TestCase(true, "factor")]
    public async Task StreamsChunksThenDoneAndTheirTextIsTheResponse(bool chat, string strategy)
    {
        string path = chat ? "/v1/chat/completions" : "/v1/completions";
        object Body(bool stream) => chat
            ? new { model = "tiny", messages = new[] { new { role = "user", content = Code } }, max_tokens = 24, strategy, block_length = 8, stream, stream_options = new { include_usage = true } }
            : new { model = "tiny", prompt = Code, max_tokens = 24, strategy, block_length = 8, stream, stream_options = new { include_usage = true } };
        var (_, whole) = await server.PostJsonAsync(path, Body(false));
        JsonElement wholeChoice = whole.GetProperty("choices")[0];
        string expected = chat ? wholeChoice.GetProperty("message").GetProperty("content").GetString()! : wholeChoice.GetProperty("text").GetString()!;

        HttpResponseMessage response = await server.PostAsync(path, JsonSerializer.Serialize(Body(true)));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        List<string> events = await TestSaberServer.EventsAsync(response);
        Assert.That(events[^1], Is.EqualTo("[DONE]"));
        Assert.That(events.Take(events.Count - 1), Has.None.EqualTo("[DONE]"));
        var chunks = events.Take(events.Count - 1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.That(chunks, Has.Count.GreaterThanOrEqualTo(2), "at least the text and the usage");
        string streamed = "";
        string? finish = null;
        for (int i = 0; i < chunks.Count; i++)
        {
            JsonElement c = chunks[i];
            Assert.That(c.GetProperty("object").GetString(), Is.EqualTo(chat ? "chat.completion.chunk" : "text_completion"));
            Assert.That(c.GetProperty("id").GetString(), Is.EqualTo(chunks[0].GetProperty("id").GetString()), "one id for the stream");
            Assert.That(c.GetProperty("model").GetString(), Is.EqualTo("tiny"));
            if (i == chunks.Count - 1)
            {
                Assert.That(finish, Is.Not.Null, "the text chunks end with a finish reason");
                Assert.That(c.GetProperty("choices").GetArrayLength(), Is.EqualTo(0), "the usage chunk");
                JsonElement usage = c.GetProperty("usage");
                Assert.That(usage.GetProperty("completion_tokens").GetInt32(), Is.EqualTo(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32()));
                Assert.That(usage.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(whole.GetProperty("usage").GetProperty("prompt_tokens").GetInt32()));
                foreach (string key in new[] { "nfe", "remasks", "remasks_changed", "positions_remasked_twice" })
                    Assert.That(usage.GetProperty(key).GetInt32(), Is.EqualTo(whole.GetProperty("usage").GetProperty(key).GetInt32()), key);
                if (strategy == "saber")
                    Assert.That(usage.GetProperty("remasks").GetInt32(), Is.GreaterThan(0), "test set-up: Saber re-masks on this prompt");
                continue;
            }
            Assert.That(finish, Is.Null, "nothing but the usage chunk after the finish reason");
            JsonElement choice = c.GetProperty("choices").EnumerateArray().Single();
            if (chat)
            {
                JsonElement delta = choice.GetProperty("delta");
                if (i == 0) Assert.That(delta.GetProperty("role").GetString(), Is.EqualTo("assistant"));
                if (delta.TryGetProperty("content", out JsonElement content)) streamed += content.GetString();
            }
            else
            {
                streamed += choice.GetProperty("text").GetString();
            }
            if (choice.GetProperty("finish_reason").ValueKind != JsonValueKind.Null)
                finish = choice.GetProperty("finish_reason").GetString();
            Assert.That(expected, Does.StartWith(streamed));
        }
        Assert.That(streamed, Is.EqualTo(expected));
        Assert.That(finish, Is.EqualTo(wholeChoice.GetProperty("finish_reason").GetString()));
    }

    [Test]
    public async Task ModelsListsTheServedModelsByIdOnly()
    {
        HttpResponseMessage response = await server.Client.GetAsync("/v1/models");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        JsonElement body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.That(body.GetProperty("object").GetString(), Is.EqualTo("list"));
        JsonElement model = body.GetProperty("data").EnumerateArray().Single();
        Assert.That(model.GetProperty("id").GetString(), Is.EqualTo("tiny"));
        Assert.That(model.GetProperty("object").GetString(), Is.EqualTo("model"));
        Assert.That(model.GetProperty("owned_by").GetString(), Is.EqualTo("saber"));
        Assert.That(model.ToString(), Does.Not.Contain(TestSaberServer.TinyDirectory), "no paths");

        response = await server.Client.GetAsync("/v1/models/tiny");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        response = await server.Client.GetAsync("/v1/models/other");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task HealthAndReadiness()
    {
        HttpResponseMessage health = await server.Client.GetAsync("/healthz");
        Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        HttpResponseMessage ready = await server.Client.GetAsync("/readyz");
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        JsonElement body = JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement;
        Assert.That(body.GetProperty("status").GetString(), Is.EqualTo("ready"));
        Assert.That(body.GetProperty("models").EnumerateArray().Select(m => m.GetString()), Is.EqualTo(new[] { "tiny" }));
    }
}
