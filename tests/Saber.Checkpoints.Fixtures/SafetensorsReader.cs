using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Saber.Checkpoints.Fixtures;

/// <summary>One tensor read back from disk, widened to double (exact for F32, F16 and BF16).</summary>
/// <param name="Name">The state-dict name.</param>
/// <param name="DType">The safetensors dtype it was stored in.</param>
/// <param name="Shape">Row-major shape.</param>
/// <param name="Values">The elements in row-major order.</param>
public sealed record StoredTensor(string Name, string DType, long[] Shape, double[] Values);

/// <summary>
/// Reads a checkpoint's safetensors back for <see cref="LiteralForward"/>: <c>model.safetensors</c>, or the shards
/// that <c>model.safetensors.index.json</c> names. Whole tensors in memory: meant for the tiny fixtures only. Checks
/// what a careless writer gets wrong: the header length, offsets that must tile the data section exactly, sizes that
/// must match the shapes, an index that must agree with the shards and their total size.
/// </summary>
public static class SafetensorsReader
{
    /// <summary>Every tensor of the checkpoint in <paramref name="directory"/>, by name.</summary>
    public static IReadOnlyDictionary<string, StoredTensor> ReadCheckpoint(string directory)
    {
        string index = Path.Combine(directory, CheckpointFixture.IndexFileName);
        string single = Path.Combine(directory, CheckpointFixture.SingleFileName);
        var tensors = new Dictionary<string, StoredTensor>(StringComparer.Ordinal);
        if (File.Exists(index))
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(index));
            var weightMap = document.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
            long totalSize = 0;
            foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal))
            {
                IReadOnlyList<StoredTensor> shardTensors = ReadFile(Path.Combine(directory, shard), out long dataBytes);
                foreach (StoredTensor tensor in shardTensors)
                {
                    if (!weightMap.TryGetValue(tensor.Name, out string? listed) || listed != shard)
                        throw new InvalidDataException($"{shard} holds {tensor.Name}, which the index does not place there");
                    tensors.Add(tensor.Name, tensor);
                }
                totalSize += dataBytes;
            }
            if (tensors.Count != weightMap.Count)
                throw new InvalidDataException("the index names tensors that no shard holds");
            if (document.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64() != totalSize)
                throw new InvalidDataException("the index's total_size is not the sum of the shards' data");
        }
        else if (File.Exists(single))
        {
            foreach (StoredTensor tensor in ReadFile(single, out _))
                tensors.Add(tensor.Name, tensor);
        }
        else
        {
            throw new FileNotFoundException($"neither {CheckpointFixture.IndexFileName} nor {CheckpointFixture.SingleFileName} in {directory}");
        }
        return tensors;
    }

    /// <summary>The tensors of one safetensors file and the size of its data section.</summary>
    public static IReadOnlyList<StoredTensor> ReadFile(string path, out long dataBytes)
    {
        byte[] file = File.ReadAllBytes(path);
        if (file.Length < 8)
            throw new InvalidDataException($"{path}: shorter than the header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (headerLength > (ulong)(file.Length - 8))
            throw new InvalidDataException($"{path}: header length {headerLength} runs past the file");
        int dataStart = 8 + (int)headerLength;
        dataBytes = file.Length - dataStart;

        using JsonDocument header = JsonDocument.Parse(Encoding.UTF8.GetString(file, 8, (int)headerLength));
        var entries = new List<(string Name, string DType, long[] Shape, long Begin, long End)>();
        foreach (JsonProperty property in header.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
                continue;
            JsonElement entry = property.Value;
            long[] shape = entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            long[] offsets = entry.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            entries.Add((property.Name, entry.GetProperty("dtype").GetString()!, shape, offsets[0], offsets[1]));
        }

        // The offsets must tile the data section: sorted by start, each begins where the last ended, the last ends at EOF.
        long expected = 0;
        foreach (var entry in entries.OrderBy(e => e.Begin))
        {
            if (entry.Begin != expected)
                throw new InvalidDataException($"{path}: {entry.Name} starts at {entry.Begin}, expected {expected}");
            expected = entry.End;
        }
        if (expected != dataBytes)
            throw new InvalidDataException($"{path}: tensors end at {expected} but the data section has {dataBytes} bytes");

        var tensors = new List<StoredTensor>();
        foreach (var (name, dtype, shape, begin, end) in entries)
        {
            long elements = shape.Aggregate(1L, (a, b) => a * b);
            int size = dtype switch
            {
                "F32" => 4,
                "F16" or "BF16" => 2,
                _ => throw new NotSupportedException($"{path}: {name} has dtype {dtype}; the literal pass reads F32, F16, BF16"),
            };
            if (end - begin != elements * size)
                throw new InvalidDataException($"{path}: {name} spans {end - begin} bytes, its shape needs {elements * size}");
            var values = new double[elements];
            ReadOnlySpan<byte> data = file.AsSpan(dataStart + (int)begin, (int)(end - begin));
            for (long i = 0; i < elements; i++)
            {
                ReadOnlySpan<byte> element = data.Slice((int)(i * size), size);
                values[i] = dtype switch
                {
                    "F32" => BinaryPrimitives.ReadSingleLittleEndian(element),
                    "F16" => FloatFormats.FromHalf(BinaryPrimitives.ReadUInt16LittleEndian(element)),
                    _ => FloatFormats.FromBFloat16(BinaryPrimitives.ReadUInt16LittleEndian(element)),
                };
            }
            tensors.Add(new StoredTensor(name, dtype, shape, values));
        }
        return tensors;
    }
}
