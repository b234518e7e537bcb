namespace Saber.Service;

/// <summary>
/// The configuration of a <see cref="SaberEngine"/> registered with <c>services.AddSaber(...)</c>: the engine's limits
/// and grouping (as <see cref="SaberEngineOptions"/>) and the default <see cref="DecodeOptions"/> of the application
/// (<see cref="Decode"/>). Bound from a configuration section (by default <c>"Saber"</c>) and validated when the host
/// starts by <see cref="SaberServiceOptionsValidator"/>.
/// </summary>
public sealed class SaberServiceOptions
{
    /// <summary>The configuration section <c>AddSaber(IConfiguration)</c> callers usually pass: <c>configuration.GetSection("Saber")</c>.</summary>
    public const string SectionName = "Saber";

    /// <inheritdoc cref="SaberEngineOptions.Capacity"/>
    public int Capacity { get; set; } = 256;

    /// <inheritdoc cref="SaberEngineOptions.MaxBatchSize"/>
    public int MaxBatchSize { get; set; } = 32;

    /// <inheritdoc cref="SaberEngineOptions.GroupByCanvasLength"/>
    public bool GroupByCanvasLength { get; set; }

    /// <inheritdoc cref="SaberEngineOptions.GroupByStep"/>
    public bool GroupByStep { get; set; }

    /// <inheritdoc cref="SaberEngineOptions.MaxRowsPerForward"/>
    public int? MaxRowsPerForward { get; set; }

    /// <inheritdoc cref="SaberEngineOptions.MaxDegreeOfParallelism"/>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>The default decode options (section <c>Decode</c>), registered as the <see cref="DecodeOptions"/> singleton.</summary>
    public SaberDecodeSettings Decode { get; set; } = new();

    /// <summary>The engine options these settings give; <paramref name="disposeDenoiser"/> is decided by the registration, not by configuration.</summary>
    public SaberEngineOptions ToEngineOptions(bool disposeDenoiser = false) => new()
    {
        Capacity = Capacity,
        MaxBatchSize = MaxBatchSize,
        GroupByCanvasLength = GroupByCanvasLength,
        GroupByStep = GroupByStep,
        MaxRowsPerForward = MaxRowsPerForward,
        MaxDegreeOfParallelism = MaxDegreeOfParallelism,
        DisposeDenoiser = disposeDenoiser,
    };
}

/// <summary>Default decode options in configuration form (section <c>Saber:Decode</c>); see <see cref="DecodeOptions"/>.</summary>
public sealed class SaberDecodeSettings
{
    /// <summary><c>G</c> (default 256).</summary>
    public int GenerationLength { get; set; } = 256;

    /// <summary><c>K</c>; null or absent: one block (<c>K = G</c>).</summary>
    public int? BlockLength { get; set; }

    /// <summary><c>T ≥ 0</c> (default 0: greedy).</summary>
    public float Temperature { get; set; }

    /// <summary>Philox key for the Gumbel draws and the random metric (default 0).</summary>
    public ulong Seed { get; set; }

    /// <summary>Record a per-step trace in each result (default false).</summary>
    public bool Trace { get; set; }

    /// <summary>The strategy (section <c>Strategy</c>; default Saber with its defaults).</summary>
    public SaberStrategySettings Strategy { get; set; } = new();

    /// <summary>The key/value cache (section <c>Cache</c>; default none: the exact decode).</summary>
    public SaberCacheSettings Cache { get; set; } = new();

    /// <summary>
    /// The <see cref="DecodeOptions"/> these settings give. Throws <see cref="ArgumentException"/> for an unknown strategy,
    /// variant or metric name, a parameter of another strategy, or a missing <c>Steps</c>; the values themselves are
    /// checked by <see cref="DecodeOptions.Validate"/> (the validator runs both at startup). So does an unknown cache policy
    /// or re-mask rule (<see cref="SaberCacheSettings.ToCacheOptions"/>).
    /// </summary>
    public DecodeOptions ToDecodeOptions() => new()
    {
        GenerationLength = GenerationLength,
        BlockLength = BlockLength,
        Temperature = Temperature,
        Seed = Seed,
        Trace = Trace,
        Strategy = Strategy.ToStrategy(),
        Cache = Cache?.ToCacheOptions() ?? CacheOptions.None,
    };
}

