using System.Text.Json.Serialization;

namespace Saber;

/// <summary>A position that received a token this step.</summary>
/// <param name="Position">Absolute canvas index.</param>
/// <param name="Token">The committed token id.</param>
/// <param name="Confidence"><c>c</c>, the probability of the token under the noise-free softmax.</param>
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public readonly record struct CommittedToken(
    [property: JsonPropertyName("position")] int Position,
    [property: JsonPropertyName("token")] int Token,
    [property: JsonPropertyName("confidence")] float Confidence);

/// <summary>A position that was masked again this step.</summary>
/// <param name="Position">Absolute canvas index.</param>
/// <param name="Delta">Its confidence change <c>Δ</c> (+∞ where not finite; JSON has no infinity, so it is the string <c>"Infinity"</c> there).</param>
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public readonly record struct RemaskedToken(
    [property: JsonPropertyName("position")] int Position,
    [property: JsonPropertyName("delta")] float Delta);

/// <summary>What one step did to one sequence. Both lists are sorted by position.</summary>
/// <param name="Step">1-based step number.</param>
/// <param name="Tau">The threshold the draft used (Saber only; null for other strategies).</param>
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record StepTrace(
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("tau")] double? Tau,
    [property: JsonPropertyName("committed")] IReadOnlyList<CommittedToken> Committed,
    [property: JsonPropertyName("remasked")] IReadOnlyList<RemaskedToken> Remasked);

/// <summary>One sequence's outcome.</summary>
/// <param name="Canvas">The final canvas: prompt followed by the generation region.</param>
/// <param name="PromptLength"><c>P</c>.</param>
/// <param name="Nfe">Number of steps (model calls) this sequence was active for.</param>
/// <param name="Trace">Per-step trace, or empty when tracing was off.</param>
/// <remarks>
/// In JSON: <c>canvas</c>, <c>promptLength</c>, <c>nfe</c>, <c>trace</c>. <see cref="Tokens"/> is not written
/// (it is <c>canvas[promptLength..]</c>).
/// </remarks>
public sealed record SequenceResult(
    [property: JsonPropertyName("canvas")] int[] Canvas,
    [property: JsonPropertyName("promptLength")] int PromptLength,
    [property: JsonPropertyName("nfe")] int Nfe,
    [property: JsonPropertyName("trace")] IReadOnlyList<StepTrace> Trace)
{
    /// <summary>
    /// The model FLOPs actually computed for this sequence, summed over its calls (<see cref="IDenoiser.PassFlops"/> of the
    /// positions each call computed); null when the model does not report FLOPs.
    /// </summary>
    [JsonPropertyName("forwardFlops")]
    public long? ForwardFlops { get; init; }

    /// <summary>What the cache did; null when the decode ran without one.</summary>
    [JsonPropertyName("cache")]
    public CacheStatistics? Cache { get; init; }

    /// <summary>
    /// What Saber's re-masking did (zero for the strategies that never re-mask). The CPU sampler and the engine count it
    /// for every decode; <c>CudaSampler</c> counts it from the trace it reads back, and leaves it null when it read none
    /// (a decode without trace or stream keeps its state on the device).
    /// </summary>
    [JsonPropertyName("remaskStatistics")]
    public RemaskStatistics? RemaskStatistics { get; init; }

    /// <summary>The generation region <c>[P, P+G)</c> of <see cref="Canvas"/> (a view, no copy; not serialized).</summary>
    [JsonIgnore]
    public ReadOnlySpan<int> Tokens => Canvas.AsSpan(PromptLength);
}

/// <summary>The outcome of a batch decode, one entry per prompt in input order.</summary>
/// <remarks>In JSON: <c>sequences</c> and <c>elapsed</c> (a TimeSpan string, <c>"00:00:00.0123456"</c>).</remarks>
public sealed record DecodeResult(
    [property: JsonPropertyName("sequences")] IReadOnlyList<SequenceResult> Sequences,
    [property: JsonPropertyName("elapsed")] TimeSpan Elapsed)
{
    /// <summary>Model calls made for the whole batch (the largest per-sequence NFE; not serialized).</summary>
    [JsonIgnore]
    public int Steps => Sequences.Count == 0 ? 0 : Sequences.Max(s => s.Nfe);
}

/// <summary>One sequence's change in a streamed step.</summary>
/// <param name="Sequence">Index of the sequence in the batch.</param>
/// <param name="Canvas">Snapshot of its canvas after the step.</param>
/// <param name="Trace">What the step committed and re-masked.</param>
/// <param name="Finished">True when this step decoded its last mask.</param>
public sealed record SequenceStep(
    [property: JsonPropertyName("sequence")] int Sequence,
    [property: JsonPropertyName("canvas")] int[] Canvas,
    [property: JsonPropertyName("trace")] StepTrace Trace,
    [property: JsonPropertyName("finished")] bool Finished)
{
    /// <summary>
    /// What re-masking did from the sequence's first step up to this one (its <see cref="Saber.RemaskStatistics.RemasksPending"/>
    /// are the positions re-masked and not committed since); null where the sampler does not count it. JSON <c>remaskStatistics</c>.
    /// </summary>
    [JsonPropertyName("remaskStatistics")]
    public RemaskStatistics? RemaskStatistics { get; init; }
}

/// <summary>One step of a streamed decode: the sequences that were active in it.</summary>
public sealed record DecodeStepUpdate(
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("sequences")] IReadOnlyList<SequenceStep> Sequences);

/// <summary>Decodes prompts with a masked diffusion model. The CPU reference and the CUDA sampler implement it.</summary>
public interface ISampler
{
    /// <summary>Decodes every prompt to completion.</summary>
    /// <exception cref="ArgumentException">Invalid options or prompts (spec §7); nothing has run.</exception>
    /// <exception cref="InvalidLogitsException">The model returned unusable logits; the decode stops.</exception>
    Task<DecodeResult> DecodeAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CancellationToken cancellationToken = default);

    /// <summary>Decodes every prompt, yielding after each step; cancellation is honoured between steps.</summary>
    IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CancellationToken cancellationToken = default);
}
