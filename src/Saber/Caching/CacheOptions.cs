using System.Text.Json.Serialization;
using Saber.Json;

namespace Saber;

/// <summary>
/// Which keys and values a decode reuses between model calls (docs/caching.md). JSON: <c>"none"</c>, <c>"prefix"</c>,
/// <c>"dual"</c> (the CLI's <c>--cache</c> names).
/// </summary>
[JsonConverter(typeof(CachePolicyJsonConverter))]
public enum CachePolicy
{
    /// <summary>Every call runs the whole canvas: the exact decode, bit-identical to a decode without caching.</summary>
    None,

    /// <summary>
    /// Fast-dLLM's prefix cache: the prompt and the blocks before the active one come from the cache; each call computes
    /// the active block and everything after it.
    /// </summary>
    Prefix,

    /// <summary>Fast-dLLM's dual cache: the positions after the active block come from the cache too; each call computes the active block.</summary>
    Dual,
}

/// <summary>
/// What a call recomputes for a position outside the window whose token changed since its keys and values were cached
/// (Saber re-masks committed tokens of earlier blocks, and commits them again later). JSON: <c>"positions"</c>, <c>"block"</c>.
/// </summary>
[JsonConverter(typeof(RemaskRefreshJsonConverter))]
public enum RemaskRefresh
{
    /// <summary>The changed positions join the next call's queries, nothing else.</summary>
    Positions,

    /// <summary>Every position of a changed position's block joins the next call's queries.</summary>
    Block,
}

/// <summary>
/// How a decode caches the model's keys and values (docs/caching.md). With <see cref="CachePolicy.None"/> (the default)
/// nothing is cached and a decode is exactly the uncached one. With a cache a decode is approximate (cached keys and values
/// were computed on an older canvas), deterministic, and does not depend on batch composition; it needs a model with a cache
/// graph (<see cref="ICachingDenoiser"/>).
/// </summary>
/// <param name="Policy">What is cached.</param>
/// <param name="RefreshEvery">
/// <c>R</c>: besides the refresh when a block completes, a full pass every <c>R</c> calls since the last one; null: only on
/// block completion. At least 1 (1 makes every call a full pass).
/// </param>
/// <param name="OnRemask">What is recomputed for a re-masked (or re-committed) position outside the window.</param>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CacheOptions(
    [property: JsonPropertyName("policy")] CachePolicy Policy = CachePolicy.None,
    [property: JsonPropertyName("refreshEvery")] int? RefreshEvery = null,
    [property: JsonPropertyName("onRemask")] RemaskRefresh OnRemask = RemaskRefresh.Positions)
{
    /// <summary>No caching.</summary>
    public static CacheOptions None { get; } = new();

    /// <summary>
    /// The name of each <see cref="CachePolicy"/> wherever cache options are written: JSON, the CLI's <c>--cache</c>, configuration
    /// and chat options (<c>none</c>, <c>prefix</c>, <c>dual</c>).
    /// </summary>
    public static IReadOnlyDictionary<string, CachePolicy> PolicyNames { get; } = new Dictionary<string, CachePolicy>
    {
        ["none"] = CachePolicy.None,
        ["prefix"] = CachePolicy.Prefix,
        ["dual"] = CachePolicy.Dual,
    };

    /// <summary>The name of each <see cref="RemaskRefresh"/> wherever cache options are written (<c>positions</c>, <c>block</c>).</summary>
    public static IReadOnlyDictionary<string, RemaskRefresh> OnRemaskNames { get; } = new Dictionary<string, RemaskRefresh>
    {
        ["positions"] = RemaskRefresh.Positions,
        ["block"] = RemaskRefresh.Block,
    };

    /// <summary>The name of <paramref name="policy"/> in <see cref="PolicyNames"/>.</summary>
    public static string Name(CachePolicy policy) => PolicyNames.First(p => p.Value == policy).Key;

    /// <summary>The name of <paramref name="rule"/> in <see cref="OnRemaskNames"/>.</summary>
    public static string Name(RemaskRefresh rule) => OnRemaskNames.First(r => r.Value == rule).Key;

    /// <summary>Whether anything is cached.</summary>
    [JsonIgnore]
    public bool Enabled => Policy != CachePolicy.None;

    internal void Validate()
    {
        if (!Enum.IsDefined(Policy))
            throw new ArgumentOutOfRangeException(nameof(Policy), Policy, $"Unknown cache policy {Policy}.");
        if (!Enum.IsDefined(OnRemask))
            throw new ArgumentOutOfRangeException(nameof(OnRemask), OnRemask, $"Unknown re-mask refresh {OnRemask}.");
        if (RefreshEvery is int r && r < 1)
            throw new ArgumentOutOfRangeException(nameof(RefreshEvery), r, $"The cache's refresh interval R must be >= 1 call; got {r}.");
    }
}
