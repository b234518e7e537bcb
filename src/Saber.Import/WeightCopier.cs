using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import;

/// <summary>
/// Copies the tensors of safetensors files into the external data file, converting each to the target type, through
/// a fixed pool of buffers: memory does not grow with the model. Each file is read once, front to back, and hashed on
/// the way (header included, by a <see cref="ChunkHasher"/> beside the copy), so the manifest's SHA-256 costs no second
/// pass over the checkpoint.
/// </summary>
internal sealed class WeightCopier : IDisposable
{
    /// <summary>Input buffers in flight: one being read and written, the rest queued for the hasher.</summary>
    private const int InputBuffers = 4;

    private readonly BlockingCollection<byte[]> inputs = new();
    private readonly byte[] output;

    /// <param name="chunkBytes">Bytes read at a time (rounded down to whole float32 elements, at least one).</param>
    public WeightCopier(int chunkBytes)
    {
        int chunk = Math.Max(4, chunkBytes / 4 * 4);
        for (int i = 0; i < InputBuffers; i++) inputs.Add(GC.AllocateUninitializedArray<byte>(chunk));
        // Widening float16/bfloat16 to float32 doubles the bytes.
        output = GC.AllocateUninitializedArray<byte>(2 * chunk);
    }

    public void Dispose() => inputs.Dispose();

    /// <summary>
    /// Copies every tensor of <paramref name="file"/> to its place in <paramref name="data"/> (given by <paramref name="layout"/>)
    /// and returns the file's SHA-256 (lower-case hex). <paramref name="advance"/> is told the source bytes of each chunk copied.
    /// </summary>
    public string Copy(SafetensorsFile file, IReadOnlyDictionary<string, ExternalTensor> layout, SafeFileHandle data,
        Action<long, SafetensorsTensor> advance, CancellationToken cancellationToken)
    {
        using SafeFileHandle source = File.OpenHandle(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        if (RandomAccess.GetLength(source) != file.Length)
            throw new InvalidDataException($"'{file.Path}' changed size while being imported ({file.Length} bytes when its header was read).");
        using var hasher = new ChunkHasher(inputs);
        // The header (8-byte length and JSON) counts in the hash; the tensors then tile the rest of the file.
        for (long position = 0; position < file.DataStart;)
        {
            byte[] chunk = hasher.Rent(cancellationToken);
            int read = ReadChunk(source, file, chunk, position, (int)Math.Min(chunk.Length, file.DataStart - position));
            hasher.Append(chunk, read);
            position += read;
        }
        foreach (SafetensorsTensor tensor in file.Tensors)
        {
            ExternalTensor target = layout[tensor.Name];
            WeightType from = tensor.WeightType!.Value;
            long written = 0;
            for (long done = 0; done < tensor.Length;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                byte[] chunk = hasher.Rent(cancellationToken);
                int read = ReadChunk(source, file, chunk, tensor.Offset + done, (int)Math.Min(chunk.Length, tensor.Length - done));
                // The same type is written straight from the input buffer: no copy in between.
                ReadOnlySpan<byte> converted = from == target.Type
                    ? chunk.AsSpan(0, read)
                    : output.AsSpan(0, WeightConversion.Convert(chunk.AsSpan(0, read), from, output, target.Type));
                RandomAccess.Write(data, converted, target.Offset + written);
                hasher.Append(chunk, read);
                done += read;
                written += converted.Length;
                advance(read, tensor);
            }
        }
        return hasher.Finish();
    }

    /// <summary>Fills <paramref name="buffer"/> with <paramref name="count"/> bytes at <paramref name="offset"/>; a short file is an error, not a short read.</summary>
    private static int ReadChunk(SafeFileHandle source, SafetensorsFile file, byte[] buffer, long offset, int count)
    {
        int filled = 0;
        while (filled < count)
        {
            int read = RandomAccess.Read(source, buffer.AsSpan(filled, count - filled), offset + filled);
            if (read == 0)
                throw new InvalidDataException($"'{file.Path}' ended at byte {offset + filled} while being imported: it was truncated after its header was read.");
            filled += read;
        }
        return filled;
    }
}
