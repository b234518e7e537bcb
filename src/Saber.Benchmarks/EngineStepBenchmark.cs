using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Saber.Onnx;

namespace Saber.Benchmarks;

/// <summary>
/// The CPU engine's time per forward pass on two model directories side by side (passes interleaved A B A B, so the
/// machine's drift hits both), e.g. the shipped models/tiny against a checkpoint of the same shape imported by
/// <c>saber import</c>. Each pass is one decode step's model call on a batch of canvases of the given length with the
/// samplers' row request (rows from the prompt's end), so an imported model computes its head on the generation rows
/// only. For an imported model the manifest's shape gives the pass's floating-point work, hence a FLOP rate.
/// </summary>
/// <remarks>
/// dotnet run -c Release --project src/Saber.Benchmarks -- engine-step DIR_A DIR_B [--length 96] [--prompt 32] [--batch 1] [--passes 40] [--threads 0] [--all-rows]
/// </remarks>
internal static class EngineStepBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var directories = new List<string>();
        int length = 96, prompt = 32, batch = 1, passes = 40, threads = 0;
        bool allRows = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                directories.Add(args[i]);
                continue;
            }
            if (args[i] == "--all-rows")
            {
                allRows = true;   // ask every model for every row (the contract before row selection)
                continue;
            }
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            int number = int.Parse(value, CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--length": length = number; break;
                case "--prompt": prompt = number; break;
                case "--batch": batch = number; break;
                case "--passes": passes = number; break;
                case "--threads": threads = number; break;
                default: throw new ArgumentException($"Unknown option {args[i]}; use DIR_A DIR_B --length L --prompt P --batch B --passes N --threads T.");
            }
            i++;
        }
        if (directories.Count != 2) throw new ArgumentException("Give two model directories.");
        if (prompt < 0 || prompt >= length || batch < 1 || passes < 1) throw new ArgumentException("Need 0 <= --prompt < --length, --batch >= 1, --passes >= 1.");

        var models = directories.Select(d => LocalModel.Open(d, new OnnxEngineOptions { IntraOpThreads = threads })).ToArray();
        try
        {
            var requests = models.Select(m =>
            {
                // Canvases of ordinary tokens (never the mask id), then masks: what the first step of a decode sees.
                int token = m.Tokenizer.MaskId == 1 ? 2 : 1;
                var canvas = Enumerable.Repeat(token, prompt).Concat(Enumerable.Repeat(m.Tokenizer.MaskId, length - prompt)).ToArray();
                return new DenoiseRequest(1, Enumerable.Range(0, batch).ToArray(), Enumerable.Repeat((ReadOnlyMemory<int>)canvas, batch).ToArray())
                {
                    LogitsFrom = allRows ? null : Enumerable.Repeat(prompt, batch).ToArray(),
                };
            }).ToArray();
            foreach (var (m, r) in models.Zip(requests)) await m.Denoiser.ForwardAsync(r, CancellationToken.None);   // warm-up: session and buffers
            var times = new List<double>[] { [], [] };
            for (int p = 0; p < passes; p++)
                for (int k = 0; k < 2; k++)
                {
                    var clock = Stopwatch.StartNew();
                    await models[k].Denoiser.ForwardAsync(requests[k], CancellationToken.None);
                    times[k].Add(clock.Elapsed.TotalMilliseconds);
                }
            var inv = CultureInfo.InvariantCulture;
            Console.WriteLine($"engine-step: {passes} interleaved passes each, batch {batch} x length {length} (prompt {prompt}), {Environment.ProcessorCount} logical cores, threads {threads} (0: ONNX Runtime's default)");
            Console.WriteLine("| model | V | logits rows | median ms/pass | min | max | est. GFLOP/pass | est. GFLOP/s |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
            double[] medians = new double[2];
            for (int k = 0; k < 2; k++)
            {
                double[] sorted = [.. times[k].Order()];
                medians[k] = sorted[sorted.Length / 2];
                double? flops = Flops(directories[k], batch, length, allRows ? length : length - prompt);
                int rows = models[k].Denoiser.SelectsRows && !allRows ? length - prompt : length;
                Console.WriteLine($"| {directories[k]} | {models[k].Denoiser.VocabularySize} | {rows} | {medians[k].ToString("F2", inv)} | {sorted[0].ToString("F2", inv)} | {sorted[^1].ToString("F2", inv)} | " +
                    $"{(flops is double f ? (f / 1e9).ToString("F3", inv) : "-")} | {(flops is double g ? (g / 1e9 / (medians[k] / 1e3)).ToString("F1", inv) : "-")} |");
            }
            Console.WriteLine($"ratio of medians (second / first): {(medians[1] / medians[0]).ToString("F3", inv)}");
            return 0;
        }
        finally
        {
            foreach (LocalModel m in models) m.Dispose();
        }
    }

    /// <summary>
    /// Multiply-adds x 2 of one pass of an imported model (from its saber_model.json): the projections and MLP on every
    /// position, attention's two L x L products, the head on the rows asked for; null for a model without a manifest.
    /// </summary>
    private static double? Flops(string directory, int batch, int length, int rows)
    {
        string path = Path.Combine(directory, LocalModel.ManifestFileName);
        if (!File.Exists(path)) return null;
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
        JsonElement m = document.RootElement;
        double d = m.GetProperty("hidden_size").GetInt32(), layers = m.GetProperty("layers").GetInt32();
        double kv = d / m.GetProperty("heads").GetInt32() * m.GetProperty("kv_heads").GetInt32();
        double mlp = m.GetProperty("intermediate_size").GetInt32(), v = m.GetProperty("vocabulary").GetInt32();
        double perToken = layers * (d * d * 2 + d * kv * 2 + 3 * d * mlp);
        double attention = layers * 2 * (double)length * length * d;
        return 2 * batch * (length * perToken + attention + rows * d * v);
    }
}
