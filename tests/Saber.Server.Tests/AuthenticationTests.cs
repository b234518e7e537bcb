using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;
using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>
/// API keys (<c>Server:ApiKeys</c>, <c>Server:ApiKeysFile</c>): <c>Authorization: Bearer KEY</c> on every endpoint but
/// the health probes and the page, a 401 <c>invalid_api_key</c> otherwise.
/// </summary>
public class AuthenticationTests
{
    private const string Key = "sk-test-0123456789";
    private const string ShortChat = """{"model": "tiny", "messages": [{"role": "user", "content": "x = 1"}], "max_tokens": 4}""";

    private static HttpRequestMessage Request(HttpMethod method, string path, string? key, string? body = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        return request;
    }

    private static async Task AssertUnauthorizedAsync(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), text);
        Assert.That(response.Headers.WwwAuthenticate.ToString(), Is.EqualTo("Bearer"));
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("invalid_api_key"));
        Assert.That(text, Does.Not.Contain(Key), "never echoes a key");
    }

    [Test]
    public async Task KeysFromConfigurationGuardEveryEndpointButTheProbesAndThePage()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:ApiKeys:0", Key), ("Server:ApiKeys:1", "sk-other"));
        foreach (var (method, path, body) in new[]
        {
            (HttpMethod.Post, "/v1/chat/completions", ShortChat), (HttpMethod.Post, "/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4}"""),
            (HttpMethod.Post, "/v1/canvas", """{"model": "tiny", "prompt": "x", "max_tokens": 4}"""),
            (HttpMethod.Get, "/v1/models", null), (HttpMethod.Get, "/v1/models/tiny", null), (HttpMethod.Get, "/metrics", null),
            (HttpMethod.Get, "/v1/no-such-endpoint", null),
        })
        {
            await AssertUnauthorizedAsync(await server.Client.SendAsync(Request(method, path, key: null, body)));
            await AssertUnauthorizedAsync(await server.Client.SendAsync(Request(method, path, key: "sk-wrong", body)));
            await AssertUnauthorizedAsync(await server.Client.SendAsync(Request(method, path, key: Key + "x", body)));
            await AssertUnauthorizedAsync(await server.Client.SendAsync(Request(method, path, key: Key[..^1], body)));
            HttpResponseMessage ok = await server.Client.SendAsync(Request(method, path, Key, body));
            Assert.That(ok.StatusCode, Is.EqualTo(path.Contains("no-such", StringComparison.Ordinal) ? HttpStatusCode.NotFound : HttpStatusCode.OK),
                $"{method} {path}: {await ok.Content.ReadAsStringAsync()}");
        }
        Assert.That((await server.Client.SendAsync(Request(HttpMethod.Get, "/v1/models", "sk-other"))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "either key");

        // Other schemes, or none, are no key.
        var basic = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        basic.Headers.TryAddWithoutValidation("Authorization", "Basic " + Convert.ToBase64String(Encoding.ASCII.GetBytes("u:" + Key)));
        await AssertUnauthorizedAsync(await server.Client.SendAsync(basic));
        var bare = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        bare.Headers.TryAddWithoutValidation("Authorization", Key);
        await AssertUnauthorizedAsync(await server.Client.SendAsync(bare));
        var lower = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        lower.Headers.TryAddWithoutValidation("Authorization", "bearer " + Key);
        Assert.That((await server.Client.SendAsync(lower)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the scheme is case-insensitive");

        // Health probes and the (static) page need no key.
        foreach (string path in new[] { "/healthz", "/readyz", "/" })
            Assert.That((await server.Client.GetAsync(path)).StatusCode, Is.EqualTo(HttpStatusCode.OK), path);
    }

    [Test]
    public async Task KeysFromAFileSkipBlankLinesAndComments()
    {
        string file = Path.Combine(Path.GetTempPath(), $"saber-keys-{Guid.NewGuid():N}.txt");
        await File.WriteAllTextAsync(file, $"# the team's keys\n\n  {Key}  \nsk-second\r\n# sk-commented-out\n");
        try
        {
            await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:ApiKeysFile", file), ("Server:ApiKeys:0", "sk-from-config"));
            ApiKeyAuthentication keys = server.App.Services.GetRequiredService<ApiKeyAuthentication>();
            Assert.That(keys.KeyCount, Is.EqualTo(3), "two from the file, one from the configuration");
            foreach (string key in new[] { Key, "sk-second", "sk-from-config" })
            {
                HttpResponseMessage response = await server.Client.SendAsync(Request(HttpMethod.Post, "/v1/chat/completions", key, ShortChat));
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), key);
            }
            foreach (string notAKey in new[] { "# sk-commented-out", "sk-commented-out", "# the team's keys", "" })
                await AssertUnauthorizedAsync(await server.Client.SendAsync(Request(HttpMethod.Get, "/v1/models", notAKey)));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Test]
    public void AMissingOrEmptyKeysFileFailsTheStart()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"saber-no-such-keys-{Guid.NewGuid():N}.txt");
        var e = Assert.CatchAsync<Exception>(async () => { await using TestSaberServer _ = await TestSaberServer.StartAsync(("Server:ApiKeysFile", missing)); });
        Assert.That(e!.Message, Does.Contain("Server:ApiKeysFile").And.Contain(missing));

        string empty = Path.Combine(Path.GetTempPath(), $"saber-empty-keys-{Guid.NewGuid():N}.txt");
        File.WriteAllText(empty, "# nothing yet\n\n");
        try
        {
            e = Assert.CatchAsync<Exception>(async () => { await using TestSaberServer _ = await TestSaberServer.StartAsync(("Server:ApiKeysFile", empty)); });
            Assert.That(e!.Message, Does.Contain("Server:ApiKeysFile").And.Contain("no key"));
        }
        finally
        {
            File.Delete(empty);
        }

        e = Assert.CatchAsync<Exception>(async () => { await using TestSaberServer _ = await TestSaberServer.StartAsync(("Server:ApiKeys:0", " ")); });
        Assert.That(e!.Message, Does.Contain("Server:ApiKeys"));
    }

    [Test]
    public void KeysAreComparedAsFixedLengthHashes()
    {
        // Every key, whatever its length, becomes 32 bytes (SHA-256) before the constant-time comparison, so neither a
        // key's length nor the length of a matching prefix shows in the time a refusal takes.
        foreach (string key in new[] { "", "a", Key, new string('k', 10_000) })
            Assert.That(ApiKeyAuthentication.Fingerprint(key), Has.Length.EqualTo(32));
        Assert.That(ApiKeyAuthentication.Fingerprint(Key), Is.EqualTo(ApiKeyAuthentication.Fingerprint(Key)));
        Assert.That(ApiKeyAuthentication.Fingerprint(Key), Is.Not.EqualTo(ApiKeyAuthentication.Fingerprint(Key + "x")));

        var keys = new ApiKeyAuthentication(Microsoft.Extensions.Options.Options.Create(new SaberServerOptions { ApiKeys = [Key, "sk-b"] }));
        Assert.That(keys.Enabled, Is.True);
        Assert.That(keys.IsValid(Key), Is.True);
        Assert.That(keys.IsValid("sk-b"), Is.True);
        Assert.That(keys.IsValid(Key[..^1]), Is.False);
        Assert.That(keys.IsValid(Key + "0"), Is.False);
        Assert.That(keys.IsValid(""), Is.False);
        Assert.That(keys.IsValid(null), Is.False);
        Assert.That(new ApiKeyAuthentication(Microsoft.Extensions.Options.Options.Create(new SaberServerOptions())).Enabled, Is.False);
    }

    [Test]
    public async Task TheOfficialClientWithTheKeyIsServedAndAWrongKeyIs401()
    {
        await using LoopbackSaberServer server = await LoopbackSaberServer.StartAsync(("Server:ApiKeys:0", Key));
        var options = new OpenAIClientOptions
        {
            Endpoint = new Uri(server.Address, "/v1/"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(60),
        };
        ChatCompletion completion = (await new ChatClient("tiny", new ApiKeyCredential(Key), options)
            .CompleteChatAsync([new UserChatMessage("def add(a, b):")], new ChatCompletionOptions { MaxOutputTokenCount = 8 })).Value;
        Assert.That(completion.Model, Is.EqualTo("tiny"));

        var wrong = new ChatClient("tiny", new ApiKeyCredential("sk-wrong"), options);
        var e = Assert.ThrowsAsync<ClientResultException>(async () => await wrong.CompleteChatAsync([new UserChatMessage("x")]));
        Assert.That(e!.Status, Is.EqualTo(401));
        Assert.That(e.Message, Does.Contain("invalid_api_key"));
    }
}
