using System.Text.Json;
using Saber.Import.Checkpoints;

namespace Saber.Import;

/// <summary>A file of the checkpoint as imported: its name in the checkpoint folder, size and SHA-256 (lower-case hex).</summary>
public sealed record SourceFile(string Name, long Size, string Sha256);

/// <summary>
/// <c>saber_model.json</c>: what a model folder holds, for tools that need it without loading the graph — the
/// architecture, vocabulary, special ids, weight type — and where it came from (each source file's size and SHA-256).
/// </summary>
public static class ModelManifest
{
    public const string FileName = "saber_model.json";

    /// <summary>The manifest's layout version; raised when a field changes meaning.</summary>
    public const int FormatVersion = 1;

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
}
