using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>
/// Who can reach the server: no start on a non-loopback address without API keys (unless
/// <c>Server:AllowUnauthenticatedRemote</c>); without keys, only loopback Host names (DNS rebinding); JSON bodies only (415).
/// </summary>
public class ExposureTests
{
    [TestCase("http://0.0.0.0:8080")]
    [TestCase("http://*:8080")]
    [TestCase("http://+:8080")]
    [TestCase("http://[::]:8080")]
    [TestCase("http://192.168.1.10:8080")]
    [TestCase("http://saber.example.com:8080")]
    [TestCase("http://127.0.0.1:8080;http://0.0.0.0:9090")]
    public void ANonLoopbackAddressWithoutKeysRefusesToStart(string urls)
    {
        var e = Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await using TestSaberServer _ = await TestSaberServer.StartAsync(("urls", urls));
        });
        string remote = urls.Split(';')[^1];
        Assert.That(e!.Message, Does.Contain(remote).And.Contain("Server:ApiKeys").And.Contain("Server:AllowUnauthenticatedRemote"));
        Assert.That(e.Message, Does.Not.Contain("\n"), "one line");
    }

    [TestCase("http://127.0.0.1:8080")]
    [TestCase("http://localhost:8080")]
    [TestCase("http://[::1]:8080")]
    [TestCase("http://127.0.0.2:8080;http://localhost:9090")]
    public async Task ALoopbackAddressStartsWithoutKeys(string urls)
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("urls", urls));
        Assert.That((await server.Client.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task ANonLoopbackAddressStartsWithKeysOrTheExplicitSetting()
    {
        await using (TestSaberServer _ = await TestSaberServer.StartAsync(("urls", "http://0.0.0.0:8080"), ("Server:ApiKeys:0", "sk-a")))
        {
        }
        await using (TestSaberServer _ = await TestSaberServer.StartAsync(("urls", "http://0.0.0.0:8080"), ("Server:AllowUnauthenticatedRemote", "true")))
        {
        }
    }

    [Test]
    public void TheBoundAddressesAreCheckedToo()
    {
        // Kestrel told in code to listen on every interface (the urls setting then does not apply): the start is refused
        // once the real addresses are known, and the listener closed.
        var e = Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await using LoopbackSaberServer _ = await LoopbackSaberServer.StartAsync(builder =>
                builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Any, 0)));
        });
        Assert.That(e!.Message, Does.Contain("0.0.0.0").And.Contain("Server:ApiKeys").And.Contain("Server:AllowUnauthenticatedRemote"));
    }

    private static async Task<HttpResponseMessage> GetWithHostAsync(LoopbackSaberServer server, string host, string path = "/v1/models")
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Host = host;
        return await server.Client.SendAsync(request);
    }

    [Test]
    public async Task WithoutKeysOnlyLoopbackHostNamesAreServed()
    {
        await using LoopbackSaberServer server = await LoopbackSaberServer.StartAsync();
        int port = server.Address.Port;
        foreach (string host in new[] { $"localhost:{port}", "localhost", "LOCALHOST", $"127.0.0.1:{port}", "127.9.8.7", $"[::1]:{port}", "[::1]" })
            Assert.That((await GetWithHostAsync(server, host)).StatusCode, Is.EqualTo(HttpStatusCode.OK), host);

        // A page on attacker.example that rebinds its name to 127.0.0.1 sends its own name as the Host.
        foreach (string host in new[] { $"attacker.example:{port}", "attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", "[::ffff:10.0.0.1]" })
        {
            foreach (string path in new[] { "/v1/models", "/", "/healthz" })
            {
                HttpResponseMessage response = await GetWithHostAsync(server, host, path);
                string text = await response.Content.ReadAsStringAsync();
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest), $"{host} {path}: {text}");
                JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
                Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("host_not_allowed"));
                Assert.That(error.GetProperty("message").GetString(), Does.Contain(host).And.Contain("Server:ApiKeys"));
            }
        }
        // Posting a generation from the rebound page is refused before anything runs.
        var post = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"model": "tiny", "prompt": "x", "max_tokens": 4}""", Encoding.UTF8, "application/json"),
        };
        post.Headers.Host = "attacker.example";
        Assert.That((await server.Client.SendAsync(post)).StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest));
    }

    [Test]
    public async Task WithKeysOrTheExplicitSettingAnyHostIsServed()
    {
        await using (LoopbackSaberServer server = await LoopbackSaberServer.StartAsync(("Server:ApiKeys:0", "sk-a")))
        {
            var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
            request.Headers.Host = "saber.example.com";
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-a");
            Assert.That((await server.Client.SendAsync(request)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the key is the guard");
        }
        await using (LoopbackSaberServer server = await LoopbackSaberServer.StartAsync(("Server:AllowUnauthenticatedRemote", "true")))
            Assert.That((await GetWithHostAsync(server, "saber.example.com")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    private const string ShortCompletion = """{"model": "tiny", "prompt": "x", "max_tokens": 4}""";

    [TestCase("/v1/completions", "text/plain")]
    [TestCase("/v1/chat/completions", "application/x-www-form-urlencoded")]
    [TestCase("/v1/canvas", "multipart/form-data; boundary=x")]
    [TestCase("/v1/completions", "application/json; charset=latin1")]
    [TestCase("/v1/completions", "application/jsonp")]
    [TestCase("/v1/completions", null)]
    public async Task ANonJsonBodyIs415(string path, string? contentType)
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        string body = path == "/v1/chat/completions" ? """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}""" : ShortCompletion;
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        if (contentType is not null) content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        HttpResponseMessage response = await server.Client.PostAsync(path, content);
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType), text);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("unsupported_media_type"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("application/json").And.Contain(contentType ?? "no Content-Type"));
    }

    [TestCase("application/json")]
    [TestCase("application/json; charset=utf-8")]
    [TestCase("Application/JSON; charset=UTF-8")]
    public async Task AJsonBodyIsServed(string contentType)
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync();
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(ShortCompletion));
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        HttpResponseMessage response = await server.Client.PostAsync("/v1/completions", content);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
    }
}
