using System.Text.Json.Serialization;
using Saber.Json;

namespace Saber;

/// <summary>The two readings of Saber in the specification. JSON: <c>"reference"</c>, <c>"paper"</c> (the CLI's names).</summary>
[JsonConverter(typeof(SaberVariantJsonConverter))]
public enum SaberVariant
{
    /// <summary>The authors' released code: tracks <c>c</c> everywhere; τ counts stale commit confidences of re-masked positions.</summary>
    Reference,
    /// <summary>The paper's text: tracks the committed token's probability; τ over live tokens; fresh drafts protected from re-masking.</summary>
    Paper,
}

/// <summary>
/// Confidence metrics of the low-confidence family (larger is more confident). JSON: <c>"maxprob"</c>,
/// <c>"margin"</c>, <c>"negentropy"</c>, <c>"random"</c> (the CLI's names).
/// </summary>
[JsonConverter(typeof(ConfidenceMetricJsonConverter))]
public enum ConfidenceMetric
{
    MaxProb,
    Margin,
    NegEntropy,
    Random,
}

/// <summary>
/// A decoding strategy and its parameters. In JSON an object whose <c>"type"</c> names the strategy
/// (<c>"saber"</c>, <c>"low-confidence"</c>, <c>"threshold"</c>, <c>"factor"</c>; see <see cref="DecodingStrategyJsonConverter"/>).
/// </summary>
[JsonConverter(typeof(DecodingStrategyJsonConverter))]
public abstract record DecodingStrategy
{
    private protected DecodingStrategy() { }

    internal abstract void Validate(int generationLength, int blockLength);
}

/// <summary>Saber: adaptive threshold plus backtracking re-masking (spec §3).</summary>
/// <param name="Variant">Which reading of the method.</param>
/// <param name="MinTokensPerStep"><c>n ≥ 1</c>: the draft holds at least this many tokens.</param>
/// <param name="RemaskDivisor"><c>μ ≥ 1</c>: divides the draft size into the re-mask count.</param>
/// <param name="Backtracking">False reproduces the "no backtracking" ablation (step 7 skipped).</param>
/// <param name="FixedThreshold">Set, it replaces τ in the draft by this constant in (0, 1] (ablation).</param>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record SaberStrategy(
    [property: JsonPropertyName("variant")] SaberVariant Variant = SaberVariant.Reference,
    [property: JsonPropertyName("minTokensPerStep")] int MinTokensPerStep = 2,
    [property: JsonPropertyName("remaskDivisor")] int RemaskDivisor = 8,
    [property: JsonPropertyName("backtracking")] bool Backtracking = true,
    [property: JsonPropertyName("fixedThreshold")] float? FixedThreshold = null) : DecodingStrategy
{
    internal override void Validate(int generationLength, int blockLength)
    {
        if (MinTokensPerStep < 1)
            throw new ArgumentOutOfRangeException(nameof(MinTokensPerStep), MinTokensPerStep, $"Saber's minimum tokens per step n must be >= 1; got {MinTokensPerStep}.");
        if (RemaskDivisor < 1)
            throw new ArgumentOutOfRangeException(nameof(RemaskDivisor), RemaskDivisor, $"Saber's remask divisor mu must be >= 1; got {RemaskDivisor}.");
        if (FixedThreshold is float theta)
            DecodeOptions.ValidateThreshold(theta, nameof(FixedThreshold));
        if (!Enum.IsDefined(Variant))
            throw new ArgumentOutOfRangeException(nameof(Variant), Variant, $"Unknown Saber variant {Variant}.");
    }
}

/// <summary>LLaDA's low-confidence re-masking: a fixed number of steps, top tokens by a metric (spec §4).</summary>
/// <param name="Steps"><c>S</c>, a positive multiple of the number of blocks; NFE is exactly <c>S</c>.</param>
/// <param name="Metric">Ranking metric.</param>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record LowConfidenceStrategy(
    [property: JsonPropertyName("steps"), JsonRequired] int Steps,
    [property: JsonPropertyName("metric")] ConfidenceMetric Metric = ConfidenceMetric.MaxProb) : DecodingStrategy
{
    /// <summary>
    /// <c>S ≤ MaxStepsPerPosition · G</c>: every step calls the model, and past <c>S = G</c> the extra steps commit
    /// nothing (spec §4), so a larger <c>S</c> is a mistake that would run for hours, not a decode.
    /// </summary>
    public const int MaxStepsPerPosition = 16;

    internal override void Validate(int generationLength, int blockLength)
    {
        int blocks = generationLength / blockLength;
        if (Steps <= 0 || Steps % blocks != 0)
            throw new ArgumentOutOfRangeException(nameof(Steps), Steps, $"Low-confidence steps S must be a positive multiple of the block count {blocks} (G={generationLength}, K={blockLength}); got {Steps}.");
        if (Steps > (long)MaxStepsPerPosition * generationLength)
            throw new ArgumentOutOfRangeException(nameof(Steps), Steps,
                $"Low-confidence steps S must be at most {MaxStepsPerPosition} x G = {(long)MaxStepsPerPosition * generationLength} (steps past G commit nothing); got {Steps}.");
        if (!Enum.IsDefined(Metric))
            throw new ArgumentOutOfRangeException(nameof(Metric), Metric, $"Unknown confidence metric {Metric}.");
    }
}

/// <summary>Fast-dLLM's threshold rule: commit every masked position with <c>c ≥ θ</c>, at least one (spec §5).</summary>
/// <param name="Threshold"><c>θ</c> in (0, 1].</param>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record ThresholdStrategy([property: JsonPropertyName("threshold")] float Threshold = 0.9f) : DecodingStrategy
{
    internal override void Validate(int generationLength, int blockLength) =>
        DecodeOptions.ValidateThreshold(Threshold, nameof(Threshold));
}

