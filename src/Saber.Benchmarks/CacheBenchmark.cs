using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Saber.Onnx;

namespace Saber.Benchmarks;

/// <summary>
/// Every strategy under every cache policy and refresh rule on one model, side by side in one run (docs/caching.md): accuracy
/// (exact match on a problem set, or, without one, agreement with the uncached decode of the same strategy), NFE, forward
/// FLOPs and time per step with their ratios to no cache, wall time, and for Saber the re-masks that fall outside the window
/// and what recomputing them cost. Decodes run one prompt at a time on the CPU sampler, so no policy gains from batching.
/// </summary>
/// <remarks>
/// dotnet run -c Release --project src/Saber.Benchmarks -- cache --model DIR [--set FILE --limit N] [--gen-length G] [--block-length K]
///   [--refresh-every R] [--prompts N] [--threads T]
/// </remarks>
internal static class CacheBenchmark
{
    private sealed record Config(string Label, CacheOptions Cache);

    private sealed record Row(string Strategy, string Cache, int Decodes, double Accuracy, double MeanNfe, double FlopsPerStep, double MsPerStep,
        double WallSeconds, int Remasks, int RemasksOutside, double RefreshedPerDecode, double RefreshFlopShare, double? Agreement);

    private static readonly string[] CodePrompts =
    [
        "def fibonacci(n):\n\t", "import os\n\ndef list_files(path):\n\t", "class Stack:\n\tdef __init__(self):\n\t\t",
        "def read_lines(filename):\n\twith open(filename) as f:\n\t\t", "for i in range(10):\n\t", "def is_prime(n):\n\tif n < 2:\n\t\t",
        "try:\n\timport json\nexcept ImportError:\n\t", "def merge(a, b):\n\tresult = []\n\t",
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        string? model = null, set = null;
        int limit = 100, g = 256, k = 32, every = 8, prompts = CodePrompts.Length, threads = 0;
        for (int i = 0; i < args.Length; i += 2)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--model": model = value; break;
                case "--set": set = value; break;
                case "--limit": limit = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--gen-length": g = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--block-length": k = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--refresh-every": every = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--prompts": prompts = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(value, CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"Unknown option {args[i]}.");
            }
        }
        if (model is null) throw new ArgumentException("--model DIR is required.");
        using LocalModel local = LocalModel.Open(model, new OnnxEngineOptions { IntraOpThreads = threads });
        (string Prompt, string? Answer)[] problems = set is null
            ? CodePrompts.Take(prompts).Select(p => (p, (string?)null)).ToArray()
            : File.ReadLines(set).Where(l => l.Trim().Length > 0).Take(limit).Select(l =>
            {
                using JsonDocument json = JsonDocument.Parse(l);
                return (json.RootElement.GetProperty("prompt").GetString()!, (string?)json.RootElement.GetProperty("answer").GetString());
            }).ToArray();
        int[][] tokens = problems.Select(p => local.Tokenizer.Encode(p.Prompt)).ToArray();

        (string Label, DecodingStrategy Strategy)[] strategies =
        [
            ("saber reference", new SaberStrategy()),
            ("saber paper", new SaberStrategy(Variant: SaberVariant.Paper)),
            ($"low-confidence S=G/2", new LowConfidenceStrategy(g / 2)),
            ("threshold 0.9", new ThresholdStrategy(0.9f)),
            ("factor 1.0", new FactorStrategy(1.0f)),
        ];
        Console.WriteLine($"# cache benchmark: {model}, {problems.Length} {(set is null ? "code prompts" : "problems")}, G {g}, K {k}, R {every}");
        Console.WriteLine($"# {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} logical cores, ONNX Runtime CPU, intra-op threads {threads} (0: default)");
        Console.WriteLine();
        Console.WriteLine("| strategy | cache | accuracy | agreement with none | mean NFE | GFLOP / step | FLOP ratio | ms / step | time ratio | wall s | re-masks outside window | refreshed positions / decode | refresh FLOP share |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (label, strategy) in strategies)
        {
            var configs = new List<Config>
            {
                new("none", CacheOptions.None),
                new("prefix", new CacheOptions(CachePolicy.Prefix)),
                new($"prefix R={every}", new CacheOptions(CachePolicy.Prefix, every)),
                new("dual", new CacheOptions(CachePolicy.Dual)),
                new($"dual R={every}", new CacheOptions(CachePolicy.Dual, every)),
            };
            if (strategy is SaberStrategy)
            {
                configs.Add(new("prefix, re-mask: block", new CacheOptions(CachePolicy.Prefix, OnRemask: RemaskRefresh.Block)));
                configs.Add(new("dual, re-mask: block", new CacheOptions(CachePolicy.Dual, OnRemask: RemaskRefresh.Block)));
            }
            Row? baseline = null;
            int[][]? exact = null;
            foreach (Config config in configs)
            {
                var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Cache = config.Cache };
                var results = new List<SequenceResult>();
                var clock = Stopwatch.StartNew();
                foreach (int[] prompt in tokens)
                    results.Add((await new CpuSampler().DecodeAsync(local.Denoiser, [prompt], options)).Sequences[0]);
                double wall = clock.Elapsed.TotalSeconds;
                int[][] generated = results.Select(r => r.Tokens.ToArray()).ToArray();
                double accuracy = set is null ? double.NaN
                    : results.Where((r, i) => local.Tokenizer.Decode(r.Tokens) == problems[i].Answer).Count() / (double)results.Count;
                exact ??= generated;
                double agreement = generated.Zip(exact).Average(p => p.First.Zip(p.Second).Count(t => t.First == t.Second) / (double)g);
                long steps = results.Sum(r => (long)r.Nfe);
                long flops = results.Sum(r => r.ForwardFlops ?? 0);
                long refreshFlops = results.Sum(r => r.Cache?.RefreshFlops ?? 0);
                var row = new Row(label, config.Label, results.Count, accuracy, steps / (double)results.Count, flops / (double)steps, wall * 1000 / steps, wall,
                    results.Sum(r => r.Cache?.Remasks ?? r.Trace.Sum(t => t.Remasked.Count)), results.Sum(r => r.Cache?.RemasksOutsideWindow ?? 0),
                    results.Average(r => (double)(r.Cache?.RefreshedPositions ?? 0)), flops == 0 ? 0 : refreshFlops / (double)flops, agreement);
                baseline ??= row;
                Console.WriteLine(Format(row, baseline, strategy is SaberStrategy));
            }
        }
        return 0;
    }

    private static string Format(Row r, Row none, bool saber)
    {
        var inv = CultureInfo.InvariantCulture;
        var line = new StringBuilder();
        line.Append(inv, $"| {r.Strategy} | {r.Cache} | {(double.IsNaN(r.Accuracy) ? "-" : (r.Accuracy * 100).ToString("F1", inv) + " %")} | ");
        line.Append(inv, $"{r.Agreement * 100:F1} % | {r.MeanNfe:F2} | {r.FlopsPerStep / 1e9:F4} | {none.FlopsPerStep / r.FlopsPerStep:F2}x | ");
        line.Append(inv, $"{r.MsPerStep:F2} | {none.MsPerStep / r.MsPerStep:F2}x | {r.WallSeconds:F1} | ");
        line.Append(saber ? string.Create(inv, $"{r.RemasksOutside} of {r.Remasks} | {r.RefreshedPerDecode:F1} | {r.RefreshFlopShare * 100:F1} % |") : "- | - | - |");
        return line.ToString();
    }
}
