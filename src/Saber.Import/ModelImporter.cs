using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Google.Protobuf;
using Microsoft.Win32.SafeHandles;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;
using Saber.Import.Onnx.Protobuf;

namespace Saber.Import;

/// <summary>
/// Imports a Hugging Face LLaDA or Dream checkpoint folder (config.json, safetensors weights, tokenizer) into a model
/// folder the Saber engines load: <c>model.onnx</c> (the graph, weights external), <c>model.onnx.data</c>,
/// <c>model.cache.onnx</c> (the KV-cache graph on the same data, <see cref="CacheGraph"/>), the tokenizer files and
/// <c>saber_model.json</c>. Everything is validated before anything big is written; the output is built in a
/// temporary sibling folder and renamed into place at the end, so a failed or cancelled import leaves nothing behind.
/// </summary>
public sealed class ModelImporter(ILogger<ModelImporter>? logger = null)
{
    public const string GraphFileName = "model.onnx";
    public const string DataFileName = "model.onnx.data";

    /// <summary>
    /// Each weight starts at a multiple of this many bytes in the data file: page-aligned, so a loader may map a weight
    /// in place, and aligned for any vector load.
    /// </summary>
    public const int DataAlignment = 4096;

    /// <summary>
    /// The tokenizer files copied as they are, when present: <c>tokenizer.json</c>, or the slow tokenizer's
    /// <c>vocab.json</c> and <c>merges.txt</c> (Dream ships those) — one of the two is required — and the configs beside.
    /// </summary>
    public static IReadOnlyList<string> TokenizerFileNames { get; } =
        [CheckpointConfig.TokenizerFileName, "vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json",
         CheckpointConfig.GenerationConfigFileName, "special_tokens_map.json"];

    private readonly ILogger logger = logger ?? NullLogger<ModelImporter>.Instance;

    /// <summary>Imports <paramref name="checkpointDirectory"/> into the new folder <paramref name="modelDirectory"/>.</summary>
    /// <param name="modelDirectory">Must not exist; its parent must.</param>
    /// <exception cref="InvalidDataException">The checkpoint is malformed or has a setting the graph does not implement (the message names the file, tensor or key).</exception>
    /// <exception cref="IOException">The model folder exists already, or reading or writing failed.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is left behind.</exception>
    public ImportResult Import(string checkpointDirectory, string modelDirectory, ImportOptions? options = null,
        IProgress<ImportProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new ImportOptions();
        var clock = Stopwatch.StartNew();
        string target = Path.GetFullPath(modelDirectory);
        CheckFolders(checkpointDirectory, target);

        ArchitectureSpec spec = CheckpointConfig.Read(checkpointDirectory, options.MaxPositions);
        string tokenizerPath = Path.Combine(checkpointDirectory, CheckpointConfig.TokenizerFileName);
        if (!File.Exists(tokenizerPath) && !(File.Exists(Path.Combine(checkpointDirectory, "vocab.json")) && File.Exists(Path.Combine(checkpointDirectory, "merges.txt"))))
            throw new InvalidDataException($"'{tokenizerPath}' does not exist (nor vocab.json with merges.txt): the model folder needs the checkpoint's tokenizer.");
        var checkpoint = SafetensorsCheckpoint.Open(checkpointDirectory);
        IReadOnlyList<TensorShape> shapes = ExpectedTensors.Check(spec, checkpoint);
        WeightType dtype = options.DType ?? CheckpointType(checkpoint, shapes);
        (Dictionary<string, ExternalTensor> layout, long dataBytes) = Layout(shapes, dtype);
        long sourceBytes = checkpoint.Files.Sum(f => f.Tensors.Sum(t => t.Length));
        logger.LogInformation("Importing {Family} checkpoint {Checkpoint}: {Layers} layers, hidden {Hidden}, vocabulary {Vocabulary}, {Tensors} tensors in {Files} file(s), {Bytes} bytes, as {DType}",
            spec.Family, checkpointDirectory, spec.Layers, spec.HiddenSize, spec.Vocabulary, shapes.Count, checkpoint.Files.Count, sourceBytes, ImportOptions.DTypeName(dtype));

        CheckFreeSpace(target, dataBytes);

        string temporary = $"{target}.tmp-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        Directory.CreateDirectory(temporary);
        try
        {
            var sources = new List<SourceFile>();
            sources.Add(HashFile(checkpointDirectory, CheckpointConfig.ConfigFileName));
            if (checkpoint.IndexPath is not null) sources.Add(HashFile(checkpointDirectory, SafetensorsCheckpoint.IndexFileName));
            Dictionary<string, string> metadata = Metadata(spec, checkpointDirectory);
            using (var graph = new FileStream(Path.Combine(temporary, GraphFileName), FileMode.CreateNew, FileAccess.Write))
                TransformerGraph.Write(graph, spec, layout, metadata);
            using (var cacheGraph = new FileStream(Path.Combine(temporary, CacheGraph.FileName), FileMode.CreateNew, FileAccess.Write))
                CacheGraph.Write(cacheGraph, spec, layout, CacheGraph.Metadata(spec, metadata));
            sources.AddRange(CopyWeights(checkpoint, layout, dataBytes, Path.Combine(temporary, DataFileName), options.ChunkBytes, progress, sourceBytes, cancellationToken));
            foreach (string name in TokenizerFileNames)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (File.Exists(Path.Combine(checkpointDirectory, name)))
                    sources.Add(CopyFile(checkpointDirectory, temporary, name));
            }
            ModelManifest.Write(Path.Combine(temporary, ModelManifest.FileName), spec, dtype, FolderName(checkpointDirectory), sources);
            cancellationToken.ThrowIfCancellationRequested();
            Directory.Move(temporary, target);
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
        var result = new ImportResult(target, spec, dtype, layout.Count, sourceBytes, dataBytes, clock.Elapsed);
        logger.LogInformation("Imported {Tensors} tensors ({Bytes} bytes) into {Target} in {Seconds:F1} s",
            result.Tensors, result.DataBytes, target, result.Elapsed.TotalSeconds);
        return result;
    }

