using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Saber.Import;

/// <summary>
/// SHA-256 of a file read in chunks, computed on a thread of its own while the caller reads and writes the next chunks:
/// hashing is the import's one CPU-heavy step (about as slow as the disk), and done in line it would nearly double the
/// time. The chunks come from a fixed pool that the caller rents from; renting waits while every buffer is queued, so
/// memory stays the pool whatever the file's size.
/// </summary>
internal sealed class ChunkHasher : IDisposable
{
    private readonly BlockingCollection<byte[]> pool;
    private readonly BlockingCollection<(byte[] Buffer, int Count)> queue = new();
    private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly Task worker;

    /// <param name="pool">The free buffers; each buffer hashed goes back to it.</param>
    public ChunkHasher(BlockingCollection<byte[]> pool)
    {
        this.pool = pool;
        worker = Task.Factory.StartNew(HashQueued, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>A free buffer to read the next chunk into (waits for the hasher when none is free).</summary>
    public byte[] Rent(CancellationToken cancellationToken) => pool.Take(cancellationToken);

    /// <summary>Queues the first <paramref name="count"/> bytes of a rented buffer, the file's next bytes; the buffer returns to the pool once hashed.</summary>
    public void Append(byte[] buffer, int count) => queue.Add((buffer, count));

    /// <summary>Waits for the queued chunks and returns the hash of all of them (lower-case hex).</summary>
    public string Finish()
    {
        queue.CompleteAdding();
        worker.GetAwaiter().GetResult();
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Stops the worker after the queued chunks (their buffers return to the pool).</summary>
    public void Dispose()
    {
        if (!queue.IsAddingCompleted) queue.CompleteAdding();
        try
        {
            worker.GetAwaiter().GetResult();
        }
        catch (CryptographicException)
        {
            // Already reported by Finish, or irrelevant: the import is failing for another reason.
        }
        hash.Dispose();
        queue.Dispose();
    }

    private void HashQueued()
    {
        foreach ((byte[] buffer, int count) in queue.GetConsumingEnumerable())
        {
            hash.AppendData(buffer, 0, count);
            pool.Add(buffer);
        }
    }
}
