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
        "                     onnx-cuda and onnx-tensorrt decode with the CUDA sampler, the logits staying on the GPU\n" +
        StrategyArguments.Usage + "\n" +
        StrategyArguments.CacheUsage + "   (--engine onnx only)\n" +
        "  --prompt-ids IDS   token ids instead of prompt text: comma-separated, ';' between prompts (\"1,2,3;4,5\")\n" +
        "  --json             one JSON object per prompt on stdout: prompt_ids, ids (all G generated positions,\n" +
        "                     not cut at end-of-text), text (up to the first end-of-text), nfe, cache (the policy;\n" +
        "                     null without one), forward_flops (null when the model does not report FLOPs),\n" +
        "                     remasks, remasks_changed, positions_remasked_twice (Saber's re-masks; null on the GPU\n" +
        "                     without progress) and, with a cache, cache_statistics\n" +
        "  --no-progress      no step-by-step progress on stderr\n" +
        "Prints each prompt followed by its completion (up to the first end-of-text) on stdout, then NFE, the cache,\n" +
        "forward FLOPs (all prompts; - when unknown), wall time and tokens/s on stderr.";

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
        CacheOptions cache = StrategyArguments.Cache(args);
        var (temperature, seed) = StrategyArguments.Sampling(args);
        var options = new DecodeOptions
        {
            GenerationLength = g,
            BlockLength = k,
            Strategy = strategy,
            Temperature = temperature,
            Seed = seed ?? 0,
            Cache = cache,
        };
        bool progress = !args.Flag("--no-progress");
        OnnxEngineOptions engineOptions = ModelArguments.EngineOptions(args);
        bool onDevice = engineOptions.Provider != ExecutionProvider.Cpu;
        if (onDevice && cache.Enabled)
            throw new UsageException($"--cache needs --engine onnx: the CUDA sampler of --engine {ExecutionProviders.EngineName(engineOptions.Provider)} keeps " +
                "each decode's state on the device, and the cache plan reads it on the host every step (docs/caching.md).");
        string directory = ModelArguments.Directory(args);
        args.RejectUnknown();
        options.Validate();
        using LocalModel? model = onDevice ? null : LocalModel.Open(directory, engineOptions, logging.CreateLogger<OnnxDenoiser>());
        using Saber.Onnx.Gpu.LocalDeviceModel? gpu = onDevice ? Saber.Onnx.Gpu.LocalDeviceModel.Open(directory, engineOptions, logging) : null;
        IModelTokenizer tokenizer = model?.Tokenizer ?? gpu!.Tokenizer;
        StrategyArguments.WarnAboutSeed(options, seed is not null, "generate", stderr);

        ReadOnlyMemory<int>[] prompts = promptIds is null
            ? ModelArguments.Encode(tokenizer, texts, "generate", stderr)
            : promptIds.Select(p => (ReadOnlyMemory<int>)p).ToArray();
        var clock = Stopwatch.StartNew();
        int[][] canvases = ModelArguments.InitialCanvases(prompts, tokenizer.MaskId, g);
        // On a terminal the progress line is redrawn in place; in a log file each step is a line of its own.
        bool terminal = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        void Progress(int step)
        {
            if (!progress) return;
            int masked = canvases.Sum(c => c.Count(t => t == tokenizer.MaskId));
            string line = $"step {step,4}: {masked,5} of {g * prompts.Length} positions masked";
            if (terminal) stderr.Write("\r" + line);
            else stderr.WriteLine(line);
        }
        SequenceResult[] results;
        if (gpu is null)
        {
            // The whole result (FLOPs, cache statistics) comes from DecodeAsync; the progress of step s is drawn from the
            // canvases call s + 1 receives, and the last step's from the result.
            int calls = 0;
            var observed = new ObservedDenoiser(model!.Denoiser, request =>
            {
                for (int i = 0; i < request.SequenceIds.Count; i++)
                    canvases[request.SequenceIds[i]] = request.Canvases[i].ToArray();
                if (calls++ > 0) Progress(calls - 1);
            });
            DecodeResult decoded = await new CpuSampler(logging.CreateLogger<CpuSampler>()).DecodeAsync(observed, prompts, options, cancellationToken);
            results = decoded.Sequences.ToArray();
            for (int b = 0; b < results.Length; b++) canvases[b] = results[b].Canvas;
            if (results.Length > 0) Progress(decoded.Steps);
        }
        else
        {
            // The GPU sampler decodes without a cache and its engine reports no FLOPs. Progress reads every step back; without it the
            // sampler stays a step ahead of the host and waits only for each step's status.
            var sampler = new Saber.Cuda.CudaSampler(gpu.Context, logging.CreateLogger<Saber.Cuda.CudaSampler>());
            if (progress)
            {
                var nfe = new int[prompts.Length];
                var remasks = new RemaskStatistics?[prompts.Length];
                await foreach (DecodeStepUpdate update in sampler.DecodeStepsAsync(gpu.Denoiser, prompts, options, cancellationToken))
                {
                    foreach (SequenceStep s in update.Sequences)
                    {
                        canvases[s.Sequence] = s.Canvas;
                        nfe[s.Sequence] = update.Step;
                        remasks[s.Sequence] = s.RemaskStatistics;
                    }
                    Progress(update.Step);
                }
                results = canvases.Select((c, b) => new SequenceResult(c, prompts[b].Length, nfe[b], []) { RemaskStatistics = remasks[b] }).ToArray();
            }
            else
            {
                results = (await sampler.DecodeAsync(gpu.Denoiser, prompts, options, cancellationToken)).Sequences.ToArray();
            }
        }
        if (progress && terminal) stderr.WriteLine();
        double seconds = clock.Elapsed.TotalSeconds;
        for (int b = 0; b < prompts.Length; b++)
        {
            ReadOnlySpan<int> generated = results[b].Tokens;
            string completion = tokenizer.Decode(generated, null);
            stdout.WriteLine(json ? ResultJson(prompts[b].Span, results[b], completion)
                : (promptIds is null ? texts[b] : tokenizer.Decode(prompts[b].Span, null)) + completion);
        }
        var inv = CultureInfo.InvariantCulture;
        long? flops = results.Any(r => r.ForwardFlops is null) ? null : results.Sum(r => r.ForwardFlops!.Value);
        stderr.WriteLine($"{StrategyArguments.Describe(options.Strategy)}: NFE {string.Join(", ", results.Select(r => r.Nfe))}, " +
            $"{StrategyArguments.DescribeCache(options.Cache)}, forward FLOPs {StrategyArguments.Flops(flops)}, {(seconds * 1000).ToString("F0", inv)} ms, " +
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
    internal static string ResultJson(ReadOnlySpan<int> prompt, SequenceResult result, string text)
    {
        using var buffer = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("prompt_ids");
            foreach (int id in prompt) json.WriteNumberValue(id);
            json.WriteEndArray();
            json.WriteStartArray("ids");
            foreach (int id in result.Tokens) json.WriteNumberValue(id);
            json.WriteEndArray();
            json.WriteString("text", text);
            json.WriteNumber("nfe", result.Nfe);
            if (result.Cache is { } cache)
                json.WriteString("cache", CacheOptions.Name(cache.Policy));
            else
                json.WriteNull("cache");
            if (result.ForwardFlops is long flops) json.WriteNumber("forward_flops", flops);
            else json.WriteNull("forward_flops");
            WriteRemaskStatistics(json, result.RemaskStatistics);
            if (result.Cache is { } statistics)
            {
                json.WriteStartObject("cache_statistics");
                json.WriteNumber("passes", statistics.Passes);
                json.WriteNumber("full_passes", statistics.FullPasses);
                json.WriteNumber("computed_positions", statistics.ComputedPositions);
                json.WriteNumber("canvas_positions", statistics.CanvasPositions);
                json.WriteNumber("remasks", statistics.Remasks);
                json.WriteNumber("remasks_outside_window", statistics.RemasksOutsideWindow);
                json.WriteNumber("refreshed_positions", statistics.RefreshedPositions);
                if (statistics.RefreshFlops is long refresh) json.WriteNumber("refresh_flops", refresh);
                else json.WriteNull("refresh_flops");
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>
    /// <c>remasks</c>, <c>remasks_changed</c> and <c>positions_remasked_twice</c> of a result (<see cref="RemaskStatistics"/>);
    /// null where the sampler did not count them (the CUDA sampler without a trace read back).
    /// </summary>
    internal static void WriteRemaskStatistics(System.Text.Json.Utf8JsonWriter json, RemaskStatistics? statistics)
    {
        if (statistics is null)
        {
            json.WriteNull("remasks");
            json.WriteNull("remasks_changed");
            json.WriteNull("positions_remasked_twice");
            return;
        }
        json.WriteNumber("remasks", statistics.Remasks);
        json.WriteNumber("remasks_changed", statistics.RemasksChanged);
        json.WriteNumber("positions_remasked_twice", statistics.PositionsRemaskedTwice);
    }
}