/// <summary>
/// Fast-dLLM's factor rule: rank the masked positions of the block by <c>c</c>; the <c>i</c>-th needs
/// <c>c ≥ 1 − F/(i + 1)</c> (rank 1 always passes); commit the passing prefix (docs/strategies.md).
/// </summary>
/// <param name="Factor"><c>F</c>, finite and &gt; 0 (Fast-dLLM's default 1).</param>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record FactorStrategy([property: JsonPropertyName("factor")] float Factor = 1.0f) : DecodingStrategy
{
    internal override void Validate(int generationLength, int blockLength)
    {
        if (!(float.IsFinite(Factor) && Factor > 0f))
            throw new ArgumentOutOfRangeException(nameof(Factor), Factor, $"Factor F must be finite and > 0; got {Factor}.");
    }

    /// <summary>The threshold of rank <paramref name="rank"/> (1-based): <c>1 − F/(rank + 1)</c> in double, as the spec computes it.</summary>
    internal static double RankThreshold(float factor, int rank) => 1.0 - (double)factor / (rank + 1);
}

/// <summary>
/// Everything a decode needs besides the model and the prompts. Serializable with System.Text.Json
/// (camelCase names, unknown properties rejected; see <see cref="SaberJson"/>); a deserialized value is
/// checked like any other, by <see cref="Validate"/> when a sampler receives it.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
[JsonNumberHandling(JsonNumberHandling.AllowNamedFloatingPointLiterals)]
public sealed record DecodeOptions
{
    /// <summary>
    /// The largest <c>G</c> accepted (2^20): far beyond any diffusion LM's context, and small enough that a
    /// sequence's decode state (about 40 bytes a position) stays within tens of MiB.
    /// </summary>
    public const int MaxGenerationLength = 1 << 20;

    /// <summary><c>G</c>: number of generated positions after each prompt, in <c>[1, <see cref="MaxGenerationLength"/>]</c>.</summary>
    [JsonPropertyName("generationLength")]
    public required int GenerationLength { get; init; }

    /// <summary><c>K</c>: semi-autoregressive block length; null means one block (<c>K = G</c>).</summary>
    [JsonPropertyName("blockLength")]
    public int? BlockLength { get; init; }

    private DecodingStrategy strategy = new SaberStrategy();

    /// <summary>The strategy and its parameters (default: <see cref="SaberStrategy"/> with its defaults).</summary>
    [JsonIgnore]
    public DecodingStrategy Strategy { get => strategy; init => strategy = value; }

    /// <summary>
    /// <see cref="Strategy"/> for System.Text.Json. A settable property, not an init-only one: the source generator
    /// passes every init-only property to the object initializer, so a JSON object without <c>"strategy"</c> would
    /// get null instead of the default.
    /// </summary>
    [JsonInclude]
    [JsonPropertyName("strategy")]
    internal DecodingStrategy StrategyForJson { get => strategy; set => strategy = value; }

    /// <summary><c>T ≥ 0</c>; above zero, predictions are Gumbel-max draws (see <see cref="RandomLayout"/>).</summary>
    [JsonPropertyName("temperature")]
    public float Temperature { get; init; }

    /// <summary>Philox key for the Gumbel draws and the random metric.</summary>
    [JsonPropertyName("seed")]
    public ulong Seed { get; init; }

    /// <summary>Record a per-step trace (τ, commits, re-masks) in the result.</summary>
    [JsonPropertyName("trace")]
    public bool Trace { get; init; }

    private CacheOptions cache = CacheOptions.None;

    /// <summary>How keys and values are cached between model calls (default: not at all, the exact decode; docs/caching.md).</summary>
    [JsonIgnore]
    public CacheOptions Cache { get => cache; init => cache = value; }

    /// <summary>
    /// <see cref="Cache"/> for System.Text.Json (settable for the reason <see cref="StrategyForJson"/> is). Not written when
    /// nothing is cached, so options without a cache keep their JSON; absent or null reads as no cache.
    /// </summary>
    [JsonInclude]
    [JsonPropertyName("cache")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    internal CacheOptions? CacheForJson { get => cache == CacheOptions.None ? null : cache; set => cache = value ?? CacheOptions.None; }

    /// <summary>The block length in force: <see cref="BlockLength"/> or <see cref="GenerationLength"/>.</summary>
    [JsonIgnore]
    public int EffectiveBlockLength => BlockLength ?? GenerationLength;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid value (spec §7, options part).</summary>
    public void Validate()
    {
        if (GenerationLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(GenerationLength), GenerationLength, $"Generation length G must be > 0; got {GenerationLength}.");
        if (GenerationLength > MaxGenerationLength)
            throw new ArgumentOutOfRangeException(nameof(GenerationLength), GenerationLength,
                $"Generation length G must be at most {MaxGenerationLength}; got {GenerationLength}.");
        int k = EffectiveBlockLength;
        if (k <= 0 || GenerationLength % k != 0)
            throw new ArgumentOutOfRangeException(nameof(BlockLength), k, $"Block length K must be > 0 and divide G={GenerationLength}; got {k}.");
        if (!float.IsFinite(Temperature) || Temperature < 0)
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"Temperature T must be finite and >= 0; got {Temperature}.");
        ArgumentNullException.ThrowIfNull(Strategy, nameof(Strategy));
        Strategy.Validate(GenerationLength, k);
        ArgumentNullException.ThrowIfNull(Cache, nameof(Cache));
        Cache.Validate();
    }

    internal static void ValidateThreshold(float theta, string name)
    {
        if (!(theta > 0f && theta <= 1f))
            throw new ArgumentOutOfRangeException(name, theta, $"Threshold theta must lie in (0, 1]; got {theta}.");
    }
}
