using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Saber.Server;

namespace Saber.Load;

// Shared by the serve-load benchmark (src/Saber.Benchmarks) and the small load test (tests/Saber.Server.Tests links this file).

/// <summary>One generation request of a load run: a body for <see cref="Path"/>, sent streamed under load and non-streamed alone.</summary>
internal sealed record LoadRequest(int Index, string Path, bool Chat, JsonObject Body)
{
    public string Json(bool stream)
    {
        JsonObject body = (JsonObject)Body.DeepClone();
        if (stream)
        {
            body["stream"] = true;
            body["stream_options"] = new JsonObject { ["include_usage"] = true };
        }
        return body.ToJsonString();
    }
}

/// <summary>What one request's answer was.</summary>
internal enum LoadOutcome
{
    /// <summary>200, a whole stream ending <c>[DONE]</c>, equal to the request decoded alone.</summary>
    Completed,

    /// <summary>429 or 503 with a clean OpenAI error body and <c>Retry-After</c>.</summary>
    Rejected,

    /// <summary>A wrong answer: another status, an unclean error body, an error event, or a stream that differs from the request alone.</summary>
    Failed,

    /// <summary>No whole answer: the connection failed, the stream ended without <c>[DONE]</c>, or the request timed out.</summary>
    Lost,
}

/// <summary>The text, finish reason and usage of one answer (streamed: the chunks put together).</summary>
internal sealed record LoadAnswer(string Id, string Text, string? FinishReason, string Usage);

internal sealed class LoadResult
{
    public required LoadRequest Request { get; init; }
    public LoadOutcome Outcome { get; set; }
    public int Status { get; set; }
    public LoadAnswer? Answer { get; set; }
    public string? Error { get; set; }
    /// <summary>Send to the first SSE event (ms), completed requests only.</summary>
    public double FirstEventMs { get; set; } = double.NaN;
    /// <summary>Send to <c>[DONE]</c> (or to the rejection) in ms.</summary>
    public double TotalMs { get; set; }
}

internal static class ServeLoad
{
    private static readonly string[] Texts =
        ["def fibonacci(n):\n", "def is_prime(n):\n", "class Stack:\n\tdef push(self, item):\n", "def read_lines(path):\n",
         "import os\n", "def main():\n", "for i in range(10):\n", "def add(a, b):\n"];

    private static readonly string[] Strategies = ["saber", "low-confidence", "threshold"];

