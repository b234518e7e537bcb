using Microsoft.Extensions.Logging;
using Saber.Onnx;

namespace Saber.Cli;

/// <summary>The model options shared by generate, compare and demo.</summary>
internal static class ModelArguments
{
    public const string Usage =
        "  --model DIR        model directory with model.onnx and tokenizer.json (default: the shipped models/tiny)\n" +
        "  --threads N        ONNX Runtime intra-op threads, at most four per core (default 0: one per core)\n" +
        "  --max-cache-bytes N  the most bytes the live key/value caches may hold (default 4 GiB; with --cache)\n" +
        EngineUsage + "\n" +
        "  --gen-length G     positions to generate (default 64)\n" +
        "  --block-length K   semi-autoregressive block length (default 32)";

    /// <summary>
    /// A shipped model (<c>tiny</c>: the code model; <c>addition</c>: the task model of <c>saber eval</c> and the demo):
    /// copied next to the saber executable, else under models/ in the working directory.
    /// </summary>
    public static string ShippedModel(string name = "tiny")
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "models", name);
        return System.IO.Directory.Exists(beside) ? beside : Path.Combine(Environment.CurrentDirectory, "models", name);
    }

    public const string EngineUsage =
        "  --engine E         where ONNX Runtime runs DIR/model.onnx: onnx (default, the CPU), onnx-cuda or onnx-tensorrt\n" +
        "                     (an NVIDIA GPU: ONNX Runtime's GPU build, CUDA 13, cuDNN 9, TensorRT 10; docs/gpu.md)\n" +
        "  --device N         the CUDA device of onnx-cuda and onnx-tensorrt (default 0)\n" +
        "  --precision P      onnx-tensorrt: model (default, the graph's types), fp16 or bf16; TensorRT's engines are\n" +
        "                     built once into DIR/engine-cache/";

    /// <summary>The model directory: --model, else the shipped model.</summary>
    public static string Directory(Arguments args, string shipped = "tiny") => args.Text("--model") ?? ShippedModel(shipped);

    /// <summary>The engine options of --threads, --max-cache-bytes, --engine, --device and --precision, checked.</summary>
    public static OnnxEngineOptions EngineOptions(Arguments args)
    {
        int threads = args.Int("--threads") ?? 0;
        if (threads < 0 || threads > OnnxEngineOptions.MaxIntraOpThreads)
            throw new UsageException($"--threads must lie in [0, {OnnxEngineOptions.MaxIntraOpThreads}] (four per core; 0: one per core); got {threads}.");
        long? maxCacheBytes = args.Long("--max-cache-bytes");
        if (maxCacheBytes is < 0) throw new UsageException($"--max-cache-bytes must be >= 0; got {maxCacheBytes}.");
        ExecutionProvider provider = args.Text("--engine") is { } engine
            ? ExecutionProviders.TryFromEngineName(engine) ?? throw new UsageException($"--engine expects onnx, onnx-cuda or onnx-tensorrt; got '{engine}'.")
            : ExecutionProvider.Cpu;
        int device = args.Int("--device") ?? 0;
        if (device < 0) throw new UsageException($"--device must be >= 0; got {device}.");
        GpuPrecision precision = args.Choice("--precision", ExecutionProviders.PrecisionNames) ?? GpuPrecision.Model;
        if (precision != GpuPrecision.Model && provider != ExecutionProvider.TensorRt)
            throw new UsageException($"--precision {args.Text("--precision")} needs --engine onnx-tensorrt; the {ExecutionProviders.EngineName(provider)} engine runs the graph's own types.");
        if (provider == ExecutionProvider.Cpu && args.Text("--device") is not null)
            throw new UsageException("--device needs --engine onnx-cuda or onnx-tensorrt.");
        var options = new OnnxEngineOptions { IntraOpThreads = threads, Provider = provider, DeviceId = device, Precision = precision };
        return maxCacheBytes is long bytes ? options with { MaxCacheBytes = bytes } : options;
    }

    /// <summary>The model of --model (or the shipped one) on the engine of <see cref="EngineOptions"/>, for the host samplers.</summary>
    public static LocalModel Open(Arguments args, ILoggerFactory logging, string shipped = "tiny") =>
        LocalModel.Open(Directory(args, shipped), EngineOptions(args), logging.CreateLogger<OnnxDenoiser>());

    /// <summary>G and K: K defaults to 32 where it divides G, else G.</summary>
    public static (int Generation, int Block) Lengths(Arguments args, int defaultGeneration = 64)
    {
        int g = args.Int("--gen-length") ?? defaultGeneration;
        return (g, args.Int("--block-length") ?? (g % 32 == 0 ? 32 : g));
    }

    /// <summary>The prompts as token ids; characters outside the vocabulary are named in a warning on <paramref name="stderr"/>.</summary>
    public static ReadOnlyMemory<int>[] Encode(IModelTokenizer tokenizer, IReadOnlyList<string> texts, string command, TextWriter stderr)
    {
        var prompts = new ReadOnlyMemory<int>[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            prompts[i] = tokenizer.Encode(texts[i], out IReadOnlyList<string> unknown);
            if (unknown.Count > 0)
                stderr.WriteLine($"saber {command}: warning: prompt {i + 1} holds {unknown.Count} character(s) outside the model's vocabulary, " +
                    $"read as the unknown token: {string.Join(" ", unknown.Select(Describe))}");
        }
        return prompts;
    }

    /// <summary>A character and its code point, e.g. 'é' (U+00E9); a control character by its code point alone.</summary>
    private static string Describe(string character)
    {
        string codePoints = string.Join(" ", character.EnumerateRunes().Select(r => $"U+{r.Value:X4}"));
        return character.EnumerateRunes().Any(System.Text.Rune.IsControl) ? codePoints : $"'{character}' ({codePoints})";
    }

    /// <summary>Each prompt followed by <paramref name="g"/> masks: the canvases before the first step.</summary>
    public static int[][] InitialCanvases(IEnumerable<ReadOnlyMemory<int>> prompts, int maskId, int g) =>
        prompts.Select(p => p.ToArray().Concat(Enumerable.Repeat(maskId, g)).ToArray()).ToArray();
}
