using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Onnx;

namespace Saber.Cli;

/// <summary><c>saber compare</c>: one prompt set through Saber, low-confidence (S = G) and threshold 0.9.</summary>
internal static class CompareCommand
{
    public const string Usage =
        "usage: saber compare [--model DIR] [options] [PROMPT ...]\n" +
        ModelArguments.Usage + "\n" +
        StrategyArguments.CacheUsage + "\n" +
        "Decodes the prompts (default: " + "a few Python function headers) with Saber, low-confidence (S = G) and threshold 0.9\n" +
        "(each with the cache) and prints NFE (mean per sequence), wall time, generated tokens/s and forward FLOPs (mean per\n" +
        "sequence and total; - when the model does not report them) per strategy.";

    internal static readonly string[] DefaultPrompts =
        ["def fibonacci(n):\n", "def is_prime(n):\n", "class Stack:\n\tdef push(self, item):\n", "def read_lines(path):\n"];

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string>(), acceptsPositionals: true);
        IReadOnlyList<string> texts = args.Positionals.Count > 0 ? args.Positionals : DefaultPrompts;
        var (g, k) = ModelArguments.Lengths(args);
        CacheOptions cache = StrategyArguments.Cache(args);
        using LocalModel model = ModelArguments.Open(args, logging);
        args.RejectUnknown();
        await WriteTableAsync(model, ModelArguments.Encode(model.Tokenizer, texts, "compare", stderr), g, k, stdout, logging, cancellationToken, cache);
        return 0;
    }

    /// <summary>The three strategies on the same prompts, one row each, every decode with <paramref name="cache"/> (default none).</summary>
    public static async Task WriteTableAsync(LocalModel model, ReadOnlyMemory<int>[] prompts, int g, int k, TextWriter stdout, ILoggerFactory logging,
        CancellationToken cancellationToken, CacheOptions? cache = null)
    {
        cache ??= CacheOptions.None;
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        DecodingStrategy[] strategies = [new SaberStrategy(), new LowConfidenceStrategy(g), new ThresholdStrategy(0.9f)];
        // Every decode's sizes, and that the model can run the cache, are checked before the warm-up allocates its canvases:
        // DecodeStepsAsync checks at the call and holds nothing until enumerated.
        foreach (DecodingStrategy strategy in strategies)
            _ = sampler.DecodeStepsAsync(model.Denoiser, prompts, Options(strategy), cancellationToken);
        DecodeOptions Options(DecodingStrategy strategy) => new() { GenerationLength = g, BlockLength = k, Strategy = strategy, Cache = cache };
        // One untimed forward pass first, so that no strategy pays for the session's warm-up.
        var warmUp = new DenoiseRequest(0, Enumerable.Range(0, prompts.Length).ToArray(),
            ModelArguments.InitialCanvases(prompts, model.Tokenizer.MaskId, g).Select(c => (ReadOnlyMemory<int>)c).ToArray());
        await model.Denoiser.ForwardAsync(warmUp, cancellationToken);
        var inv = CultureInfo.InvariantCulture;
        stdout.WriteLine($"{prompts.Length} prompt(s), G = {g}, K = {k}, {StrategyArguments.DescribeCache(cache)}, " +
            $"{Path.GetFileName(Path.GetDirectoryName(model.Denoiser.ModelPath))} on the CPU (ONNX Runtime)");
        stdout.WriteLine($"{"strategy",-34} {"NFE",7} {"wall ms",9} {"tokens/s",9} {"FLOPs/seq",10} {"FLOPs",10}");
        foreach (DecodingStrategy strategy in strategies)
        {
            var clock = Stopwatch.StartNew();
            DecodeResult result = await sampler.DecodeAsync(model.Denoiser, prompts, Options(strategy), cancellationToken);
            double seconds = clock.Elapsed.TotalSeconds;
            double nfe = result.Sequences.Average(s => s.Nfe);
            long? flops = result.Sequences.Any(s => s.ForwardFlops is null) ? null : result.Sequences.Sum(s => s.ForwardFlops!.Value);
            stdout.WriteLine($"{StrategyArguments.Describe(strategy),-34} {nfe.ToString("F1", inv),7} {(seconds * 1000).ToString("F0", inv),9} " +
                $"{(g * prompts.Length / seconds).ToString("F0", inv),9} {StrategyArguments.Flops((double?)flops / prompts.Length),10} {StrategyArguments.Flops(flops),10}");
        }
    }
}