    /// <summary>
    /// <paramref name="count"/> distinct requests: completions and chat in turn, the three strategies in turn, greedy
    /// (every third) or sampled at 0.8 with its own seed, 8 prompts in turn, <paramref name="maxTokens"/> each, blocks of 8.
    /// </summary>
    public static List<LoadRequest> Requests(int count, int maxTokens, string model = "tiny")
    {
        var list = new List<LoadRequest>(count);
        for (int i = 0; i < count; i++)
        {
            bool chat = i % 2 == 1;
            string text = Texts[i % Texts.Length];
            var body = new JsonObject { ["model"] = model };
            if (chat) body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text });
            else body["prompt"] = text;
            body["max_tokens"] = maxTokens;
            body["strategy"] = Strategies[i % Strategies.Length];
            body["block_length"] = 8;
            if (i % 3 == 0)
            {
                body["temperature"] = 0;
            }
            else
            {
                body["temperature"] = 0.8;
                body["seed"] = 1000 + i;
            }
            list.Add(new LoadRequest(i, chat ? "/v1/chat/completions" : "/v1/completions", chat, body));
        }
        return list;
    }

    /// <summary>An HTTP client for many concurrent connections to one server.</summary>
    public static HttpClient Client(Uri address) =>
        new(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = address,
            Timeout = Timeout.InfiniteTimeSpan,
        };

    /// <summary>Starts the real server (Kestrel) on a free loopback port with these settings; the address it listens on.</summary>
    public static async Task<(WebApplication App, Uri Address)> StartServerAsync(IDictionary<string, string?> settings)
    {
        WebApplicationBuilder builder = SaberServer.CreateBuilder(["--urls", "http://127.0.0.1:0"]);
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        WebApplication app = SaberServer.Build(builder);
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new Uri(address));
    }

    /// <summary>The request sent alone, not streamed: the reference its streamed answer under load must equal.</summary>
    public static async Task<LoadAnswer> AloneAsync(HttpClient http, LoadRequest request, CancellationToken cancellationToken = default)
    {
        using HttpResponseMessage response = await http.PostAsync(request.Path,
            new StringContent(request.Json(stream: false), Encoding.UTF8, "application/json"), cancellationToken);
        string text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
            throw new InvalidOperationException($"Request {request.Index} alone: {(int)response.StatusCode} {text}");
        JsonElement root = JsonDocument.Parse(text).RootElement;
        JsonElement choice = root.GetProperty("choices")[0];
        string content = request.Chat ? choice.GetProperty("message").GetProperty("content").GetString() ?? "" : choice.GetProperty("text").GetString() ?? "";
        string id = root.GetProperty("id").GetString()!;
        return new LoadAnswer(id, content, FinishReason(choice), root.GetProperty("usage").GetRawText());
    }

    /// <summary>Sends the request streamed and reads its events; never throws (every failure is an outcome).</summary>
    public static async Task<LoadResult> StreamAsync(HttpClient http, LoadRequest request, TimeSpan timeout)
    {
        var result = new LoadResult { Request = request };
        using var cts = new CancellationTokenSource(timeout);
        long start = Stopwatch.GetTimestamp();
        try
        {
            using var message = new HttpRequestMessage(HttpMethod.Post, request.Path)
            {
                Content = new StringContent(request.Json(stream: true), Encoding.UTF8, "application/json"),
            };
            using HttpResponseMessage response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            result.Status = (int)response.StatusCode;
            if (response.StatusCode != HttpStatusCode.OK)
            {
                string body = await response.Content.ReadAsStringAsync(cts.Token);
                result.TotalMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                bool clean = CleanRejection(response, body, out string why);
                result.Outcome = clean ? LoadOutcome.Rejected : LoadOutcome.Failed;
                result.Error = clean ? null : $"{result.Status}: {why}: {body}";
                return result;
            }
            if (response.Content.Headers.ContentType?.MediaType != "text/event-stream")
                return Fail(result, $"200 with content type {response.Content.Headers.ContentType}", start);

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            var text = new StringBuilder();
            string? id = null, finish = null, usage = null;
            bool done = false;
            while (await reader.ReadLineAsync(cts.Token) is string line)
            {
                if (line.Length == 0) continue;
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    return Fail(result, $"a line that is not an event: {line}", start);
                if (double.IsNaN(result.FirstEventMs)) result.FirstEventMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                string data = line["data: ".Length..];
                if (data == "[DONE]")
                {
                    done = true;
                    break;
                }
                JsonElement chunk = JsonDocument.Parse(data).RootElement;
                if (chunk.TryGetProperty("error", out JsonElement error))
                    return Fail(result, $"an error event: {error.GetRawText()}", start);
                string chunkId = chunk.GetProperty("id").GetString()!;
                if (id is not null && chunkId != id)
                    return Fail(result, $"chunk ids differ within one stream: {id} then {chunkId}", start);
                id = chunkId;
                if (chunk.TryGetProperty("usage", out JsonElement u) && u.ValueKind == JsonValueKind.Object) usage = u.GetRawText();
                foreach (JsonElement choice in chunk.GetProperty("choices").EnumerateArray())
                {
                    if (request.Chat)
                    {
                        if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement c)) text.Append(c.GetString());
                    }
                    else
                    {
                        text.Append(choice.GetProperty("text").GetString());
                    }
                    finish = FinishReason(choice) ?? finish;
                }
            }
            result.TotalMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (!done)
            {
                result.Outcome = LoadOutcome.Lost;
                result.Error = "the stream ended without [DONE]";
                return result;
            }
            if (id is null || usage is null)
                return Fail(result, "no chunk with an id, or no usage chunk", start);
            result.Answer = new LoadAnswer(id, text.ToString(), finish, usage);
            result.Outcome = LoadOutcome.Completed;
            return result;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException)
        {
            result.TotalMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            result.Outcome = LoadOutcome.Lost;
            result.Error = e is OperationCanceledException ? $"no whole answer within {timeout.TotalSeconds:F0} s" : $"{e.GetType().Name}: {e.Message}";
            return result;
        }
        catch (Exception e)
        {
            return Fail(result, $"{e.GetType().Name}: {e.Message}", start);
        }
    }

    /// <summary>
    /// <paramref name="clients"/> clients, each sending its own <c>requests.Count / clients</c> requests one after another
    /// (client c: requests c·R .. c·R + R − 1). A rejected client waits <paramref name="backoff"/> (the server's
    /// Retry-After is 1 s) before its next request; the rejected request is not retried.
    /// </summary>
    public static async Task<LoadResult[]> RunAsync(HttpClient http, IReadOnlyList<LoadRequest> requests, int clients, TimeSpan timeout, TimeSpan backoff)
    {
        if (clients < 1 || requests.Count % clients != 0) throw new ArgumentException("The requests must divide evenly among the clients.", nameof(clients));
        int each = requests.Count / clients;
        var results = new LoadResult[requests.Count];
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            for (int k = 0; k < each; k++)
            {
                int i = c * each + k;
                results[i] = await StreamAsync(http, requests[i], timeout);
                if (results[i].Outcome == LoadOutcome.Rejected && backoff > TimeSpan.Zero)
                    await Task.Delay(backoff);
            }
        })));
        return results;
    }

    /// <summary>Compares every completed answer with its request alone (text, finish reason, usage); a difference fails it.</summary>
    public static void Verify(LoadResult[] results, IReadOnlyDictionary<int, LoadAnswer> alone)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (LoadResult r in results)
        {
            if (r.Outcome != LoadOutcome.Completed) continue;
            LoadAnswer got = r.Answer!, expected = alone[r.Request.Index];
            string? why = got.Text != expected.Text ? $"text {Quote(got.Text)}, alone {Quote(expected.Text)}"
                : got.FinishReason != expected.FinishReason ? $"finish_reason {got.FinishReason}, alone {expected.FinishReason}"
                : !SameUsage(got.Usage, expected.Usage) ? $"usage {got.Usage}, alone {expected.Usage}"
                : !ids.Add(got.Id) ? $"the id {got.Id} of another response"
                : null;
            if (why is not null)
            {
                r.Outcome = LoadOutcome.Failed;
                r.Error = $"request {r.Request.Index} differs from the request alone: {why}";
            }
        }
    }

    public static int Count(LoadResult[] results, LoadOutcome outcome) => results.Count(r => r.Outcome == outcome);

    /// <summary>The p-quantile (nearest rank) of the values, in their unit; NaN when there are none.</summary>
    public static double Percentile(IEnumerable<double> values, double p)
    {
        double[] sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    private static bool CleanRejection(HttpResponseMessage response, string body, out string why)
    {
        why = "";
        if (response.StatusCode is not (HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable))
        {
            why = "not a rejection";
            return false;
        }
        if (response.Headers.RetryAfter is null)
        {
            why = "no Retry-After";
            return false;
        }
        try
        {
            JsonElement error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            bool ok = !string.IsNullOrEmpty(error.GetProperty("message").GetString()) && !string.IsNullOrEmpty(error.GetProperty("type").GetString())
                && error.GetProperty("code").GetString() is "too_many_concurrent_requests" or "engine_full";
            if (!ok) why = "not an OpenAI error body with a known code";
            return ok;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            why = "not an OpenAI error body";
            return false;
        }
    }

    private static bool SameUsage(string a, string b)
    {
        JsonElement x = JsonDocument.Parse(a).RootElement, y = JsonDocument.Parse(b).RootElement;
        foreach (string field in new[] { "prompt_tokens", "completion_tokens", "total_tokens", "nfe" })
        {
            bool hx = x.TryGetProperty(field, out JsonElement vx), hy = y.TryGetProperty(field, out JsonElement vy);
            if (hx != hy || (hx && vx.GetInt64() != vy.GetInt64())) return false;
        }
        return true;
    }

    private static string? FinishReason(JsonElement choice) =>
        choice.TryGetProperty("finish_reason", out JsonElement f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;

    private static LoadResult Fail(LoadResult result, string error, long start)
    {
        result.TotalMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        result.Outcome = LoadOutcome.Failed;
        result.Error = error;
        return result;
    }

    private static string Quote(string s) => JsonSerializer.Serialize(s.Length > 60 ? s[..60] + "..." : s);

    internal static string F(double value, string format = "F0") => value.ToString(format, CultureInfo.InvariantCulture);
}
