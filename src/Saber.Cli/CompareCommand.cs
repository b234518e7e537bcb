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
        "Decodes the prompts (default: " + "a few Python function headers) with Saber, low-confidence (S = G) and threshold 0.9\n" +
        "and prints NFE (mean per sequence), wall time and generated tokens/s per strategy.";

    internal static readonly string[] DefaultPrompts =
        ["def fibonacci(n):\n", "def is_prime(n):\n", "class Stack:\n\tdef push(self, item):\n", "def read_lines(path):\n"];

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string>(), acceptsPositionals: true);
        IReadOnlyList<string> texts = args.Positionals.Count > 0 ? args.Positionals : DefaultPrompts;
        var (g, k) = ModelArguments.Lengths(args);
        using LocalModel model = ModelArguments.Open(args, logging);
        args.RejectUnknown();
        await WriteTableAsync(model, ModelArguments.Encode(model.Tokenizer, texts, "compare", stderr), g, k, stdout, logging, cancellationToken);
        return 0;
    }

    /// <summary>The three strategies on the same prompts, one row each.</summary>
    public static async Task WriteTableAsync(LocalModel model, ReadOnlyMemory<int>[] prompts, int g, int k, TextWriter stdout, ILoggerFactory logging,
        CancellationToken cancellationToken)
    {
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        DecodingStrategy[] strategies = [new SaberStrategy(), new LowConfidenceStrategy(g), new ThresholdStrategy(0.9f)];
        // Every decode's sizes are checked before the warm-up allocates its canvases.
        foreach (DecodingStrategy strategy in strategies)
            DecodeInputs.Validate(prompts, Options(strategy), model.Denoiser.VocabularySize, model.Denoiser.MaskId, model.Denoiser.MaxSequenceLength);
        DecodeOptions Options(DecodingStrategy strategy) => new() { GenerationLength = g, BlockLength = k, Strategy = strategy };
        // One untimed forward pass first, so that no strategy pays for the session's warm-up.
        var warmUp = new DenoiseRequest(0, Enumerable.Range(0, prompts.Length).ToArray(),
            ModelArguments.InitialCanvases(prompts, model.Tokenizer.MaskId, g).Select(c => (ReadOnlyMemory<int>)c).ToArray());
        await model.Denoiser.ForwardAsync(warmUp, cancellationToken);
        var inv = CultureInfo.InvariantCulture;
        stdout.WriteLine($"{prompts.Length} prompt(s), G = {g}, K = {k}, {Path.GetFileName(Path.GetDirectoryName(model.Denoiser.ModelPath))} on the CPU (ONNX Runtime)");
        stdout.WriteLine($"{"strategy",-34} {"NFE",7} {"wall ms",9} {"tokens/s",9}");
        foreach (DecodingStrategy strategy in strategies)
        {
            var clock = Stopwatch.StartNew();
            DecodeResult result = await sampler.DecodeAsync(model.Denoiser, prompts, Options(strategy), cancellationToken);
            double seconds = clock.Elapsed.TotalSeconds;
            double nfe = result.Sequences.Average(s => s.Nfe);
            stdout.WriteLine($"{StrategyArguments.Describe(strategy),-34} {nfe.ToString("F1", inv),7} {(seconds * 1000).ToString("F0", inv),9} " +
                $"{(g * prompts.Length / seconds).ToString("F0", inv),9}");
        }
    }
}
