using System.Buffers.Binary;
using System.Text.Json;

namespace Saber.Import.Checkpoints;

/// <summary>
/// One tensor of a safetensors file: its dtype as the file spells it (<c>BF16</c>, <c>F32</c>, <c>I64</c>...), its shape
/// and where its bytes lie in the file.
/// </summary>
/// <param name="File">Path of the file holding it.</param>
/// <param name="Name">The tensor's name in the header.</param>
/// <param name="DType">The header's dtype string.</param>
/// <param name="Shape">Row-major shape (empty for a scalar).</param>
/// <param name="Offset">Absolute byte offset of the tensor's first byte in the file.</param>
/// <param name="Length">Byte length (elements × element size).</param>
public sealed record SafetensorsTensor(string File, string Name, string DType, long[] Shape, long Offset, long Length)
{
    /// <summary>The element type when the dtype is one the importer converts (F32, F16, BF16); null for any other.</summary>
    public WeightType? WeightType => DType switch
    {
        "F32" => Checkpoints.WeightType.Float32,
        "F16" => Checkpoints.WeightType.Float16,
        "BF16" => Checkpoints.WeightType.BFloat16,
        _ => null,
    };
}

/// <summary>
/// The header of a <c>.safetensors</c> file: an 8-byte little-endian header length, a JSON object naming each tensor's
/// dtype, shape and <c>data_offsets</c> (relative to the end of the header) and an optional <c>__metadata__</c> map of
/// strings, then the tensors' bytes, back to back. Reading validates everything the import relies on, so that a
/// malformed or truncated file fails here, before anything is written; each error names the file and the tensor.
/// </summary>
public sealed class SafetensorsFile
{
    /// <summary>
    /// The largest header accepted. The safetensors library caps it at 100 MB too; a real 8B checkpoint's header is a
    /// few tens of kilobytes, so a larger length is a corrupt or foreign file, and reading it would cost memory for nothing.
    /// </summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>Element sizes of the safetensors dtypes (the format's full list), in bytes.</summary>
    private static readonly Dictionary<string, int> ElementSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    private SafetensorsFile(string path, long length, long headerLength, IReadOnlyList<SafetensorsTensor> tensors,
        IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        Length = length;
        HeaderLength = headerLength;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's path as given.</summary>
    public string Path { get; }

    /// <summary>The file's size in bytes.</summary>
    public long Length { get; }

    /// <summary>Bytes before the first tensor: the 8-byte length and the JSON header.</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>The JSON header's byte length.</summary>
    public long HeaderLength { get; }

    /// <summary>The tensors in file-offset order (back to back from <see cref="DataStart"/> to the end of the file).</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Reads and validates the header of <paramref name="path"/> (the tensors' bytes are not read).</summary>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file; the message names it and the tensor at fault.</exception>
    public static SafetensorsFile Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long fileLength = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (fileLength < 8 || stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
            throw new InvalidDataException($"'{path}' is not a safetensors file: {fileLength} bytes, shorter than the 8-byte header length.");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderLength)
            throw new InvalidDataException($"'{path}' states a header of {headerLength} bytes, more than the {MaxHeaderLength} accepted: not a safetensors file, or corrupt.");
        if ((long)headerLength > fileLength - 8)
            throw new InvalidDataException($"'{path}' states a header of {headerLength} bytes but has only {fileLength - 8} after the length: truncated or not a safetensors file.");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        return Parse(path, fileLength, (long)headerLength, header);
    }

