using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import;

/// <summary>
/// Copies the tensors of safetensors files into the external data file, converting each to the target type, through
/// two fixed buffers: memory does not grow with the model. Each file is read once, front to back, and hashed on the
/// way (header included), so the manifest's SHA-256 costs no second pass over the checkpoint.
/// </summary>
internal sealed class WeightCopier
{
    private readonly byte[] input;
    private readonly byte[] output;

    /// <param name="chunkBytes">Bytes read at a time (rounded down to whole float32 elements, at least one).</param>
    public WeightCopier(int chunkBytes)
    {
        int chunk = Math.Max(4, chunkBytes / 4 * 4);
        input = GC.AllocateUninitializedArray<byte>(chunk);
        // Widening float16/bfloat16 to float32 doubles the bytes.
        output = GC.AllocateUninitializedArray<byte>(2 * chunk);
    }

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
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // The header (8-byte length and JSON) counts in the hash; the tensors then tile the rest of the file.
        long position = 0;
        while (position < file.DataStart)
        {
            int read = ReadChunk(source, file, position, (int)Math.Min(input.Length, file.DataStart - position));
            hash.AppendData(input, 0, read);
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
                int read = ReadChunk(source, file, tensor.Offset + done, (int)Math.Min(input.Length, tensor.Length - done));
                hash.AppendData(input, 0, read);
                int converted = WeightConversion.Convert(input.AsSpan(0, read), from, output, target.Type);
                RandomAccess.Write(data, output.AsSpan(0, converted), target.Offset + written);
                done += read;
                written += converted;
                advance(read, tensor);
            }
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Fills the input buffer with <paramref name="count"/> bytes at <paramref name="offset"/>; a short file is an error, not a short read.</summary>
    private int ReadChunk(SafeFileHandle source, SafetensorsFile file, long offset, int count)
    {
        int filled = 0;
        while (filled < count)
        {
            int read = RandomAccess.Read(source, input.AsSpan(filled, count - filled), offset + filled);
            if (read == 0)
                throw new InvalidDataException($"'{file.Path}' ended at byte {offset + filled} while being imported: it was truncated after its header was read.");
            filled += read;
        }
        return filled;
    }
}
