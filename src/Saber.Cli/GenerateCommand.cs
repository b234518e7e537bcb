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
        "       saber generate [--model DIR] [options] --prompt-ids IDS\n" +
        ModelArguments.Usage + "\n" +
        "  --engine onnx|tensorrt   onnx (default): DIR/model.onnx on the CPU; tensorrt: --engine-file X.plan on\n" +
        "                           the GPU (libsaber_native built with TensorRT), with DIR's tokenizer\n" +
        StrategyArguments.Usage + "\n" +
        "  --prompt-ids IDS   token ids instead of prompt text: comma-separated, ';' between prompts (\"1,2,3;4,5\")\n" +
        "  --json             one JSON object per prompt on stdout: prompt_ids, ids (all G generated positions,\n" +
        "                     not cut at end-of-text), text (up to the first end-of-text) and nfe\n" +
        "  --no-progress      no step-by-step progress on stderr\n" +
        "Prints each prompt followed by its completion (up to the first end-of-text) on stdout, then NFE,\n" +
        "wall time and tokens/s on stderr.";

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string>(StrategyArguments.Flags.Concat(["--no-progress", "--json"])), acceptsPositionals: true);
        IReadOnlyList<string> texts = args.Positionals;
        int[][]? promptIds = args.Text("--prompt-ids") is { } ids ? ParsePromptIds(ids) : null;
        if (promptIds is not null && texts.Count > 0) throw new UsageException("Give prompts as text or as --prompt-ids, not both.");
        if (promptIds is null && texts.Count == 0) throw new UsageException("Give at least one prompt.");
        bool json = args.Flag("--json");
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
        IModelTokenizer tokenizer = model?.Tokenizer ?? LocalModel.OpenTokenizer(args.Text("--model") ?? ModelArguments.ShippedModel());
        args.RejectUnknown();
        options.Validate();
        StrategyArguments.WarnAboutSeed(options, seed is not null, "generate", stderr);

        ReadOnlyMemory<int>[] prompts = promptIds is null
            ? ModelArguments.Encode(tokenizer, texts, "generate", stderr)
            : promptIds.Select(p => (ReadOnlyMemory<int>)p).ToArray();
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
        {
            ReadOnlySpan<int> generated = canvases[b].AsSpan(prompts[b].Length);
            string completion = tokenizer.Decode(generated, null);
            stdout.WriteLine(json ? ResultJson(prompts[b].Span, generated, completion, nfe[b])
                : (promptIds is null ? texts[b] : tokenizer.Decode(prompts[b].Span, null)) + completion);
        }
        var inv = CultureInfo.InvariantCulture;
        stderr.WriteLine($"{StrategyArguments.Describe(options.Strategy)}: NFE {string.Join(", ", nfe)}, {(seconds * 1000).ToString("F0", inv)} ms, " +
            $"{(g * prompts.Length / seconds).ToString("F0", inv)} tokens/s");
        return 0;
    }

    /// <summary><c>--prompt-ids</c>: comma-separated ids, prompts separated by ';'. Range checks come with the decode's own validation.</summary>
    private static int[][] ParsePromptIds(string text)
    {
        string[] prompts = text.Split(';');
        var result = new int[prompts.Length][];
        for (int i = 0; i < prompts.Length; i++)
        {
            string[] parts = prompts[i].Split(',', StringSplitOptions.TrimEntries);
            if (parts.Length == 1 && parts[0].Length == 0)
                throw new UsageException($"--prompt-ids: prompt {i + 1} is empty; give comma-separated token ids, ';' between prompts.");
            result[i] = new int[parts.Length];
            for (int j = 0; j < parts.Length; j++)
                if (!int.TryParse(parts[j], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out result[i][j]))
                    throw new UsageException($"--prompt-ids: '{parts[j]}' (prompt {i + 1}, id {j + 1}) is not an integer token id.");
        }
        return result;
    }

    /// <summary>One prompt's result for <c>--json</c>: every generated id (not cut at end-of-text), so decodes compare id for id.</summary>
    private static string ResultJson(ReadOnlySpan<int> prompt, ReadOnlySpan<int> generated, string text, int nfe)
    {
        using var buffer = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("prompt_ids");
            foreach (int id in prompt) json.WriteNumberValue(id);
            json.WriteEndArray();
            json.WriteStartArray("ids");
            foreach (int id in generated) json.WriteNumberValue(id);
            json.WriteEndArray();
            json.WriteString("text", text);
            json.WriteNumber("nfe", nfe);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
