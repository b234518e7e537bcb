using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Saber.Checkpoints.Fixtures;

namespace Saber.Import.Tests;

/// <summary>
/// Checkpoints for the tests: the fixture library's (exact Hugging Face layout) where it can write the case, and a
/// raw safetensors writer of our own for the malformed files it cannot.
/// </summary>
internal static class TestCheckpoints
{
    /// <summary>Writes a fixture checkpoint (with the family's tokenizer files) into <paramref name="directory"/> and returns it.</summary>
    public static string Write(string directory, FixtureOptions options)
    {
        CheckpointFixture.Write(directory, options);
        return directory;
    }

    /// <summary>A tokenizer.json with only the family's mask among its added tokens: enough for the importer, which copies it as it is.</summary>
    public static void WriteStubTokenizer(string directory, Family family, int maskId)
    {
        string mask = family == Family.LLaDA ? "<|mdm_mask|>" : "<|mask|>";
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = maskId, ["content"] = mask, ["special"] = true }),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = new JsonObject(), ["merges"] = new JsonArray() },
        };
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), tokenizer.ToJsonString());
    }

    /// <summary>Edits config.json: sets each key (a null value removes it).</summary>
    public static void EditConfig(string directory, params (string Key, JsonNode? Value)[] edits)
    {
        string path = Path.Combine(directory, "config.json");
        JsonObject config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        foreach ((string key, JsonNode? value) in edits)
        {
            if (value is null) config.Remove(key);
            else config[key] = value;
        }
        File.WriteAllText(path, config.ToJsonString());
    }

    /// <summary>A safetensors file with exactly the given header JSON and data bytes (no checks: for malformed files).</summary>
    public static void WriteRaw(string path, string header, byte[] data) => WriteRaw(path, Encoding.UTF8.GetBytes(header), data);

    public static void WriteRaw(string path, byte[] header, byte[] data)
    {
        using var file = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        file.Write(length);
        file.Write(header);
        file.Write(data);
    }

    /// <summary>One tensor of <see cref="WriteSafetensors"/>: bytes filled with a pattern of its index.</summary>
    public sealed record RawTensor(string Name, string DType, long[] Shape, byte[] Data);

    /// <summary>A well-formed safetensors file of <paramref name="tensors"/>, back to back in the order given.</summary>
    public static void WriteSafetensors(string path, IEnumerable<RawTensor> tensors)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        foreach (RawTensor tensor in tensors)
        {
            header[tensor.Name] = new { dtype = tensor.DType, shape = tensor.Shape, data_offsets = new[] { data.Length, data.Length + tensor.Data.Length } };
            data.Write(tensor.Data);
        }
        WriteRaw(path, JsonSerializer.Serialize(header), data.ToArray());
    }

    /// <summary>The fixture's tensors of <paramref name="options"/> as raw F32 tensors (deterministic bytes), to rewrite a checkpoint with one thing changed.</summary>
    public static List<RawTensor> FixtureTensors(FixtureOptions options) =>
        CheckpointFixture.Tensors(options).Select((t, i) => new RawTensor(t.Name, "F32", t.Shape, Pattern(t.Elements * 4, i))).ToList();

    public static byte[] Pattern(long length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Every file and folder under <paramref name="directory"/>, relative, sorted.</summary>
    public static string[] Listing(string directory) =>
        [.. Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(directory, p)).Order(StringComparer.Ordinal)];
}
