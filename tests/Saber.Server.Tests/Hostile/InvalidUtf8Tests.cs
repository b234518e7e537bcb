using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Saber.Server.Tests.Hostile;

/// <summary>
/// A JSON string that is not text (raw bytes that are not UTF-8, or a <c>\ud800</c> escape with no partner) in any
/// field: a 400 <c>invalid_json</c> naming the field, never a 500 with a stack trace.
/// </summary>
public class InvalidUtf8Tests
{
    private TestSaberServer server = null!;
    private CapturedLogs logs = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        logs = new CapturedLogs();
        server = await TestSaberServer.StartAsync(logs.AddTo);
        logs.Clear();
    }

    [OneTimeTearDown]
    public async Task Stop() => await server.DisposeAsync();

    /// <summary>Raw byte sequences that are not UTF-8: a stray continuation byte, 0xFF, an overlong '/', an encoded surrogate, a cut sequence.</summary>
    private static readonly byte[][] BadBytes = [[0x80], [0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82]];

    /// <summary>Escapes that decode to no text: a lone high surrogate, a lone low one, a high one before a letter.</summary>
    private static readonly string[] BadEscapes = [@"\ud800", @"\udc00", @"\ud83dA"];

    // {0}: where the bad string goes; the case's param names it.
    private static readonly (string Path, string Body, string? Param)[] Fields =
    [
        ("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "a{0}b"}], "max_tokens": 4}""", "messages[0].content"),
        ("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "text", "text": "{0}"}]}], "max_tokens": 4}""", "messages[1].content[0].text"),
        ("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "us{0}er", "content": "x"}], "max_tokens": 4}""", "messages[0].role"),
        ("/v1/chat/completions", """{"model": "ti{0}ny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}""", "model"),
        ("/v1/completions", """{"model": "tiny", "prompt": "{0}", "max_tokens": 4}""", "prompt"),
        ("/v1/completions", """{"model": "tiny", "prompt": ["{0}"], "max_tokens": 4}""", "prompt[0]"),
        ("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4, "strategy": "sa{0}ber"}""", "strategy"),
        ("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4, "variant": "{0}"}""", "variant"),
        ("/v1/canvas", """{"model": "tiny", "prompt": "x", "max_tokens": 4, "cache": {"policy": "{0}"}}""", "cache.policy"),
        ("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "user": "{0}"}""", "user"),
        // A bad property name: the param is the object holding it (none at the top level).
        ("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4, "cache": {"po{0}licy": "dual"}}""", "cache"),
        ("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4, "k{0}ey": 1}""", null),
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var (path, body, param) in Fields)
        {
            foreach (byte[] bytes in BadBytes)
                yield return new TestCaseData(path, Splice(body, bytes), param).SetName($"{param ?? "a top-level name"} with raw {Convert.ToHexString(bytes)}");
            foreach (string escape in BadEscapes)
                yield return new TestCaseData(path, Splice(body, Encoding.ASCII.GetBytes(escape)), param).SetName($"{param ?? "a top-level name"} with {escape.Replace('\\', '/')}");
        }
    }

    private static byte[] Splice(string template, byte[] bad)
    {
        int at = template.IndexOf("{0}", StringComparison.Ordinal);
        return [.. Encoding.UTF8.GetBytes(template[..at]), .. bad, .. Encoding.UTF8.GetBytes(template[(at + 3)..])];
    }

    [TestCaseSource(nameof(Cases))]
    public async Task IsA400NamingTheField(string path, byte[] body, string? param)
    {
        logs.Clear();
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        HttpResponseMessage response = await server.Client.PostAsync(path, content);
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        JsonElement error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("invalid_json"));
        Assert.That(error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString(), Is.EqualTo(param));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain(param ?? "top level").And.Contain("UTF-8"));
        logs.AssertQuietAboutClientFaults(saberLines: 0);
    }

    [Test]
    public async Task ValidTextOutsideTheBasicPlaneStillPasses()
    {
        // A surrogate pair, escaped and raw: text, not an error.
        foreach (string prompt in new[] { @"\ud83d\ude00 hi", "\U0001F600 hi" })
        {
            HttpResponseMessage response = await server.PostAsync("/v1/completions", $$"""{"model": "tiny", "prompt": "{{prompt}}", "max_tokens": 4}""");
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        }
    }
}