/// <summary>
/// The key/value cache in configuration form (section <c>Saber:Decode:Cache</c>); see <see cref="CacheOptions"/>. Names as
/// in JSON and the CLI's <c>--cache</c>, compared ignoring case.
/// </summary>
public sealed class SaberCacheSettings
{
    /// <summary><c>none</c> (default: the exact decode), <c>prefix</c> or <c>dual</c>; the last two need a model with a cache graph.</summary>
    public string Policy { get; set; } = "none";

    /// <summary><c>R ≥ 1</c>: also a full pass every R calls; absent: only when a block completes. Only with a cache.</summary>
    public int? RefreshEvery { get; set; }

    /// <summary><c>positions</c> (default) or <c>block</c>: what a re-masked position outside the window recomputes. Only with a cache.</summary>
    public string? OnRemask { get; set; }

    /// <summary>
    /// The cache options; <see cref="ArgumentException"/> (its parameter name the property's) for an unknown name, or for
    /// <see cref="RefreshEvery"/> or <see cref="OnRemask"/> set without a cache (they would do nothing). <c>R</c> itself is
    /// checked by <see cref="DecodeOptions.Validate"/>.
    /// </summary>
    public CacheOptions ToCacheOptions()
    {
        CachePolicy policy = SaberStrategySettings.Parse(Policy ?? "", CacheOptions.PolicyNames, nameof(Policy), "cache policy");
        RemaskRefresh onRemask = OnRemask is null ? RemaskRefresh.Positions : SaberStrategySettings.Parse(OnRemask, CacheOptions.OnRemaskNames, nameof(OnRemask), "re-mask rule");
        if (policy == CachePolicy.None)
        {
            if (RefreshEvery is int r)
                throw new ArgumentException($"RefreshEvery = {r} does not apply to cache policy 'none'.", nameof(RefreshEvery));
            if (OnRemask is not null)
                throw new ArgumentException($"OnRemask = '{OnRemask}' does not apply to cache policy 'none'.", nameof(OnRemask));
            return CacheOptions.None;
        }
        return new CacheOptions(policy, RefreshEvery, onRemask);
    }
}

/// <summary>
/// A decoding strategy in configuration form: <see cref="Type"/> names it as in JSON and the CLI (<c>saber</c>,
/// <c>low-confidence</c>, <c>threshold</c>); only that strategy's parameters may be set, the others stay absent.
/// Absent parameters take the strategy's defaults.
/// </summary>
public sealed class SaberStrategySettings
{
    /// <summary>The strategy names accepted in <see cref="Type"/> (compared ignoring case).</summary>
    public static IReadOnlyList<string> TypeNames { get; } = ["saber", "low-confidence", "threshold", "factor"];

    /// <summary><c>saber</c> (default), <c>low-confidence</c>, <c>threshold</c> or <c>factor</c>.</summary>
    public string Type { get; set; } = "saber";

    /// <summary>saber: <c>reference</c> (default) or <c>paper</c>.</summary>
    public string? Variant { get; set; }

    /// <summary>saber: <c>n ≥ 1</c> (default 2).</summary>
    public int? MinTokensPerStep { get; set; }

    /// <summary>saber: <c>μ ≥ 1</c> (default 8).</summary>
    public int? RemaskDivisor { get; set; }

    /// <summary>saber: false for the no-backtracking ablation (default true).</summary>
    public bool? Backtracking { get; set; }

    /// <summary>saber: a fixed threshold in (0, 1] replacing τ (ablation; default none).</summary>
    public float? FixedThreshold { get; set; }

    /// <summary>low-confidence (required): <c>S</c>, a positive multiple of the block count.</summary>
    public int? Steps { get; set; }

