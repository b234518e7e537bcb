using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Saber.Cli;

namespace Saber.Tests.Cli;

/// <summary><c>saber serve</c>: usage errors, and a real (Kestrel, loopback) server that answers and stops on cancellation.</summary>
public class ServeTests
{
    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [TestCase("--model", "tiny")]
    [TestCase("--model", "=dir")]
    [TestCase("--model", "a/b=dir")]
    [TestCase("--model")]
    [TestCase("--port", "1")]
    [TestCase("extra")]
    public async Task BadArgumentsAreUsageErrors(params string[] args)
    {
        var (code, _, err) = await Run(["serve", .. args]);
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.StartWith("saber serve: ").And.Contain("usage: saber serve"));
    }

    [Test]
    public async Task HelpPrintsTheUsage()
    {
        var (code, output, _) = await Run("serve", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Contain("--model NAME=DIR").And.Contain("/v1/chat/completions"));
    }

    [Test]
    public async Task AMissingModelDirectoryFailsTheStart()
    {
        var (code, _, err) = await Run("serve", "--urls", "http://127.0.0.1:0", "--model", "x=" + Path.Combine(Path.GetTempPath(), "no-such-saber-model"));
        Assert.That(code, Is.EqualTo(1), err);
        Assert.That(err, Does.StartWith("saber serve: "));
    }

    [Test]
    public async Task ServesOnLoopbackUntilCancelled()
    {
        var written = new StringWriter();
        TextWriter stdout = TextWriter.Synchronized(written);
        string Output() { lock (stdout) return written.ToString(); }   // the synchronized writer locks itself
        var stderr = new StringWriter();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Task<int> run = Program.RunAsync(["serve", "--urls", "http://127.0.0.1:0", "--model", "mini=" + ModelArguments.ShippedModel()], stdout, stderr, stop.Token);
        string? address = null;
        for (int i = 0; i < 2000 && address is null && !run.IsCompleted; i++)
        {
            await Task.Delay(10);
            Match m = Regex.Match(Output(), @"listening on (http://127\.0\.0\.1:\d+)");
            if (m.Success) address = m.Groups[1].Value;
        }
        Assert.That(address, Is.Not.Null, $"stdout: {Output()} stderr: {stderr}");
        Assert.That(Output(), Does.Contain("(models: mini)"));

        using var http = new HttpClient { BaseAddress = new Uri(address!) };
        Assert.That((await http.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        HttpResponseMessage response = await http.PostAsync("/v1/completions",
            new StringContent("""{"model": "mini", "prompt": "import os\n", "max_tokens": 8}""", Encoding.UTF8, "application/json"));
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        Assert.That(JsonDocument.Parse(body).RootElement.GetProperty("model").GetString(), Is.EqualTo("mini"));

        stop.Cancel();
        Assert.That(await run, Is.EqualTo(0), stderr.ToString());
        Assert.That(Output(), Does.Contain("saber serve: stopped"));
    }
}