    /// <summary>
    /// Writes <c>model.cache.onnx</c> (<see cref="CacheGraph"/>) into an existing model folder, replacing one that is there:
    /// an imported folder (it has <c>saber_model.json</c>; the cache graph is rebuilt from the manifest and model.onnx's
    /// external weight entries, and the manifest then names it), or a shipped model of <c>tools/make_tiny_model.py</c>
    /// (weights embedded in model.onnx, copied into the cache graph). Written to a temporary file and renamed into place.
    /// </summary>
    /// <returns>The cache graph's path.</returns>
    /// <exception cref="InvalidDataException">model.onnx or the manifest is malformed or not of a model this can rebuild (the message names the file).</exception>
    /// <exception cref="IOException">model.onnx does not exist, or reading or writing failed.</exception>
    public static string AddCacheGraph(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        string graphPath = Path.Combine(modelDirectory, GraphFileName);
        if (!File.Exists(graphPath))
            throw new FileNotFoundException($"'{graphPath}' does not exist: give a model folder (model.onnx, and saber_model.json for an imported model).", graphPath);
        ModelProto plain;
        try
        {
            plain = ModelProto.Parser.ParseFrom(File.ReadAllBytes(graphPath));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"'{graphPath}' is not an ONNX model: {e.Message}", e);
        }
        string manifestPath = Path.Combine(modelDirectory, ModelManifest.FileName);
        bool imported = File.Exists(manifestPath);
        string target = Path.Combine(modelDirectory, CacheGraph.FileName);
        string temporary = $"{target}.tmp-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                if (imported)
                {
                    Dictionary<string, ExternalTensor> weights = ExternalWeights(plain, graphPath);
                    ArchitectureSpec spec = ModelManifest.ReadSpec(manifestPath, plain.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal));
                    CacheGraph.Write(stream, spec, weights, CacheGraph.Metadata(spec, plain.MetadataProps.Select(e => KeyValuePair.Create(e.Key, e.Value))));
                }
                else
                {
                    ShippedModel.Contents shipped = ShippedModel.Read(plain, graphPath);
                    CacheGraph.Write(stream, shipped.Spec, shipped.Options, CacheGraph.Metadata(shipped.Spec, shipped.Metadata));
                }
            }
            File.Move(temporary, target, overwrite: true);
        }
        catch (ArgumentException e)
        {
            // A missing or misshapen weight (the manifest and the graph disagree): the folder's fault, not the caller's.
            throw new InvalidDataException(imported
                ? $"'{graphPath}' and '{manifestPath}' do not describe one model: {e.Message}"
                : $"'{graphPath}' is not a model tools/make_tiny_model.py wrote: {e.Message}", e);
        }
        finally
        {
            File.Delete(temporary);
        }
        if (imported) ModelManifest.NameCacheGraph(manifestPath);
        return target;
    }

    /// <summary>The external initializers of an imported model.onnx: each weight's type, shape and place in the data file.</summary>
    private static Dictionary<string, ExternalTensor> ExternalWeights(ModelProto model, string path)
    {
        var weights = new Dictionary<string, ExternalTensor>(StringComparer.Ordinal);
        foreach (TensorProto tensor in model.Graph?.Initializer ?? [])
        {
            if (tensor.DataLocation != TensorProto.Types.DataLocation.External) continue;
            Dictionary<string, string> entries = tensor.ExternalData.ToDictionary(e => e.Key, e => e.Value);
            WeightType type = (TensorProto.Types.DataType)tensor.DataType switch
            {
                TensorProto.Types.DataType.Float => WeightType.Float32,
                TensorProto.Types.DataType.Float16 => WeightType.Float16,
                TensorProto.Types.DataType.Bfloat16 => WeightType.BFloat16,
                _ => throw new InvalidDataException($"'{path}': weight '{tensor.Name}' has element type {tensor.DataType}, not float32, float16 or bfloat16."),
            };
            long Number(string key) => entries.TryGetValue(key, out string? text) && long.TryParse(text, CultureInfo.InvariantCulture, out long value) ? value
                : throw new InvalidDataException($"'{path}': weight '{tensor.Name}' lacks the external data entry '{key}'.");
            string location = entries.TryGetValue("location", out string? file) ? file
                : throw new InvalidDataException($"'{path}': weight '{tensor.Name}' lacks the external data entry 'location'.");
            weights.Add(tensor.Name, new ExternalTensor(tensor.Name, type, [.. tensor.Dims], location, Number("offset"), Number("length")));
        }
        return weights;
    }

    /// <summary>The ONNX metadata the engines read (<c>mask_id</c>, <c>max_positions</c>, <c>logits_shift</c>...).</summary>
    public static Dictionary<string, string> Metadata(ArchitectureSpec spec, string checkpointDirectory) => new(StringComparer.Ordinal)
    {
        ["mask_id"] = spec.MaskId.ToString(CultureInfo.InvariantCulture),
        ["max_positions"] = spec.MaxPositions.ToString(CultureInfo.InvariantCulture),
        ["logits_shift"] = spec.ShiftedLogits ? "1" : "0",
        ["architecture"] = ModelManifest.ArchitectureName(spec.Family),
        ["eos_ids"] = string.Join(",", spec.EosIds.Select(id => id.ToString(CultureInfo.InvariantCulture))),
        ["source"] = FolderName(checkpointDirectory),
    };

    /// <summary>The checkpoint folder's own name (what <c>source</c> records), also for a path given with a trailing separator.</summary>
    private static string FolderName(string directory) => Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));

    private static void CheckFolders(string checkpointDirectory, string target)
    {
        if (!Directory.Exists(checkpointDirectory))
            throw new DirectoryNotFoundException($"The checkpoint folder '{checkpointDirectory}' does not exist.");
        if (Directory.Exists(target) || File.Exists(target))
            throw new IOException($"'{target}' already exists; import writes a new folder and never overwrites one.");
        string? parent = Path.GetDirectoryName(target);
        if (parent is null || !Directory.Exists(parent))
            throw new DirectoryNotFoundException($"The folder '{parent}' that should hold '{target}' does not exist.");
    }

    /// <summary>
    /// Refuses at once an import the disk cannot hold, rather than after writing gigabytes (the data file is allocated in
    /// full when created). Where the free space cannot be read the copy goes ahead and a full disk fails it, as any write.
    /// </summary>
    internal static void CheckFreeSpace(string target, long dataBytes)
    {
        long free;
        try
        {
            free = new DriveInfo(Path.GetDirectoryName(target)!).AvailableFreeSpace;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            return;
        }
        if (free < dataBytes)
            throw new IOException($"'{Path.GetDirectoryName(target)}' has {free} bytes free; the model's weights need {dataBytes}.");
    }

    /// <summary>The checkpoint's one weight type, the default target type.</summary>
    private static WeightType CheckpointType(SafetensorsCheckpoint checkpoint, IReadOnlyList<TensorShape> shapes)
    {
        WeightType[] types = [.. shapes.Select(s => s.Type).Distinct()];
        if (types.Length == 1) return types[0];
        TensorShape first = shapes[0], other = shapes.First(s => s.Type != first.Type);
        throw new InvalidDataException(
            $"'{checkpoint.IndexPath ?? checkpoint.Files[0].Path}' mixes weight types ('{first.Name}' {first.Type}, '{other.Name}' {other.Type}); choose the output type with --dtype.");
    }

    /// <summary>
    /// Places every tensor in the data file in the model's order (<see cref="ExpectedTensors.For"/>), each at an aligned
    /// offset: the layout depends on the architecture alone, not on how the checkpoint is sharded, so one model gives one
    /// data file. The copy still reads each shard front to back and writes each chunk at its tensor's place.
    /// </summary>
    private static (Dictionary<string, ExternalTensor> Layout, long Bytes) Layout(IReadOnlyList<TensorShape> shapes, WeightType dtype)
    {
        var layout = new Dictionary<string, ExternalTensor>(StringComparer.Ordinal);
        long offset = 0;
        foreach (TensorShape tensor in shapes)
        {
            offset = (offset + DataAlignment - 1) / DataAlignment * DataAlignment;
            long length = tensor.Elements * WeightConversion.ElementSize(dtype);
            layout.Add(tensor.Name, new ExternalTensor(tensor.Name, dtype, tensor.Shape, DataFileName, offset, length));
            offset += length;
        }
        return (layout, offset);
    }

    private IEnumerable<SourceFile> CopyWeights(SafetensorsCheckpoint checkpoint, IReadOnlyDictionary<string, ExternalTensor> layout,
        long dataBytes, string dataPath, int chunkBytes, IProgress<ImportProgress>? progress, long sourceBytes, CancellationToken cancellationToken)
    {
        using var copier = new WeightCopier(chunkBytes);
        var sources = new List<SourceFile>();
        using SafeFileHandle data = File.OpenHandle(dataPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.None, dataBytes);
        long done = 0;
        foreach (SafetensorsFile file in checkpoint.Files)
        {
            string name = Path.GetFileName(file.Path);
            logger.LogDebug("Copying {File} ({Tensors} tensors, {Bytes} bytes)", name, file.Tensors.Count, file.Length);
            string sha256 = copier.Copy(file, layout, data, (bytes, tensor) =>
            {
                done += bytes;
                progress?.Report(new ImportProgress(done, sourceBytes, name, tensor.Name));
            }, cancellationToken);
            sources.Add(new SourceFile(name, file.Length, sha256));
        }
        // Padding after the last weight is not written; the length is set so that the file ends where the layout does.
        RandomAccess.SetLength(data, dataBytes);
        return sources;
    }

    /// <summary>Size and SHA-256 of a small file of the checkpoint (config, index).</summary>
    private static SourceFile HashFile(string directory, string name)
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(directory, name));
        return new SourceFile(name, bytes.Length, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    /// <summary>Copies a small file (a tokenizer file) as it is, hashing the bytes copied.</summary>
    private static SourceFile CopyFile(string from, string to, string name)
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(from, name));
        File.WriteAllBytes(Path.Combine(to, name), bytes);
        return new SourceFile(name, bytes.Length, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    private void DeleteQuietly(string directory)
    {
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("Could not delete the unfinished model folder {Folder}: {Message}", directory, e.Message);
        }
    }
}
