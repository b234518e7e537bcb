using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Onnx;

namespace Saber.Cli;

/// <summary><c>saber generate</c>: completes prompts with a model, showing progress on stderr.</summary>
internal static class GenerateCommand
{
    public const string Usage =
        "usage: saber generate [--model DIR] [options] PROMPT [PROMPT ...]\n" +
        ModelArguments.Usage + "\n" +
        StrategyArguments.Usage + "\n" +
        "  --no-progress      no step-by-step progress on stderr\n" +
        "Prints each prompt followed by its completion (up to the first end-of-text) on stdout, then NFE,\n" +
        "wall time and tokens/s on stderr.";

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string>(StrategyArguments.Flags.Append("--no-progress")), acceptsPositionals: true);
        IReadOnlyList<string> texts = args.Positionals;
        if (texts.Count == 0) throw new UsageException("Give at least one prompt.");
        var (g, k) = ModelArguments.Lengths(args);
        var options = new DecodeOptions
        {
            GenerationLength = g,
            BlockLength = k,
            Strategy = StrategyArguments.Read(args),
            Temperature = args.Float("--temperature") ?? 0f,
            Seed = args.ULong("--seed") ?? 0,
        };
        bool progress = !args.Flag("--no-progress");
        using LocalModel model = ModelArguments.Open(args, logging);
        args.RejectUnknown();
        options.Validate();

        ReadOnlyMemory<int>[] prompts = texts.Select(t => (ReadOnlyMemory<int>)model.Tokenizer.Encode(t)).ToArray();
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        var clock = Stopwatch.StartNew();
        int[][] canvases = prompts.Select(p => p.ToArray().Concat(Enumerable.Repeat(model.Tokenizer.MaskId, g)).ToArray()).ToArray();
        var nfe = new int[prompts.Length];
        await foreach (DecodeStepUpdate update in sampler.DecodeStepsAsync(model.Denoiser, prompts, options, cancellationToken))
        {
            foreach (SequenceStep s in update.Sequences)
            {
                canvases[s.Sequence] = s.Canvas;
                nfe[s.Sequence] = update.Step;
            }
            if (progress)
            {
                int masked = canvases.Sum(c => c.Count(t => t == model.Tokenizer.MaskId));
                stderr.Write($"\rstep {update.Step,4}: {masked,5} of {g * prompts.Length} positions masked");
            }
        }
        if (progress) stderr.WriteLine();
        double seconds = clock.Elapsed.TotalSeconds;
        for (int b = 0; b < prompts.Length; b++)
            stdout.WriteLine(texts[b] + model.Tokenizer.Decode(canvases[b].AsSpan(prompts[b].Length)));
        var inv = CultureInfo.InvariantCulture;
        stderr.WriteLine($"{StrategyArguments.Describe(options.Strategy)}: NFE {string.Join(", ", nfe)}, {(seconds * 1000).ToString("F0", inv)} ms, " +
            $"{(g * prompts.Length / seconds).ToString("F0", inv)} tokens/s");
        return 0;
    }
}
