using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Saber.Cli;
using Saber.Server;

namespace Saber.Tests.Cli;

/// <summary><c>saber serve</c>'s help, its start-up failures (one line, exit 1) and its stop on SIGTERM with decodes in flight (a real process).</summary>
public class ServeLifecycleTests
{
    /// <summary>Runs the command with the process's console captured too: the host's console logger writes there, not to the given writers.</summary>
    private static async Task<(int Code, string Out, string Err, string Console)> RunCapturingConsoleAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var console = new StringWriter();
        TextWriter consoleOut = Console.Out, consoleError = Console.Error;
        Console.SetOut(console);
        Console.SetError(console);
        try
        {
            int code = await Program.RunAsync(args, stdout, stderr);
            return (code, stdout.ToString(), stderr.ToString(), console.ToString());
        }
        finally
        {
            Console.SetOut(consoleOut);
            Console.SetError(consoleError);
        }
    }

    [Test]
    public async Task HelpListsEveryEndpointAndEveryServerSetting()
    {
        var stdout = new StringWriter();
        Assert.That(await Program.RunAsync(["serve", "--help"], stdout, new StringWriter()), Is.EqualTo(0));
        string help = Regex.Replace(stdout.ToString(), @"[ \n]+", " ");
        foreach (string endpoint in new[]
                 {
                     "POST /v1/chat/completions", "POST /v1/completions", "POST /v1/canvas", "GET / ", "GET /v1/models ", "GET /v1/models/{id}",
                     "GET /healthz", "GET /readyz", "GET /metrics",
                 })
            Assert.That(help, Does.Contain(endpoint), "the help lists the endpoint");
        // Every setting of section Server, read from the type so that a new one cannot be left out.
        string[] settings = typeof(SaberServerOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.SetMethod!.IsPublic).Select(p => p.Name).ToArray();
        Assert.That(settings, Does.Contain(nameof(SaberServerOptions.MaxForwardPassesPerToken)));
        foreach (string setting in settings)
            Assert.That(Regex.IsMatch(help, $@"\b{setting}\b"), $"the help names the setting Server:{setting}");
        Assert.That(help, Does.Contain("SIGTERM").And.Contain("2 s"));
    }

    [Test]
    public async Task AMissingModelDirectoryIsOneLineOnStderr()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-such-saber-model-" + Guid.NewGuid().ToString("N"));
        var (code, output, err, console) = await RunCapturingConsoleAsync("serve", "--urls", "http://127.0.0.1:0", "--model", "x=" + missing);
        Assert.That(code, Is.EqualTo(1), err);
        Assert.That(err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), err);
        Assert.That(err, Does.StartWith("saber serve: ").And.Contain(missing));
        Assert.That(output, Is.Empty);
        Assert.That(console, Is.Empty, "no log lines (stack traces) besides the one-line reason");
    }

    [Test]
    public async Task AnAddressInUseIsOneLineOnStderr()
    {
        using var occupied = new TcpListener(IPAddress.Loopback, 0);
        occupied.Start();
        string address = $"http://127.0.0.1:{((IPEndPoint)occupied.LocalEndpoint).Port}";
        var (code, output, err, console) = await RunCapturingConsoleAsync("serve", "--urls", address, "--model", "tiny=" + ModelArguments.ShippedModel());
        Assert.That(code, Is.EqualTo(1), err);
        Assert.That(err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), err);
        Assert.That(err, Does.StartWith("saber serve: ").And.Contain(address).And.Contain("in use"));
        Assert.That(output, Is.Empty);
        Assert.That(console, Is.Empty, "no log lines (stack traces) besides the one-line reason");
    }

    /// <summary>The built CLI beside the tests (a referenced executable project's saber.dll and runtimeconfig land in this output).</summary>
    private static string CliAssembly()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "saber.dll");
        Assert.That(File.Exists(dll) && File.Exists(Path.Combine(AppContext.BaseDirectory, "saber.runtimeconfig.json")), $"no built CLI at {dll}");
        return dll;
    }

    [Test]
    public async Task SigtermAnswersTheDecodesInFlightAndExitsWithinTheBound()
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("SIGTERM is POSIX's.");
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { CliAssembly(), "serve", "--urls", "http://127.0.0.1:0", "--model", "tiny=" + ModelArguments.ShippedModel() },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["Server__IntraOpThreads"] = "1";
        using var process = Process.Start(start)!;
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        try
        {
            using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            string? address = null;
            while (address is null)
            {
                string? line = await process.StandardOutput.ReadLineAsync(startup.Token);
                Assert.That(line, Is.Not.Null, $"the server exited before listening: {stderr}");
                Match m = Regex.Match(line!, @"listening on (http://127\.0\.0\.1:\d+)");
                if (m.Success) address = m.Groups[1].Value;
            }
            Task<string> restOfStdout = process.StandardOutput.ReadToEndAsync();

            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
            // Two long decodes (low-confidence, 256 steps, one token each): tens of seconds unless stopped.
            const string Long = """{"model": "tiny", "prompt": "import os\n", "max_tokens": 256, "strategy": "low-confidence", "steps": 256""";
            Task<HttpResponseMessage> plain = http.PostAsync("/v1/completions", new StringContent(Long + "}", Encoding.UTF8, "application/json"));
            using HttpResponseMessage streamed = await http.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Long + ", \"stream\": true}", Encoding.UTF8, "application/json") },
                HttpCompletionOption.ResponseHeadersRead);
            Assert.That(streamed.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            using var events = new StreamReader(await streamed.Content.ReadAsStreamAsync());
            Assert.That(await events.ReadLineAsync(), Does.StartWith("data: {"), "the stream decodes");
            Assert.That(plain.IsCompleted, Is.False, "the non-streamed decode is still running");

            var clock = Stopwatch.StartNew();
            using (Process kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                await kill.WaitForExitAsync();
            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(exit.Token);
            TimeSpan exited = clock.Elapsed;

            using HttpResponseMessage refused = await plain;
            string body = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
            Assert.That(refused.Headers.RetryAfter, Is.Not.Null);
            Assert.That(JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("shutting_down"));

            string rest = await events.ReadToEndAsync();
            string last = rest.Trim('\n').Split("\n\n")[^1];   // the first event's blank line is still unread
            Assert.That(last, Does.StartWith("data: {\"error\""), rest);
            JsonElement error = JsonDocument.Parse(last["data: ".Length..]).RootElement.GetProperty("error");
            Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("shutting_down"));
            Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
            Assert.That(rest, Does.Not.Contain("[DONE]"));

            Assert.That(process.ExitCode, Is.EqualTo(0), stderr.ToString());
            Assert.That(await restOfStdout, Does.Contain("saber serve: stopped"));
            // The bound is 2 s (ServerShutdown.Timeout); the slack is for a loaded test machine.
            TestContext.Out.WriteLine($"exited {exited.TotalMilliseconds:F0} ms after SIGTERM");
            Assert.That(exited, Is.LessThan(TimeSpan.FromSeconds(5)));
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