    private static SafetensorsFile Parse(string path, long fileLength, long headerLength, byte[] header)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' has a header that is not valid JSON: {e.Message}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"'{path}' has a header that is not a JSON object.");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafetensorsTensor>();
            // A duplicated name would let two entries disagree; JsonDocument keeps both, so look for it here.
            var names = new HashSet<string>(StringComparer.Ordinal);
            long dataStart = 8 + headerLength;
            foreach (JsonProperty entry in document.RootElement.EnumerateObject())
            {
                if (!names.Add(entry.Name))
                    throw new InvalidDataException($"'{path}' names '{entry.Name}' twice in its header.");
                if (entry.Name == "__metadata__")
                    ReadMetadata(path, entry.Value, metadata);
                else
                    tensors.Add(ReadTensor(path, entry, dataStart));
            }
            tensors.Sort((a, b) => a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : a.Length.CompareTo(b.Length));
            CheckContiguous(path, fileLength, dataStart, tensors);
            return new SafetensorsFile(path, fileLength, headerLength, tensors, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"'{path}': __metadata__ must be an object of strings.");
        foreach (JsonProperty item in value.EnumerateObject())
            metadata[item.Name] = item.Value.ValueKind == JsonValueKind.String
                ? item.Value.GetString()!
                : throw new InvalidDataException($"'{path}': __metadata__ entry '{item.Name}' must be a string.");
    }

    private static SafetensorsTensor ReadTensor(string path, JsonProperty entry, long dataStart)
    {
        string name = entry.Name;
        string Where() => $"'{path}', tensor '{name}'";
        JsonElement info = entry.Value;
        if (info.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{Where()}: the header entry is not an object.");
        if (!info.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{Where()}: no dtype string.");
        string dtype = dtypeElement.GetString()!;
        if (!ElementSizes.TryGetValue(dtype, out int elementSize))
            throw new InvalidDataException($"{Where()}: unknown dtype '{dtype}'.");
        if (!info.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{Where()}: no shape array.");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int i = 0;
        foreach (JsonElement dimension in shapeElement.EnumerateArray())
        {
            if (dimension.ValueKind != JsonValueKind.Number || !dimension.TryGetInt64(out long size) || size < 0)
                throw new InvalidDataException($"{Where()}: shape {shapeElement.GetRawText()} has a dimension that is not a non-negative integer.");
            shape[i++] = size;
            try
            {
                elements = checked(elements * size);
            }
            catch (OverflowException)
            {
                throw new InvalidDataException($"{Where()}: shape {shapeElement.GetRawText()} has more elements than a file can hold.");
            }
        }
        if (!info.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2 || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end)
            || begin < 0 || end < begin)
            throw new InvalidDataException($"{Where()}: data_offsets must be [begin, end] with 0 <= begin <= end.");
        long expectedLength;
        try
        {
            expectedLength = checked(elements * elementSize);
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{Where()}: shape {shapeElement.GetRawText()} has more bytes than a file can hold.");
        }
        if (end - begin != expectedLength)
            throw new InvalidDataException(
                $"{Where()}: data_offsets [{begin}, {end}] span {end - begin} bytes, but {dtype} {FormatShape(shape)} takes {expectedLength}.");
        return new SafetensorsTensor(path, name, dtype, shape, dataStart + begin, expectedLength);
    }

    /// <summary>The tensors must tile the data section exactly, as the format requires: no overlap, no gap, nothing past the end.</summary>
    private static void CheckContiguous(string path, long fileLength, long dataStart, List<SafetensorsTensor> tensors)
    {
        long expected = dataStart;
        SafetensorsTensor? previous = null;
        foreach (SafetensorsTensor tensor in tensors)
        {
            if (tensor.Offset < expected)
                throw new InvalidDataException(
                    $"'{path}', tensor '{tensor.Name}': its bytes [{tensor.Offset - dataStart}, {tensor.Offset - dataStart + tensor.Length}) overlap tensor '{previous!.Name}'.");
            if (tensor.Offset > expected)
                throw new InvalidDataException(
                    $"'{path}', tensor '{tensor.Name}': its bytes start at {tensor.Offset - dataStart}, leaving a gap after byte {expected - dataStart} of the data.");
            if (tensor.Offset + tensor.Length > fileLength)
                throw new InvalidDataException(
                    $"'{path}', tensor '{tensor.Name}': its bytes end at {tensor.Offset + tensor.Length - dataStart} of the data, past the end of the file ({fileLength - dataStart} data bytes): the file is truncated.");
            expected = tensor.Offset + tensor.Length;
            previous = tensor;
        }
        if (expected != fileLength)
            throw new InvalidDataException(
                $"'{path}' has {fileLength - expected} bytes after its last tensor: the header does not describe the whole file.");
    }

    /// <summary>A shape as the error messages print it: <c>[4096, 128]</c>.</summary>
    public static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
