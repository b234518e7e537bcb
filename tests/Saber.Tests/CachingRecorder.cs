namespace Saber.Tests;

/// <summary>
/// A caching denoiser over any denoiser, for the cache plan's tests: each cache keeps the token its "keys and values" were
/// computed with at every position, and a windowed call shows the inner model a canvas where the positions outside the
/// window hold those cached tokens (as stale keys and values would), so a cached decode really differs from an exact one.
/// Every call's canvases and windows are recorded; the rows returned are the queries' from LogitsFrom on.
/// </summary>
internal sealed class CachingRecorder(IDenoiser inner, long maxCacheBytes = long.MaxValue) : ICachingDenoiser
{
    public sealed record Call(int Step, int Sequence, int[] Canvas, bool Refresh, int[] Queries, int LogitsFrom, int Cache);

    public sealed class Cache(int id, int positions, CachingRecorder owner) : IDenoiserCache
    {
        public int Id { get; } = id;
        public int Positions { get; } = positions;
        public long Bytes => Positions * owner.CacheBytesPerPosition;
        public int[] Tokens { get; } = new int[positions];
        public bool Disposed { get; private set; }

        public void Dispose()
        {
            if (Disposed) return;
            Disposed = true;
            owner.live -= Bytes;
        }
    }

    private long live;
    public List<Call> Calls { get; } = [];
    public List<Cache> Caches { get; } = [];

    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public long CacheBytesPerPosition => 64;
    public long MaxCacheBytes => maxCacheBytes;

    /// <summary>A made-up but exact FLOP count: 1000 per query, 3 per (query, position) pair, 7 per logits row.</summary>
    public long? PassFlops(int positions, int queries, int logitsRows) => 1000L * queries + 3L * queries * positions + 7L * logitsRows;

    public IDenoiserCache CreateCache(int positions)
    {
        long bytes = positions * CacheBytesPerPosition;
        if (live + bytes > maxCacheBytes)
            throw new ArgumentOutOfRangeException(nameof(positions), positions, $"over the limit: {live + bytes} > {maxCacheBytes}");
        live += bytes;
        var cache = new Cache(Caches.Count, positions, this);
        Caches.Add(cache);
        return cache;
    }

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        var views = new ReadOnlyMemory<int>[request.Canvases.Count];
        for (int i = 0; i < views.Length; i++)
        {
            int[] canvas = request.Canvases[i].ToArray();
            views[i] = canvas;
            if (request.Windows?[i] is not CacheWindow window) continue;
            var cache = (Cache)window.Cache;
            Assert.That(cache.Disposed, Is.False, "a window uses a disposed cache");
            Assert.That(cache.Positions, Is.EqualTo(canvas.Length));
            int[] queries = window.Refresh ? Enumerable.Range(0, canvas.Length).ToArray() : window.Queries;
            Calls.Add(new Call(request.Step, request.SequenceIds[i], canvas, window.Refresh, (int[])queries.Clone(), request.LogitsFrom?[i] ?? 0, cache.Id));
            var view = (int[])cache.Tokens.Clone();
            foreach (int q in queries) view[q] = cache.Tokens[q] = canvas[q];
            views[i] = view;
        }
        IReadOnlyList<SequenceLogits> full = await inner.ForwardAsync(request with { Canvases = views, Windows = null }, cancellationToken);
        var result = new SequenceLogits[full.Count];
        for (int i = 0; i < result.Length; i++)
        {
            if (request.Windows?[i] is not CacheWindow window)
            {
                result[i] = full[i];
                continue;
            }
            int from = request.LogitsFrom?[i] ?? 0;
            result[i] = Saber.Testing.WindowedDenoiser.RowsOf(full[i],
                (window.Refresh ? Enumerable.Range(0, views[i].Length) : window.Queries).Where(p => p >= from).ToArray());
        }
        return result;
    }
}
