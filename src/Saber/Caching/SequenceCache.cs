namespace Saber;

/// <summary>
/// One sequence's cache plan (docs/caching.md): which positions each call computes, from the policy, the refresh rules and
/// which tokens changed since their keys and values were cached. The keys and values themselves live in the denoiser's
/// <see cref="IDenoiserCache"/>, which this disposes.
/// </summary>
internal sealed class SequenceCache : IDisposable
{
    private readonly CacheOptions options;
    private readonly IDenoiserCache handle;
    private readonly int maskId;
    private readonly int[] cachedToken;   // per canvas position: the token its cached keys and values were computed with
    private readonly bool[] computed;      // per canvas position: computed by the call being planned / just made
    private readonly List<int> queries = [];
    private bool filled;
    private int refreshedBlock = -1;
    private int callsSinceRefresh;

    private int passes, fullPasses, remasks, remasksOutside;
    private long computedPositions, canvasPositions, refreshedPositions;
    private long? refreshFlops = 0;

    public SequenceCache(CacheOptions options, IDenoiserCache handle, int canvasLength, int maskId)
    {
        if (handle.Positions != canvasLength)
            throw new ArgumentException($"A cache for {handle.Positions} positions cannot hold a canvas of {canvasLength}.", nameof(handle));
        this.options = options;
        this.handle = handle;
        this.maskId = maskId;
        cachedToken = new int[canvasLength];
        computed = new bool[canvasLength];
    }

    /// <summary>Whether the planned call computes <paramref name="position"/> (only those rows are fresh).</summary>
    public bool Computed(int position) => computed[position];

    /// <summary>The window of the next call, recorded as this sequence's computed positions.</summary>
    /// <param name="canvas">The canvas as the call will see it.</param>
    /// <param name="block">The active block's index.</param>
    /// <param name="blockStart">Canvas position of the active block's first position.</param>
    /// <param name="activeEnd">Canvas position after the active block.</param>
    /// <param name="blockLength">K, for <see cref="RemaskRefresh.Block"/>.</param>
    public CacheWindow Plan(ReadOnlySpan<int> canvas, int promptLength, int block, int blockStart, int activeEnd, int blockLength)
    {
        bool refresh = !filled || block != refreshedBlock || (options.RefreshEvery is int r && callsSinceRefresh >= r);
        queries.Clear();
        Array.Clear(computed);
        int windowEnd = options.Policy == CachePolicy.Dual ? activeEnd : canvas.Length;
        int extra = 0;
        for (int p = 0; p < canvas.Length; p++)
        {
            bool inWindow = p >= blockStart && p < windowEnd;
            // Outside the window: a masked generation position (re-masked: the draft needs its row) or a position whose
            // token changed since its keys and values were cached (re-masked or committed again).
            bool stale = !inWindow && p >= promptLength && (canvas[p] == maskId && p < blockStart || canvas[p] != cachedToken[p]);
            if (stale && !refresh && options.OnRemask == RemaskRefresh.Block)
            {
                // The whole block of a stale position joins the queries.
                int start = promptLength + (p - promptLength) / blockLength * blockLength;
                for (int q = start; q < start + blockLength; q++) computed[q] = true;
            }
            if (refresh || inWindow || stale) computed[p] = true;
        }
        for (int p = 0; p < canvas.Length; p++)
        {
            if (!computed[p]) continue;
            queries.Add(p);
            if (!(p >= blockStart && p < windowEnd)) extra++;
            cachedToken[p] = canvas[p];
        }
        if (refresh)
        {
            filled = true;
            refreshedBlock = block;
            callsSinceRefresh = 0;
            fullPasses++;
            extra = 0;
        }
        callsSinceRefresh++;
        passes++;
        computedPositions += queries.Count;
        canvasPositions += canvas.Length;
        refreshedPositions += extra;
        LastExtra = extra;
        return new CacheWindow(handle, refresh, queries.ToArray());
    }

    /// <summary>Positions the last planned call computes beyond its base window.</summary>
    public int LastExtra { get; private set; }

    /// <summary>Adds the FLOPs of the last call's <see cref="LastExtra"/> positions (null: the model does not report FLOPs).</summary>
    public void AddRefreshFlops(long? flops) => refreshFlops = refreshFlops is long sum && flops is long f ? sum + f : null;

    /// <summary>Counts a re-mask, outside the window when it lies before the active block.</summary>
    public void Remasked(int position, int blockStart)
    {
        remasks++;
        if (position < blockStart) remasksOutside++;
    }

    public CacheStatistics Statistics => new(options.Policy, passes, fullPasses, computedPositions, canvasPositions, remasks, remasksOutside,
        refreshedPositions, refreshFlops);

    /// <summary>Releases the denoiser's cache (idempotent).</summary>
    public void Dispose() => handle.Dispose();
}
