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
        "  --engine onnx|tensorrt   onnx (default): DIR/model.onnx on the CPU; tensorrt: --engine-file X.plan on\n" +
        "                           the GPU (libsaber_native built with TensorRT), with DIR's tokenizer\n" +
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
        DecodingStrategy strategy = StrategyArguments.Read(args);
        var (temperature, seed) = StrategyArguments.Sampling(args);
        var options = new DecodeOptions
        {
            GenerationLength = g,
            BlockLength = k,
            Strategy = strategy,
            Temperature = temperature,
            Seed = seed ?? 0,
        };
        bool progress = !args.Flag("--no-progress");
        string engine = args.Text("--engine") ?? "onnx";
        if (engine is not ("onnx" or "tensorrt")) throw new UsageException($"--engine expects onnx or tensorrt; got '{engine}'.");
        string? engineFile = engine == "tensorrt" ? args.RequiredText("--engine-file") : null;
        using LocalModel? model = engine == "onnx" ? ModelArguments.Open(args, logging) : null;
        CharacterTokenizer tokenizer = model?.Tokenizer ?? CharacterTokenizer.Load(Path.Combine(args.Text("--model") ?? ModelArguments.ShippedModel(), "tokenizer.json"));
        args.RejectUnknown();
        options.Validate();
        StrategyArguments.WarnAboutSeed(options, seed is not null, "generate", stderr);

        ReadOnlyMemory<int>[] prompts = ModelArguments.Encode(tokenizer, texts, "generate", stderr);
        using Saber.Cuda.CudaContext? context = engineFile is null ? null : Saber.Cuda.CudaContext.Create();
        using Saber.Cuda.NativeEngine? gpuEngine = context is null ? null : Saber.Cuda.NativeEngine.LoadTensorRt(context, engineFile!, tokenizer.MaskId);
        IAsyncEnumerable<DecodeStepUpdate> steps = gpuEngine is null
            ? new CpuSampler(logging.CreateLogger<CpuSampler>()).DecodeStepsAsync(model!.Denoiser, prompts, options, cancellationToken)
            : new Saber.Cuda.CudaSampler(context!, logging.CreateLogger<Saber.Cuda.CudaSampler>()).DecodeStepsAsync(gpuEngine, prompts, options, cancellationToken);
        var clock = Stopwatch.StartNew();
        int[][] canvases = ModelArguments.InitialCanvases(prompts, tokenizer.MaskId, g);
        // On a terminal the progress line is redrawn in place; in a log file each step is a line of its own.
        bool terminal = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        var nfe = new int[prompts.Length];
        await foreach (DecodeStepUpdate update in steps)
        {
            foreach (SequenceStep s in update.Sequences)
            {
                canvases[s.Sequence] = s.Canvas;
                nfe[s.Sequence] = update.Step;
            }
            if (progress)
            {
                int masked = canvases.Sum(c => c.Count(t => t == tokenizer.MaskId));
                string line = $"step {update.Step,4}: {masked,5} of {g * prompts.Length} positions masked";
                if (terminal) stderr.Write("\r" + line);
                else stderr.WriteLine(line);
            }
        }
        if (progress && terminal) stderr.WriteLine();
        double seconds = clock.Elapsed.TotalSeconds;
        for (int b = 0; b < prompts.Length; b++)
            stdout.WriteLine(texts[b] + tokenizer.Decode(canvases[b].AsSpan(prompts[b].Length)));
        var inv = CultureInfo.InvariantCulture;
        stderr.WriteLine($"{StrategyArguments.Describe(options.Strategy)}: NFE {string.Join(", ", nfe)}, {(seconds * 1000).ToString("F0", inv)} ms, " +
            $"{(g * prompts.Length / seconds).ToString("F0", inv)} tokens/s");
        return 0;
    }
}
