namespace Saber.Cli;

/// <summary>
/// Passes every call to <paramref name="inner"/> after showing its request to <paramref name="onCall"/>: <c>saber generate</c>
/// draws its progress from the canvases each call receives, so that it can decode with <see cref="CpuSampler.DecodeAsync"/>,
/// whose results (unlike the streamed steps) hold the forward FLOPs and the cache statistics. Caching, FLOPs and limits are
/// the wrapped denoiser's.
/// </summary>
internal sealed class ObservedDenoiser(IDenoiser inner, Action<DenoiseRequest> onCall) : ICachingDenoiser
{
    public int VocabularySize => inner.VocabularySize;

    public int MaskId => inner.MaskId;

    public int? MaxSequenceLength => inner.MaxSequenceLength;

    public string? CacheUnavailable => inner is ICachingDenoiser caching
        ? caching.CacheUnavailable
        : $"{inner.GetType().Name} cannot cache keys and values";

    public long CacheBytesPerPosition => (inner as ICachingDenoiser)?.CacheBytesPerPosition ?? 0;

    public long MaxCacheBytes => (inner as ICachingDenoiser)?.MaxCacheBytes ?? 0;

    public IDenoiserCache CreateCache(int positions) =>
        inner is ICachingDenoiser caching ? caching.CreateCache(positions) : throw new NotSupportedException(CacheUnavailable);

    public long? PassFlops(int positions, int queries, int logitsRows) => inner.PassFlops(positions, queries, logitsRows);

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        onCall(request);
        return inner.ForwardAsync(request, cancellationToken);
    }
}
