using System.Diagnostics;
using System.Globalization;
using Saber.Onnx;
using Saber.Service;

namespace Saber.Benchmarks;

/// <summary>
/// Requests per second and latency percentiles of many concurrent requests on the shipped model (models/tiny, ONNX
/// Runtime on the CPU) through <see cref="SaberEngine"/>, beside the same requests decoded one at a time with
/// <see cref="CpuSampler"/>, in one run. A whole-process measurement, not BenchmarkDotNet: each configuration decodes the
/// same request list once after one warm-up request.
/// </summary>
/// <remarks>
/// dotnet run -c Release --project src/Saber.Benchmarks -- service [--requests N] [--concurrency 1,8,32,128] [--model DIR]
/// </remarks>
internal static class ServiceBenchmark
{
    private static readonly string[] Texts =
        ["def fibonacci(n):\n", "def is_prime(n):\n", "class Stack:\n\tdef push(self, item):\n", "def read_lines(path):\n",
         "import os\n", "def main():\n", "for i in range(10):\n", "def add(a, b):\n"];

    public static async Task<int> RunAsync(string[] args)
    {
        int requests = 128;
        int[] levels = [1, 8, 32, 128];
        string model = Path.Combine(AppContext.BaseDirectory, "models", "tiny");
        if (!Directory.Exists(model)) model = Path.Combine("models", "tiny");
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--requests": requests = int.Parse(value, CultureInfo.InvariantCulture); i++; break;
                case "--concurrency": levels = value.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray(); i++; break;
                case "--model": model = value; i++; break;
                default: throw new ArgumentException($"Unknown option {args[i]}; use --requests N, --concurrency 1,8,32,128, --model DIR.");
            }
        }
        if (requests < 1 || levels.Any(c => c < 1)) throw new ArgumentException("--requests and every --concurrency level must be >= 1.");

        using LocalModel local = LocalModel.Open(model);
        var options = new DecodeOptions { GenerationLength = 64, BlockLength = 32, Strategy = new SaberStrategy() };
        ReadOnlyMemory<int>[] prompts = Enumerable.Range(0, requests).Select(i => (ReadOnlyMemory<int>)local.Tokenizer.Encode(Texts[i % Texts.Length])).ToArray();
        Console.WriteLine($"# Service benchmark — {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine();
        Console.WriteLine($"- command: `{string.Join(' ', new[] { "dotnet run -c Release --project src/Saber.Benchmarks -- service" }.Concat(args))}`");
        Console.WriteLine($"- machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        Console.WriteLine($"- model: {local.Denoiser.ModelPath}; {requests} requests, {Texts.Length} prompts in turn, Saber (reference, n 2, mu 8), G 64, K 32, greedy");
        Console.WriteLine();
        Console.WriteLine("| mode | concurrency | requests/s | p50 latency (ms) | p99 latency (ms) | forward passes | wall (s) | vs one at a time |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");

        // One at a time: each request decoded alone with the CPU sampler, back to back.
        var sampler = new CpuSampler();
        await sampler.DecodeAsync(local.Denoiser, [prompts[0]], options);
        var latencies = new double[requests];
        long forwardPasses = 0;
        var wall = Stopwatch.StartNew();
        for (int i = 0; i < requests; i++)
        {
            long start = Stopwatch.GetTimestamp();
            DecodeResult result = await sampler.DecodeAsync(local.Denoiser, [prompts[i]], options);
            latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            forwardPasses += result.Steps;
        }
        double baseline = requests / wall.Elapsed.TotalSeconds;
        Row("one at a time (CpuSampler)", 1, requests, wall.Elapsed, latencies, forwardPasses, baseline);

        foreach (int concurrency in levels)
        {
            await using var engine = new SaberEngine(local.Denoiser, new SaberEngineOptions { Capacity = Math.Max(requests, concurrency), MaxBatchSize = concurrency });
            await engine.DecodeAsync(prompts[0], options);
            long passesBefore = engine.ForwardPasses;
            latencies = new double[requests];
            int next = -1;
            wall = Stopwatch.StartNew();
            // `concurrency` clients, each submitting its next request when the previous one completes.
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
            {
                for (int i = Interlocked.Increment(ref next); i < requests; i = Interlocked.Increment(ref next))
                {
                    long start = Stopwatch.GetTimestamp();
                    await engine.DecodeAsync(prompts[i], options);
                    latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
            }));
            Row("SaberEngine", concurrency, requests, wall.Elapsed, latencies, engine.ForwardPasses - passesBefore, baseline);
        }
        Console.WriteLine();
        Console.WriteLine("Latency: submit to result, per request. Throughput ratios are measured side by side in this one run.");
        return 0;
    }

    private static void Row(string mode, int concurrency, int requests, TimeSpan wall, double[] latencies, long passes, double baseline)
    {
        double[] sorted = latencies.Order().ToArray();
        double Percentile(double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
        double rate = requests / wall.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {mode} | {concurrency} | {rate:F1} | {Percentile(0.50):F0} | {Percentile(0.99):F0} | {passes} | {wall.TotalSeconds:F1} | {rate / baseline:F2}x |"));
    }
}
