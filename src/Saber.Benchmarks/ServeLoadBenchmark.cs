using System.Diagnostics;
using System.Globalization;
using System.Text;
using Saber.Load;

namespace Saber.Benchmarks;

/// <summary>
/// The HTTP server under load: the real server (Kestrel on a free loopback port, models/tiny) driven by many concurrent
/// streaming clients. Every request's streamed answer must equal the same request sent alone (non-streamed, one at a
/// time, before the load); every other answer must be a clean 429/503. Reports requests/s and p50/p99 time to first
/// event and to completion, once with <c>Server:MaxConcurrentRequests</c> above the load and once below it.
/// </summary>
/// <remarks>
/// dotnet run -c Release --project src/Saber.Benchmarks -- serve-load [--clients 64] [--requests 10] [--max-tokens 32]
///   [--limit N (second run's MaxConcurrentRequests; default clients/4)] [--timeout 120] [--model DIR] [--out FILE]
/// </remarks>
internal static class ServeLoadBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        int clients = 64, perClient = 10, maxTokens = 32, timeoutSeconds = 120;
        int? limit = null;
        string model = Path.Combine(AppContext.BaseDirectory, "models", "tiny");
        if (!Directory.Exists(model)) model = Path.Combine("models", "tiny");
        string output = Path.Combine("bench", "results", $"serve-load-{DateTime.UtcNow:yyyy-MM-dd}.md");
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            int Int() => int.Parse(value, CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--clients": clients = Int(); i++; break;
                case "--requests": perClient = Int(); i++; break;
                case "--max-tokens": maxTokens = Int(); i++; break;
                case "--limit": limit = Int(); i++; break;
                case "--timeout": timeoutSeconds = Int(); i++; break;
                case "--model": model = value; i++; break;
                case "--out": output = value; i++; break;
                default: throw new ArgumentException($"Unknown option {args[i]}; use --clients N, --requests N, --max-tokens N, --limit N, --timeout S, --model DIR, --out FILE.");
            }
        }
        if (clients < 1 || perClient < 1 || maxTokens < 1 || timeoutSeconds < 1 || limit is < 1)
            throw new ArgumentException("--clients, --requests, --max-tokens, --timeout and --limit must be >= 1.");
        int low = limit ?? Math.Max(1, clients / 4);
        // Above the load: a handler gives its slot back just after flushing [DONE], so a client's next request may
        // briefly overlap its previous slot; twice the clients can never be reached.
        int high = clients * 2;
        var timeout = TimeSpan.FromSeconds(timeoutSeconds);
        List<LoadRequest> requests = ServeLoad.Requests(clients * perClient, maxTokens);

        var report = new StringBuilder();
        void Line(string text = "")
        {
            Console.WriteLine(text);
            report.AppendLine(text);
        }
        Line($"# Server load test — {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Line();
        Line($"- command: `{string.Join(' ', new[] { "dotnet run -c Release --project src/Saber.Benchmarks -- serve-load" }.Concat(args))}`");
        Line($"- machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        Line($"- other load on the machine: 1-minute load average {LoadAverage()} at the start (Linux /proc/loadavg; 2 would fill 2 cores)");
        Line($"- server: `SaberServer` on Kestrel, http://127.0.0.1 (a free port), model {model} as \"tiny\", engine defaults (Saber:Capacity 256, MaxBatchSize 32), ONNX Runtime's thread choice; client and server in one process");
        Line($"- load: {clients} clients x {perClient} streaming requests each ({requests.Count} distinct requests: /v1/completions and /v1/chat/completions in turn, " +
             $"saber / low-confidence / threshold in turn, every third greedy, the rest temperature 0.8 with their own seed, 8 prompts, max_tokens {maxTokens}, block_length 8, include_usage); " +
             "each client sends its next request when the previous one ends; a rejected client waits 1 s (the Retry-After) and goes on with its next request (no retry)");
        Line("- check: every streamed answer (concatenated text, finish_reason, usage incl. nfe) must equal the same request sent alone, non-streamed, one at a time before the load; " +
             "every other answer must be a 429/503 with an OpenAI error body and Retry-After");
        Line();

        var settings = new Dictionary<string, string?> { ["Server:Models:tiny"] = model, ["Server:MaxConcurrentRequests"] = high.ToString(CultureInfo.InvariantCulture) };
        Dictionary<int, LoadAnswer> alone;
        double aloneRate, aloneP50, aloneP99;
        var rows = new List<string>();
        bool ok = true;
        var failures = new List<string>();

        var (app, address) = await ServeLoad.StartServerAsync(settings);
        try
        {
            using HttpClient http = ServeLoad.Client(address);
            // Warm-up, then the references: each request alone, one at a time.
            await ServeLoad.AloneAsync(http, requests[0]);
            alone = new Dictionary<int, LoadAnswer>(requests.Count);
            var latencies = new double[requests.Count];
            var clock = Stopwatch.StartNew();
            foreach (LoadRequest r in requests)
            {
                long start = Stopwatch.GetTimestamp();
                alone[r.Index] = await ServeLoad.AloneAsync(http, r);
                latencies[r.Index] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
            aloneRate = requests.Count / clock.Elapsed.TotalSeconds;
            aloneP50 = ServeLoad.Percentile(latencies, 0.50);
            aloneP99 = ServeLoad.Percentile(latencies, 0.99);
            Console.WriteLine($"(references: {requests.Count} requests alone in {clock.Elapsed.TotalSeconds:F1} s)");

            ok &= await LoadRunAsync(http, "above the load", high, expectRejections: false);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        settings["Server:MaxConcurrentRequests"] = low.ToString(CultureInfo.InvariantCulture);
        (app, address) = await ServeLoad.StartServerAsync(settings);
        try
        {
            using HttpClient http = ServeLoad.Client(address);
            await ServeLoad.AloneAsync(http, requests[0]);
            ok &= await LoadRunAsync(http, "below the load", low, expectRejections: true);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        Line("| run | Server:MaxConcurrentRequests | requests | completed (= alone) | rejected (429/503) | failed | lost | wall (s) | completed/s | TTFE p50 (ms) | TTFE p99 (ms) | completion p50 (ms) | completion p99 (ms) | rejection p50 (ms) |");
        Line("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (string row in rows) Line(row);
        Line(string.Create(CultureInfo.InvariantCulture,
            $"| one at a time (the references: non-streamed, alone) | - | {requests.Count} | {requests.Count} | 0 | 0 | 0 | {requests.Count / aloneRate:F1} | {aloneRate:F1} | - | - | {aloneP50:F0} | {aloneP99:F0} | - |"));
        Line();
        Line("TTFE: send to the first SSE event (the first text chunk; the headers wait for it). Completion: send to `data: [DONE]`. " +
             "Percentiles over the completed requests (nearest rank); rejection: send to the whole 429/503 body. completed/s: completed requests over the run's wall time.");
        if (failures.Count > 0)
        {
            Line();
            Line("Failures (first 10):");
            foreach (string f in failures.Take(10)) Line($"- {f}");
        }
        Line();
        Line("Caveats: one run of each configuration on a shared 2-core VM (client and server compete for the same cores); absolute figures vary by tens of " +
             "percent between runs, compare only within one run. The load is the tiny model (ONNX Runtime, CPU); streaming chunks arrive per finished block, " +
             "so TTFE is roughly one block's decode under the batch. The run below the load measures the limit's behaviour (clean, cheap rejections, exact " +
             "answers for the rest), not throughput.");
        Line($"Load average at the end: {LoadAverage()}.");
        Line();
        Line(ok ? "Result: PASS (no request failed or was lost; every completed answer equals the request alone)." : "Result: FAIL (see above).");

        string? directory = Path.GetDirectoryName(output);
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        await File.WriteAllTextAsync(output, report.ToString());
        Console.WriteLine($"(written to {output})");
        return ok ? 0 : 1;

        async Task<bool> LoadRunAsync(HttpClient http, string name, int maxConcurrent, bool expectRejections)
        {
            var clock = Stopwatch.StartNew();
            LoadResult[] results = await ServeLoad.RunAsync(http, requests, clients, timeout, TimeSpan.FromSeconds(1));
            double wall = clock.Elapsed.TotalSeconds;
            ServeLoad.Verify(results, alone);
            LoadResult[] completed = results.Where(r => r.Outcome == LoadOutcome.Completed).ToArray();
            int rejected = ServeLoad.Count(results, LoadOutcome.Rejected), failed = ServeLoad.Count(results, LoadOutcome.Failed), lost = ServeLoad.Count(results, LoadOutcome.Lost);
            int by429 = results.Count(r => r.Outcome == LoadOutcome.Rejected && r.Status == 429), by503 = rejected - by429;
            double P(Func<LoadResult, double> f, double p) => ServeLoad.Percentile(completed.Select(f), p);
            rows.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {maxConcurrent} | {results.Length} | {completed.Length} | {rejected} ({by429} / {by503}) | {failed} | {lost} | {wall:F1} | {completed.Length / wall:F1} | " +
                $"{P(r => r.FirstEventMs, 0.5):F0} | {P(r => r.FirstEventMs, 0.99):F0} | {P(r => r.TotalMs, 0.5):F0} | {P(r => r.TotalMs, 0.99):F0} | {(rejected == 0 ? "-" : ServeLoad.F(ServeLoad.Percentile(results.Where(r => r.Outcome == LoadOutcome.Rejected).Select(r => r.TotalMs), 0.5)))} |"));
            Console.WriteLine(rows[^1]);
            failures.AddRange(results.Where(r => r.Outcome is LoadOutcome.Failed or LoadOutcome.Lost).Select(r => $"{name}: request {r.Request.Index} {r.Outcome}: {r.Error}"));
            bool pass = failed == 0 && lost == 0 && completed.Length > 0 && (expectRejections || rejected == 0);
            if (!expectRejections && rejected > 0) failures.Add($"{name}: {rejected} rejections with the limit above the load");
            return pass;
        }
    }

    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "unknown";
        }
        catch (UnauthorizedAccessException)
        {
            return "unknown";
        }
    }
}
