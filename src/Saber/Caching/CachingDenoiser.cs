namespace Saber;

/// <summary>
/// One sequence's cached keys and values, owned by the denoiser that made it (host memory for ONNX Runtime on the CPU;
/// device memory for a GPU engine). The sampler creates one per sequence with <see cref="ICachingDenoiser.CreateCache"/>,
/// passes it in every <see cref="CacheWindow"/> of that sequence and disposes it when the sequence ends, however it ends.
/// </summary>
public interface IDenoiserCache : IDisposable
{
    /// <summary>The canvas length it holds keys and values for.</summary>
    int Positions { get; }

    /// <summary>Bytes it holds (layers × positions × 2 × key/value width × element size).</summary>
    long Bytes { get; }
}

/// <summary>
/// A denoiser that can run a window of query positions against cached keys and values for the rest of the canvas
/// (docs/caching.md). A <see cref="DenoiseRequest"/> names, per canvas, a <see cref="CacheWindow"/>; canvases without one
/// run as <see cref="IDenoiser.ForwardAsync"/> always does.
/// </summary>
public interface ICachingDenoiser : IDenoiser
{
    /// <summary>Why this denoiser cannot cache (e.g. its model has no cache graph), or null when it can.</summary>
    string? CacheUnavailable => null;

    /// <summary>Bytes one cached position takes: layers × 2 (keys, values) × key/value width × element size.</summary>
    long CacheBytesPerPosition { get; }

    /// <summary>The most bytes the live caches of this denoiser may hold together.</summary>
    long MaxCacheBytes { get; }

    /// <summary>An empty cache for a canvas of <paramref name="positions"/> positions (its first window must refresh). Disposing it is idempotent.</summary>
    /// <exception cref="ArgumentOutOfRangeException">It would take the live caches past <see cref="MaxCacheBytes"/>; the message states both.</exception>
    IDenoiserCache CreateCache(int positions);
}

/// <summary>What a caching denoiser computes for one canvas.</summary>
/// <param name="Cache">The sequence's cache, made by the same denoiser, for the canvas's length.</param>
/// <param name="Refresh">
/// A full pass: every position is computed and its keys and values replace the cached ones (<paramref name="Queries"/> is
/// then every position).
/// </param>
/// <param name="Queries">
/// The canvas positions computed, ascending, no repeats: their keys and values are computed on the current canvas and stored in
/// the cache; every other position's keys and values come from the cache. The logits returned hold the rows of the queries
/// at or after <see cref="DenoiseRequest.LogitsFrom"/>.
/// </param>
public sealed record CacheWindow(IDenoiserCache Cache, bool Refresh, int[] Queries);

/// <summary>A decode asks for a cache policy its denoiser cannot run (e.g. a model without a cache graph); the message says why.</summary>
public sealed class CacheUnavailableException(string message) : NotSupportedException(message);

/// <summary>Creating caches for the samplers.</summary>
internal static class CachingDenoisers
{
    /// <summary>A cache for a canvas of <paramref name="positions"/>, or null when <paramref name="options"/> caches nothing.</summary>
    /// <exception cref="CacheUnavailableException">The options ask for a cache and <paramref name="denoiser"/> cannot run one.</exception>
    public static IDenoiserCache? CreateCache(IDenoiser denoiser, CacheOptions options, int positions)
    {
        if (!options.Enabled) return null;
        if (denoiser is not ICachingDenoiser { CacheUnavailable: null } caching)
            throw new CacheUnavailableException(
                $"Cache policy '{CachePolicyJsonName(options.Policy)}' needs a model with a cache graph: " +
                ((denoiser as ICachingDenoiser)?.CacheUnavailable ?? $"{denoiser.GetType().Name} cannot cache keys and values") +
                ". Use cache policy 'none' (docs/caching.md).");
        return caching.CreateCache(positions);
    }

    /// <summary>
    /// Checks, without allocating, that a canvas of <paramref name="positions"/> can be cached at all: the denoiser runs
    /// caches and one cache of that size fits its limit.
    /// </summary>
    /// <exception cref="CacheUnavailableException">The denoiser cannot run a cache.</exception>
    /// <exception cref="ArgumentOutOfRangeException">One cache of that size exceeds <see cref="ICachingDenoiser.MaxCacheBytes"/>.</exception>
    public static void CheckFits(IDenoiser denoiser, CacheOptions options, int positions)
    {
        if (!options.Enabled) return;
        if (denoiser is not ICachingDenoiser { CacheUnavailable: null } caching)
        {
            CreateCache(denoiser, options, positions);   // throws the explanation
            return;
        }
        long bytes = caching.CacheBytesPerPosition * positions;
        if (bytes > caching.MaxCacheBytes)
            throw new ArgumentOutOfRangeException(nameof(positions), positions,
                $"A cache for a canvas of {positions} positions takes {bytes} bytes ({caching.CacheBytesPerPosition} a position); the engine's cache limit is {caching.MaxCacheBytes} bytes.");
    }

    internal static string CachePolicyJsonName(CachePolicy policy) =>
        Array.Find(Json.CachePolicyJsonConverter.Names, n => n.Value == policy).Name ?? policy.ToString();
}
