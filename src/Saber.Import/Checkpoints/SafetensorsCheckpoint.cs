using System.Text.Json;

namespace Saber.Import.Checkpoints;

/// <summary>
/// The weights of a Hugging Face checkpoint folder: one <c>model.safetensors</c>, or the shards named by
/// <c>model.safetensors.index.json</c>'s <c>weight_map</c> (tensor name → shard file). With an index, every shard's
/// header must agree with the map: a shard the map names must exist, and each tensor must live in exactly the shard
/// the map gives.
/// </summary>
public sealed class SafetensorsCheckpoint
{
    /// <summary>The single-file checkpoint's name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The sharded checkpoint's index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private SafetensorsCheckpoint(string? indexPath, IReadOnlyList<SafetensorsFile> files,
        IReadOnlyDictionary<string, SafetensorsTensor> tensors)
    {
        IndexPath = indexPath;
        Files = files;
        Tensors = tensors;
    }

    /// <summary>The index file's path; null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>The safetensors files in the order they are read (shards sorted by name).</summary>
    public IReadOnlyList<SafetensorsFile> Files { get; }

    /// <summary>Every tensor by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensor> Tensors { get; }

    /// <summary>Reads the index (when there is one) and every file's header.</summary>
    /// <exception cref="InvalidDataException">No weights, a malformed index or file, or an index and shards that disagree.</exception>
    public static SafetensorsCheckpoint Open(string directory)
    {
        string indexPath = Path.Combine(directory, IndexFileName);
        if (File.Exists(indexPath)) return OpenSharded(directory, indexPath);
        string single = Path.Combine(directory, SingleFileName);
        if (!File.Exists(single))
            throw new InvalidDataException($"'{directory}' has neither {SingleFileName} nor {IndexFileName}: no safetensors weights to import.");
        SafetensorsFile file = SafetensorsFile.Read(single);
        return new SafetensorsCheckpoint(null, [file], file.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal));
    }

    private static SafetensorsCheckpoint OpenSharded(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath);
        var tensors = new Dictionary<string, SafetensorsTensor>(StringComparer.Ordinal);
        var files = new List<SafetensorsFile>();
        foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            // The map's values are file names beside the index; a path would read outside the checkpoint.
            if (shard != Path.GetFileName(shard) || shard is "." or "..")
                throw new InvalidDataException($"'{indexPath}' names shard '{shard}', which is not a file name in the checkpoint folder.");
            string shardPath = Path.Combine(directory, shard);
            if (!File.Exists(shardPath))
                throw new InvalidDataException($"'{indexPath}' names shard '{shard}', which does not exist in '{directory}'.");
            files.Add(SafetensorsFile.Read(shardPath));
        }
        // Duplicates first: a tensor in two shards is reported as such, whichever shard the map names.
        foreach (SafetensorsTensor tensor in files.SelectMany(f => f.Tensors))
            if (!tensors.TryAdd(tensor.Name, tensor))
                throw new InvalidDataException($"Tensor '{tensor.Name}' is in two shards: '{tensors[tensor.Name].File}' and '{tensor.File}'.");
        foreach (SafetensorsTensor tensor in tensors.Values)
        {
            if (!weightMap.TryGetValue(tensor.Name, out string? mapped))
                throw new InvalidDataException($"'{tensor.File}', tensor '{tensor.Name}': not in the weight_map of '{indexPath}'.");
            if (mapped != Path.GetFileName(tensor.File))
                throw new InvalidDataException($"'{tensor.File}', tensor '{tensor.Name}': the weight_map of '{indexPath}' puts it in '{mapped}'.");
        }
        string? unmapped = weightMap.Keys.FirstOrDefault(name => !tensors.ContainsKey(name));
        if (unmapped is not null)
            throw new InvalidDataException($"'{indexPath}' maps tensor '{unmapped}' to '{weightMap[unmapped]}', which does not hold it.");
        return new SafetensorsCheckpoint(indexPath, files, tensors);
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"'{indexPath}' has no weight_map object.");
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"'{indexPath}': weight_map entry '{entry.Name}' is not a file name string.");
                if (!weightMap.TryAdd(entry.Name, entry.Value.GetString()!))
                    throw new InvalidDataException($"'{indexPath}': weight_map names tensor '{entry.Name}' twice.");
            }
            return weightMap;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{indexPath}' is not valid JSON: {e.Message}");
        }
    }
}
