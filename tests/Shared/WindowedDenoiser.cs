namespace Saber.Testing;

/// <summary>
/// A caching test double: it runs <paramref name="inner"/> on the whole canvas every call (so its logits are the inner
/// model's, exactly) and returns, for a canvas with a cache window, only the rows of the window's queries from
/// <see cref="DenoiseRequest.LogitsFrom"/> on, as a model's cache graph would. It reports
/// <see cref="FlopsPerQuery"/> FLOPs per computed position plus <see cref="FlopsPerLogitsRow"/> per head row, so that
/// a decode's FLOPs are known figures. Linked into the test projects that check the cache's surfaces with exact FLOP figures.
/// </summary>
internal sealed class WindowedDenoiser(IDenoiser inner, long maxCacheBytes = long.MaxValue) : ICachingDenoiser
{
    public const long FlopsPerQuery = 1000, FlopsPerLogitsRow = 10, BytesPerPosition = 64;

    private int liveCaches;
    private int windowedCalls;

    public int VocabularySize => inner.VocabularySize;

    public int MaskId => inner.MaskId;

    public int? MaxSequenceLength => inner.MaxSequenceLength;

    public long CacheBytesPerPosition => BytesPerPosition;

    public long MaxCacheBytes => maxCacheBytes;

    /// <summary>Caches made and not yet disposed.</summary>
    public int LiveCaches => Volatile.Read(ref liveCaches);

    /// <summary>Calls that held at least one cache window.</summary>
    public int WindowedCalls => Volatile.Read(ref windowedCalls);

    public long? PassFlops(int positions, int queries, int logitsRows) => FlopsPerQuery * queries + FlopsPerLogitsRow * logitsRows;

    public IDenoiserCache CreateCache(int positions)
    {
        Interlocked.Increment(ref liveCaches);
        return new Cache(positions, () => Interlocked.Decrement(ref liveCaches));
    }

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        IReadOnlyList<SequenceLogits> full = await inner.ForwardAsync(request with { Windows = null }, cancellationToken);
        if (request.Windows is not { } windows) return full;
        Interlocked.Increment(ref windowedCalls);
        var result = new SequenceLogits[full.Count];
        for (int i = 0; i < full.Count; i++)
        {
            if (windows[i] is not { } window)
            {
                result[i] = full[i];
                continue;
            }
            int from = request.LogitsFrom?[i] ?? 0;
            result[i] = RowsOf(full[i], window.Queries.Where(q => q >= from).ToArray());
        }
        return result;
    }

    /// <summary>The rows of <paramref name="positions"/> (ascending) of full logits, as float32 logits of those positions.</summary>
    public static SequenceLogits RowsOf(SequenceLogits full, int[] positions)
    {
        int v = full.Vocabulary;
        var data = new float[positions.Length * v];
        for (int r = 0; r < positions.Length; r++)
            for (int t = 0; t < v; t++)
                data[r * v + t] = full[positions[r], t];
        return SequenceLogits.FromFloat32(data, positions, v);
    }

    private sealed class Cache(int positions, Action disposed) : IDenoiserCache
    {
        private int done;

        public int Positions => positions;

        public long Bytes => positions * BytesPerPosition;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref done, 1) == 0) disposed();
        }
    }
}
