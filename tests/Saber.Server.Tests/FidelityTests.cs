using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>
/// OpenAI's API as clients expect it: what the server cannot honour is refused by name rather than ignored; 405 with
/// <c>Allow</c> for a known path and the wrong method; every 400 carries a code; an output too long for the model says
/// how much fits.
/// </summary>
public class FidelityTests
{
    private TestSaberServer server = null!;

    [OneTimeSetUp]
    public async Task Start() => server = await TestSaberServer.StartAsync();

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    private static string Chat(string extra) => $$"""{"model": "tiny", "messages": [{"role": "user", "content": "x = 1"}], "max_tokens": 4{{extra}}}""";

    private static string Completion(string extra) => $$"""{"model": "tiny", "prompt": "x = 1", "max_tokens": 4{{extra}}}""";

    private async Task<JsonElement> ErrorAsync(string path, string body, HttpStatusCode status = HttpStatusCode.BadRequest)
    {
        HttpResponseMessage response = await server.PostAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(status), text);
        return JsonDocument.Parse(text).RootElement.GetProperty("error");
    }

    [TestCase(", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", "tools")]
    [TestCase(", \"functions\": [{\"name\": \"f\"}]", "functions")]
    [TestCase(", \"tool_choice\": \"auto\"", "tool_choice")]
    [TestCase(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}", "tool_choice")]
    [TestCase(", \"function_call\": \"auto\"", "function_call")]
    [TestCase(", \"response_format\": {\"type\": \"json_object\"}", "response_format")]
    [TestCase(", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"s\", \"schema\": {}}}", "response_format")]
    [TestCase(", \"logprobs\": true", "logprobs")]
    [TestCase(", \"top_logprobs\": 3", "top_logprobs")]
    [TestCase(", \"n\": 2", "n")]
    [TestCase(", \"n\": 1000000000", "n")]
    public async Task WhatChatCannotHonourIs400NamingTheField(string extra, string param)
    {
        JsonElement error = await ErrorAsync("/v1/chat/completions", Chat(extra));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("unsupported_parameter"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain(param));
    }

    [TestCase(", \"logprobs\": 2", "logprobs")]
    [TestCase(", \"echo\": true", "echo")]
    [TestCase(", \"best_of\": 3", "best_of")]
    [TestCase(", \"suffix\": \"}\"", "suffix")]
    [TestCase(", \"n\": 4", "n")]
    public async Task WhatCompletionsCannotHonourIs400NamingTheField(string extra, string param)
    {
        foreach (string path in new[] { "/v1/completions", "/v1/canvas" })
        {
            JsonElement error = await ErrorAsync(path, Completion(extra));
            Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(param), path);
            Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("unsupported_parameter"), path);
        }
    }

    [TestCase(", \"tool_choice\": \"none\", \"tools\": []")]
    [TestCase(", \"response_format\": {\"type\": \"text\"}")]
    [TestCase(", \"logprobs\": false, \"top_logprobs\": 0")]
    [TestCase(", \"n\": 1")]
    [TestCase(", \"min_tokens_per_step\": 3")]
    [TestCase(", \"tools\": null, \"functions\": null, \"response_format\": null, \"n\": null")]
    public async Task TheDefaultsOfThoseFieldsAreServed(string extra)
    {
        HttpResponseMessage response = await server.PostAsync("/v1/chat/completions", Chat(extra));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task SabersMinimumTokensPerStepIsItsOwnField()
    {
        // OpenAI's n counts choices; Saber's n (the fewest tokens a step commits) is min_tokens_per_step in a body.
        JsonElement error = await ErrorAsync("/v1/completions", Completion(", \"min_tokens_per_step\": 0"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("min_tokens_per_step"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("min_tokens_per_step").And.Not.Contain("'n'"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("invalid_value"));
        error = await ErrorAsync("/v1/completions", Completion(", \"strategy\": \"low-confidence\", \"min_tokens_per_step\": 2"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("min_tokens_per_step"));
    }

    [TestCase("GET", "/v1/chat/completions", "POST")]
    [TestCase("PUT", "/v1/completions", "POST")]
    [TestCase("GET", "/v1/canvas", "POST")]
    [TestCase("POST", "/v1/models", "GET")]
    [TestCase("DELETE", "/v1/models/tiny", "GET")]
    [TestCase("POST", "/healthz", "GET, HEAD")]
    [TestCase("POST", "/readyz", "GET, HEAD")]
    public async Task AWrongMethodIs405WithAllow(string method, string path, string allow)
    {
        HttpResponseMessage response = await server.Client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed), text);
        Assert.That(response.Content.Headers.Allow, Is.EquivalentTo(allow.Split(", ")));
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("method_not_allowed"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain(method).And.Contain(path).And.Contain(allow));
    }

    [Test]
    public async Task AnUnknownPathIsStill404()
    {
        HttpResponseMessage response = await server.Client.PostAsync("/v1/embeddings", new StringContent("{}"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task HeadOnTheProbesIs200WithoutABody()
    {
        await using LoopbackSaberServer loopback = await LoopbackSaberServer.StartAsync();
        foreach (string path in new[] { "/healthz", "/readyz" })
        {
            HttpResponseMessage response = await loopback.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, path));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), path);
            Assert.That(await response.Content.ReadAsByteArrayAsync(), Is.Empty, path);
        }
    }

    [Test]
    public async Task TheDefaultMaxTokensOverTheModelsPositionsSaysHowManyFit()
    {
        // models/tiny has 512 positions; Server:MaxTokens defaults to 512, which with the default block length of 32 and
        // any prompt cannot fit.
        JsonElement error = await ErrorAsync("/v1/completions", """{"model": "tiny", "prompt": "import os\n", "max_tokens": 512}""");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("context_length_exceeded"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("max_tokens"));
        string message = error.GetProperty("message").GetString()!;
        Match m = Regex.Match(message, @"^max_tokens 512 with a (\d+)-token prompt exceeds the model's 512 positions; at most (\d+) fit \(block length 32\)");
        Assert.That(m.Success, Is.True, message);
        int prompt = int.Parse(m.Groups[1].Value), fit = int.Parse(m.Groups[2].Value);
        Assert.That(fit, Is.EqualTo((512 - prompt) / 32 * 32));

        // The maximum it names fits, and one more does not.
        error = await ErrorAsync("/v1/completions", $$"""{"model": "tiny", "prompt": "import os\n", "max_tokens": {{fit + 1}}}""");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("context_length_exceeded"));
        HttpResponseMessage ok = await server.PostAsync("/v1/completions",
            $$"""{"model": "tiny", "prompt": "import os\n", "max_tokens": {{fit}}, "strategy": "threshold", "threshold": 0.01}""");
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());

        // With an explicit block length the arithmetic follows it.
        error = await ErrorAsync("/v1/completions", """{"model": "tiny", "prompt": "import os\n", "max_tokens": 512, "block_length": 64}""");
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("(block length 64)"));
    }

    [TestCase(""", "temperature": -1""", "temperature", "invalid_value")]
    [TestCase(""", "temperature": "hot" """, "temperature", "invalid_type")]
    [TestCase(""", "seed": 1.5""", "seed", "invalid_type")]
    [TestCase(""", "max_tokens": 0""", "max_tokens", "invalid_value")]
    [TestCase(""", "stream": "yes" """, "stream", "invalid_type")]
    [TestCase(""", "stream_options": 1""", "stream_options", "invalid_type")]
    [TestCase(""", "strategy": "greedy" """, "strategy", "invalid_value")]
    public async Task Every400HasACode(string extra, string param, string code)
    {
        JsonElement error = await ErrorAsync("/v1/completions", """{"model": "tiny", "prompt": "x" """ + extra + "}");
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo(code));
    }

    [TestCase("/v1/completions", """{"prompt": "x"}""", "model", "missing_required_parameter")]
    [TestCase("/v1/completions", """{"model": "tiny"}""", "prompt", "missing_required_parameter")]
    [TestCase("/v1/completions", """{"model": "tiny", "prompt": 3}""", "prompt", "invalid_type")]
    [TestCase("/v1/completions", """[1, 2]""", null, "invalid_type")]
    [TestCase("/v1/chat/completions", """{"model": 7, "messages": []}""", "model", "invalid_type")]
    [TestCase("/v1/chat/completions", """{"model": "tiny"}""", "messages", "missing_required_parameter")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": []}""", "messages", "invalid_value")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [3]}""", "messages[0]", "invalid_type")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"content": "x"}]}""", "messages[0].role", "missing_required_parameter")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "tool", "content": "x"}]}""", "messages[0].role", "invalid_value")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": 5}]}""", "messages[0].content", "invalid_type")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}""", "messages[0].content", "invalid_value")]
    public async Task EveryMalformedBodyHasACode(string path, string body, string? param, string code)
    {
        JsonElement error = await ErrorAsync(path, body);
        Assert.That(error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo(code));
    }
}