    /// <summary>low-confidence: <c>maxprob</c> (default), <c>margin</c>, <c>negentropy</c> or <c>random</c>.</summary>
    public string? Metric { get; set; }

    /// <summary>threshold: <c>θ</c> in (0, 1] (default 0.9).</summary>
    public float? Threshold { get; set; }

    /// <summary>factor: <c>F</c>, finite and &gt; 0 (default 1).</summary>
    public float? Factor { get; set; }

    private static readonly Dictionary<string, SaberVariant> Variants = new() { ["reference"] = SaberVariant.Reference, ["paper"] = SaberVariant.Paper };

    private static readonly Dictionary<string, ConfidenceMetric> Metrics = new()
    {
        ["maxprob"] = ConfidenceMetric.MaxProb,
        ["margin"] = ConfidenceMetric.Margin,
        ["negentropy"] = ConfidenceMetric.NegEntropy,
        ["random"] = ConfidenceMetric.Random,
    };

    /// <summary>The strategy; <see cref="ArgumentException"/> (its parameter name the property's) when the settings do not name one.</summary>
    public DecodingStrategy ToStrategy()
    {
        string type = (Type ?? "").Trim().ToLowerInvariant();
        (string Name, object? Value)[] saber = [(nameof(Variant), Variant), (nameof(MinTokensPerStep), MinTokensPerStep),
            (nameof(RemaskDivisor), RemaskDivisor), (nameof(Backtracking), Backtracking), (nameof(FixedThreshold), FixedThreshold)];
        (string Name, object? Value)[] lowConfidence = [(nameof(Steps), Steps), (nameof(Metric), Metric)];
        (string Name, object? Value)[] threshold = [(nameof(Threshold), Threshold)];
        (string Name, object? Value)[] factor = [(nameof(Factor), Factor)];
        void Forbid(params (string Name, object? Value)[][] groups)
        {
            foreach (var group in groups)
                foreach ((string name, object? value) in group)
                    if (value is not null)
                        throw new ArgumentException($"{name} = {Format(value)} does not apply to strategy '{type}'.", name);
        }

        switch (type)
        {
            case "saber":
                Forbid(lowConfidence, threshold, factor);
                var defaults = new SaberStrategy();
                return new SaberStrategy(
                    Variant is null ? defaults.Variant : Parse(Variant, Variants, nameof(Variant), "Saber variant"),
                    MinTokensPerStep ?? defaults.MinTokensPerStep,
                    RemaskDivisor ?? defaults.RemaskDivisor,
                    Backtracking ?? defaults.Backtracking,
                    FixedThreshold);
            case "low-confidence":
                Forbid(saber, threshold, factor);
                if (Steps is not int steps)
                    throw new ArgumentException("Steps is required for strategy 'low-confidence'.", nameof(Steps));
                return new LowConfidenceStrategy(steps, Metric is null ? ConfidenceMetric.MaxProb : Parse(Metric, Metrics, nameof(Metric), "confidence metric"));
            case "threshold":
                Forbid(saber, lowConfidence, factor);
                return new ThresholdStrategy(Threshold ?? new ThresholdStrategy().Threshold);
            case "factor":
                Forbid(saber, lowConfidence, threshold);
                return new FactorStrategy(Factor ?? new FactorStrategy().Factor);
            default:
                throw new ArgumentException($"Type = '{Type}' is not a decoding strategy; expected one of {string.Join(", ", TypeNames)}.", nameof(Type));
        }
    }

    /// <summary>The value whose name <paramref name="text"/> is (case and surrounding spaces ignored); else an ArgumentException naming the property and the names.</summary>
    internal static T Parse<T>(string text, IEnumerable<KeyValuePair<string, T>> names, string property, string what)
    {
        foreach ((string name, T value) in names)
            if (string.Equals(name, text.Trim(), StringComparison.OrdinalIgnoreCase))
                return value;
        throw new ArgumentException($"{property} = '{text}' is not a {what}; expected one of {string.Join(", ", names.Select(n => n.Key))}.", property);
    }

    private static string Format(object value) => value switch
    {
        string s => $"'{s}'",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
