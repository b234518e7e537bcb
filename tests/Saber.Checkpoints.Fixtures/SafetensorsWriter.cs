using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// Writes a safetensors file as the reference implementation (huggingface/safetensors) lays it out: an 8-byte
/// little-endian header length N, N bytes of compact JSON (<c>__metadata__</c> first, then each tensor's
/// <c>dtype</c>, <c>shape</c> and <c>data_offsets</c> relative to the data section), padded with spaces so the data
/// starts on an 8-byte boundary, then the tensors' bytes back to back. The data is streamed: the header is known
/// before any weight is drawn, so memory stays one chunk whatever the file's size.
/// </summary>
internal static class SafetensorsWriter
{
    /// <summary>Bytes drawn and written at a time (a multiple of 8, so the fast fill sees whole words).</summary>
    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> in the order given, each filled by its
    /// <see cref="WeightStream"/>. Returns the data section's size in bytes.
    /// </summary>
    public static long Write(string path, IReadOnlyList<FixtureTensor> tensors, FixtureDType type, WeightFill fill, ulong seed)
    {
        byte[] header = Header(tensors, type, out long dataBytes);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        file.Write(length);
        file.Write(header);

        byte[] chunk = new byte[ChunkBytes];
        foreach (FixtureTensor tensor in tensors)
        {
            var weights = new WeightStream(tensor, type, fill, seed);
            long remaining = tensor.Elements * FloatFormats.Size(type);
            while (remaining > 0)
            {
                int count = (int)Math.Min(remaining, chunk.Length);
                Span<byte> part = chunk.AsSpan(0, count);
                weights.Fill(part);
                file.Write(part);
                remaining -= count;
            }
        }
        return dataBytes;
    }

    /// <summary>The padded header JSON (without the 8-byte length) and the data section's size.</summary>
    public static byte[] Header(IReadOnlyList<FixtureTensor> tensors, FixtureDType type, out long dataBytes)
    {
        var json = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        string dtype = FloatFormats.SafetensorsName(type);
        foreach (FixtureTensor tensor in tensors)
        {
            long end = offset + tensor.Elements * FloatFormats.Size(type);
            json.Append(",\"").Append(tensor.Name).Append("\":{\"dtype\":\"").Append(dtype).Append("\",\"shape\":[")
                .Append(string.Join(",", tensor.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture))))
                .Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',')
                .Append(end.ToString(CultureInfo.InvariantCulture)).Append("]}");
            offset = end;
        }
        json.Append('}');
        // Pad with spaces (valid JSON whitespace) to a multiple of 8, as the reference writer does.
        int padding = (8 - json.Length % 8) % 8;
        json.Append(' ', padding);
        dataBytes = offset;
        return Encoding.UTF8.GetBytes(json.ToString());
    }
}
