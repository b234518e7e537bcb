using System.Text.Json.Serialization;

namespace Saber;

/// <summary>What a sequence's cache did over its decode (docs/caching.md).</summary>
/// <param name="Policy">The policy it ran with.</param>
/// <param name="Passes">Model calls the sequence took part in (its NFE).</param>
/// <param name="FullPasses">Calls that computed every position (the first, block completions, every-R refreshes).</param>
/// <param name="ComputedPositions">Positions computed, summed over the calls (a call without a cache computes the whole canvas).</param>
/// <param name="CanvasPositions">Canvas positions, summed over the calls: <c>ComputedPositions / CanvasPositions</c> is the share computed.</param>
/// <param name="Remasks">Positions re-masked.</param>
/// <param name="RemasksOutsideWindow">Of those, positions before the active block, outside every windowed call's base window.</param>
/// <param name="RefreshedPositions">
/// Positions computed beyond the calls' base windows because their token changed since their keys and values were cached,
/// or they are masked outside the window (re-masked ones), summed over the calls: the cost of handling re-masks.
/// </param>
/// <param name="RefreshFlops">The model FLOPs of <paramref name="RefreshedPositions"/>; null when the model does not report FLOPs.</param>
public sealed record CacheStatistics(
    [property: JsonPropertyName("policy")] CachePolicy Policy,
    [property: JsonPropertyName("passes")] int Passes,
    [property: JsonPropertyName("fullPasses")] int FullPasses,
    [property: JsonPropertyName("computedPositions")] long ComputedPositions,
    [property: JsonPropertyName("canvasPositions")] long CanvasPositions,
    [property: JsonPropertyName("remasks")] int Remasks,
    [property: JsonPropertyName("remasksOutsideWindow")] int RemasksOutsideWindow,
    [property: JsonPropertyName("refreshedPositions")] long RefreshedPositions,
    [property: JsonPropertyName("refreshFlops")] long? RefreshFlops);
