using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Import;
using Saber.Import.Checkpoints;

namespace Saber.Cli;

/// <summary><c>saber import</c>: turns a Hugging Face LLaDA or Dream checkpoint folder into a model folder.</summary>
internal static class ImportCommand
{
    public const string Usage =
        "usage: saber import CHECKPOINT_DIR MODEL_DIR [--dtype fp32|fp16|bf16] [--max-positions N]\n" +
        "       saber import --cache-graph MODEL_DIR\n" +
        "Reads a Hugging Face LLaDA or Dream checkpoint (config.json, model.safetensors or its shards, tokenizer.json)\n" +
        "and writes the new folder MODEL_DIR: model.onnx, model.onnx.data, model.cache.onnx (the KV-cache graph),\n" +
        "the tokenizer files and saber_model.json.\n" +
        "  --cache-graph            instead, write (or rewrite) model.cache.onnx in the existing MODEL_DIR: a folder\n" +
        "                           imported before cache graphs existed, or a shipped model (models/tiny)\n" +
        "  --dtype fp32|fp16|bf16   type of the written weights (default: the checkpoint's own)\n" +
        "  --max-positions N        longest canvas the model accepts (default: the config's)\n" +
        "Progress goes to stderr; a summary to stdout. Nothing is left behind when the import fails or is cancelled.";

    /// <summary>A progress line each time this share of the bytes is done (and at each new shard).</summary>
    private const double ProgressStep = 0.05;

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string> { "--cache-graph" }, acceptsPositionals: true);
        IReadOnlyList<string> folders = args.Positionals;
        if (args.Flag("--cache-graph"))
        {
            if (folders.Count != 1) throw new UsageException($"--cache-graph takes one MODEL_DIR; got {folders.Count} argument(s).");
            args.RejectUnknown();
            string path = await Task.Run(() => ModelImporter.AddCacheGraph(folders[0]), cancellationToken);
            stdout.WriteLine($"wrote {path} ({new FileInfo(path).Length.ToString(CultureInfo.InvariantCulture)} bytes)");
            return 0;
        }
        if (folders.Count != 2) throw new UsageException($"Give CHECKPOINT_DIR and MODEL_DIR; got {folders.Count} argument(s).");
        WeightType? dtype = args.Choice("--dtype", ImportOptions.DTypeNames);
        int? maxPositions = args.Int("--max-positions");
        if (maxPositions is < 1) throw new UsageException($"--max-positions must be at least 1; got {maxPositions}.");
        args.RejectUnknown();

        var options = new ImportOptions { DType = dtype, MaxPositions = maxPositions };
        var importer = new ModelImporter(logging.CreateLogger<ModelImporter>());
        var progress = new ProgressLines(stderr);
        // The import is synchronous file I/O; off the caller's thread so that Ctrl+C's cancellation is seen between chunks.
        ImportResult result = await Task.Run(() => importer.Import(folders[0], folders[1], options, progress, cancellationToken), cancellationToken);
        var inv = CultureInfo.InvariantCulture;
        stdout.WriteLine($"imported {result.Tensors} tensors ({result.Spec.Family}, {ImportOptions.DTypeName(result.DType)}): " +
            $"{result.SourceBytes.ToString(inv)} bytes read, {result.DataBytes.ToString(inv)} bytes written in " +
            $"{result.Elapsed.TotalSeconds.ToString("F1", inv)} s to {result.ModelDirectory}");
        return 0;
    }

    /// <summary>Writes a line per new shard and per <see cref="ProgressStep"/> of the bytes (called on the import's thread, in order).</summary>
    private sealed class ProgressLines(TextWriter stderr) : IProgress<ImportProgress>
    {
        private string? file;
        private int step = -1;

        public void Report(ImportProgress value)
        {
            int reached = value.BytesTotal == 0 ? 0 : (int)(value.BytesDone / (value.BytesTotal * ProgressStep));
            if (value.CurrentFile == file && reached == step) return;
            file = value.CurrentFile;
            step = reached;
            double percent = value.BytesTotal == 0 ? 100 : 100.0 * value.BytesDone / value.BytesTotal;
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"import: {percent,5:F1}% ({value.BytesDone} of {value.BytesTotal} bytes) {value.CurrentFile} {value.CurrentTensor}"));
        }
    }
}
