using System.Text.Json;
using System.Text.Json.Nodes;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import;

/// <summary>A file of the checkpoint as imported: its name in the checkpoint folder, size and SHA-256 (lower-case hex).</summary>
public sealed record SourceFile(string Name, long Size, string Sha256);

/// <summary>
/// <c>saber_model.json</c>: what a model folder holds, for tools that need it without loading the graph — the
/// architecture, vocabulary, special ids, weight type, the KV-cache graph's file (<c>cache_graph</c>) — and where it
/// came from (each source file's size and SHA-256).
/// </summary>
public static class ModelManifest
{
    public const string FileName = "saber_model.json";

    /// <summary>The manifest's layout version; raised when a field changes meaning.</summary>
    public const int FormatVersion = 1;

    /// <summary>The key naming the KV-cache graph's file (<see cref="CacheGraph.FileName"/>), absent in folders imported before it existed.</summary>
    public const string CacheGraphKey = "cache_graph";

    /// <summary>Writes the manifest to <paramref name="path"/>.</summary>
    public static void Write(string path, ArchitectureSpec spec, WeightType dtype, string sourceFolder, IEnumerable<SourceFile> sources)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteNumber("format_version", FormatVersion);
        json.WriteString("architecture", ArchitectureName(spec.Family));
        json.WriteNumber("vocabulary", spec.Vocabulary);
        json.WriteNumber("tokenizer_vocabulary", spec.TokenizerVocabulary);
        json.WriteNumber("mask_id", spec.MaskId);
        json.WriteStartArray("eos_ids");
        foreach (int id in spec.EosIds) json.WriteNumberValue(id);
        json.WriteEndArray();
        json.WriteNumber("max_positions", spec.MaxPositions);
        json.WriteString("dtype", ImportOptions.DTypeName(dtype));
        json.WriteBoolean("shifted_logits", spec.ShiftedLogits);
        json.WriteNumber("layers", spec.Layers);
        json.WriteNumber("hidden_size", spec.HiddenSize);
        json.WriteNumber("heads", spec.Heads);
        json.WriteNumber("kv_heads", spec.KvHeads);
        json.WriteNumber("intermediate_size", spec.IntermediateSize);
        json.WriteNumber("rope_theta", spec.RopeTheta);
        json.WriteNumber("rms_norm_eps", spec.RmsNormEps);
        json.WriteBoolean("tied_embeddings", spec.TiedEmbeddings);
        json.WriteString(CacheGraphKey, CacheGraph.FileName);
        json.WriteStartObject("source");
        json.WriteString("folder", sourceFolder);
        json.WriteStartArray("files");
        foreach (SourceFile file in sources)
        {
            json.WriteStartObject();
            json.WriteString("name", file.Name);
            json.WriteNumber("size", file.Size);
            json.WriteString("sha256", file.Sha256);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>The family as the manifest and the ONNX metadata name it: <c>llada</c> or <c>dream</c>.</summary>
    public static string ArchitectureName(CheckpointFamily family) => family == CheckpointFamily.LLaDA ? "llada" : "dream";

    /// <summary>
    /// The architecture a manifest records, for rebuilding a graph of an imported model: the sizes and ids from the
    /// manifest, the biases (which it does not record) from the initializers <paramref name="graphWeights"/> of its model.onnx.
    /// </summary>
    /// <exception cref="InvalidDataException">A key is missing or has the wrong type (the message names the file and the key).</exception>
    internal static ArchitectureSpec ReadSpec(string path, IReadOnlySet<string> graphWeights)
    {
        JsonElement root;
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
        JsonElement Get(string key, JsonValueKind kind) =>
            root.ValueKind == JsonValueKind.Object && root.TryGetProperty(key, out JsonElement value) && (value.ValueKind == kind
                || kind == JsonValueKind.True && value.ValueKind == JsonValueKind.False)
                ? value
                : throw new InvalidDataException($"'{path}' lacks '{key}' (or it is not a {kind.ToString().ToLowerInvariant()}).");
        int Int(string key) => Get(key, JsonValueKind.Number).TryGetInt32(out int value) ? value
            : throw new InvalidDataException($"'{path}': '{key}' is not an integer.");
        double Double(string key) => Get(key, JsonValueKind.Number).GetDouble();
        bool Bool(string key) => Get(key, JsonValueKind.True).GetBoolean();

        string architecture = Get("architecture", JsonValueKind.String).GetString()!;
        CheckpointFamily family = architecture == ArchitectureName(CheckpointFamily.LLaDA) ? CheckpointFamily.LLaDA
            : architecture == ArchitectureName(CheckpointFamily.Dream) ? CheckpointFamily.Dream
            : throw new InvalidDataException($"'{path}': architecture '{architecture}' is neither llada nor dream.");
        BlockNames first = WeightNames.Block(family, 0);
        int[] eos = [.. Get("eos_ids", JsonValueKind.Array).EnumerateArray().Select(e => e.TryGetInt32(out int id) ? id
            : throw new InvalidDataException($"'{path}': eos_ids holds a non-integer."))];
        return new ArchitectureSpec(family, Int("layers"), Int("hidden_size"), Int("heads"), Int("kv_heads"), Int("intermediate_size"),
            Int("vocabulary"), Int("tokenizer_vocabulary"), Double("rope_theta"), Double("rms_norm_eps"),
            QkvBias: graphWeights.Contains(first.Query + ".bias"), LinearBias: graphWeights.Contains(first.AttentionOut + ".bias"),
            Bool("tied_embeddings"), Int("max_positions"), Int("mask_id"), eos, Bool("shifted_logits"));
    }

    /// <summary>Adds (or sets) <see cref="CacheGraphKey"/> in an existing manifest, through a temporary file renamed over it.</summary>
    internal static void NameCacheGraph(string path)
    {
        JsonObject manifest = JsonNode.Parse(File.ReadAllBytes(path))?.AsObject() ?? throw new InvalidDataException($"'{path}' is not a JSON object.");
        manifest[CacheGraphKey] = CacheGraph.FileName;
        string temporary = path + ".tmp-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        try
        {
            File.WriteAllText(temporary, manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }
}
