using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Saber.Extensions.AI;

/// <summary>
/// The <see cref="ChatOptions.AdditionalProperties"/> keys <see cref="SaberChatClient"/> reads. Values may be numbers,
/// booleans or strings of the right kind, or the <see cref="JsonElement"/>s a deserialized request holds; a bad value,
/// or a key that does not apply to the chosen strategy, is an <see cref="ArgumentException"/> naming the key. Keys not
/// listed here are ignored (the dictionary is shared with other components).
/// </summary>
public static class SaberChatOptionKeys
{
    /// <summary><c>"saber"</c> (default), <c>"low-confidence"</c>, <c>"threshold"</c> or <c>"factor"</c>.</summary>
    public const string Strategy = "strategy";

    /// <summary>K, an integer &gt;= 1 (default <see cref="SaberChatClientOptions.DefaultBlockLength"/>, or the output limit when that is smaller).</summary>
    public const string BlockLength = "block_length";

    /// <summary>Saber: <c>"reference"</c> (default) or <c>"paper"</c>.</summary>
    public const string Variant = "variant";

    /// <summary>Saber: n, the minimum tokens per step, an integer &gt;= 1 (default 2).</summary>
    public const string MinTokensPerStep = "n";

    /// <summary>Saber: μ, the remask divisor, an integer &gt;= 1 (default 8).</summary>
    public const string RemaskDivisor = "mu";

    /// <summary>Saber: false runs the no-backtracking ablation (nothing is ever re-masked; text then streams as it is decoded). Default true.</summary>
    public const string Backtracking = "backtracking";

    /// <summary>Saber: a fixed draft threshold in (0, 1] replacing τ (ablation). Default unset.</summary>
    public const string FixedThreshold = "fixed_threshold";

    /// <summary>Low-confidence: S, the total steps, a positive multiple of the block count G/K, at most 16·G (default G: one token per step).</summary>
    public const string Steps = "steps";

    /// <summary>Low-confidence: <c>"maxprob"</c> (default), <c>"margin"</c>, <c>"negentropy"</c> or <c>"random"</c>.</summary>
    public const string Metric = "metric";

    /// <summary>Threshold: θ in (0, 1] (default 0.9).</summary>
    public const string Threshold = "threshold";

    /// <summary>Factor: F, finite and &gt; 0 (default 1).</summary>
    public const string Factor = "factor";

    /// <summary>
    /// The key/value cache, for any strategy: a policy name, <c>"none"</c>, <c>"prefix"</c> or <c>"dual"</c>; an object
    /// <c>{"policy": ..., "refresh_every": R, "on_remask": "positions" | "block"}</c> (a <see cref="JsonElement"/>); or a
    /// <see cref="CacheOptions"/>. Default <see cref="SaberChatClientOptions.DefaultCache"/> (none: the exact decode).
    /// </summary>
    public const string Cache = "cache";
}

/// <summary>What a <see cref="SaberChatClient"/> submits for one request (see <see cref="SaberChatClient.CreateRequest"/>).</summary>
/// <param name="Prompt">The prompt text, from the template.</param>
/// <param name="PromptTokens">Its ids.</param>
/// <param name="Options">The decode options: G, K, strategy, temperature, seed.</param>
/// <param name="MaxOutputTokens">
/// The output limit L: the response holds at most this many tokens. <see cref="DecodeOptions.GenerationLength"/> is L
/// rounded up to a multiple of K; positions past L are decoded (they are context for the others) but never returned.
/// </param>
public sealed record SaberChatRequest(string Prompt, int[] PromptTokens, DecodeOptions Options, int MaxOutputTokens);

internal static class ChatOptionsMapping
{
    private const string OptionsParameter = "options";

    public static (DecodeOptions Options, int Limit) Map(ChatOptions? chat, int promptLength, SaberChatClientOptions settings)
    {
        IReadOnlyDictionary<string, object?> extra = (IReadOnlyDictionary<string, object?>?)chat?.AdditionalProperties ?? new Dictionary<string, object?>();

        int limit = chat?.MaxOutputTokens ?? settings.DefaultMaxOutputTokens;
        if (limit < 1)
            throw new ArgumentOutOfRangeException(OptionsParameter, limit, $"ChatOptions.MaxOutputTokens must be >= 1; got {limit}.");
        if (limit > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(OptionsParameter, limit, $"ChatOptions.MaxOutputTokens must be at most {DecodeOptions.MaxGenerationLength}; got {limit}.");

        int? explicitBlock = ReadInt(extra, SaberChatOptionKeys.BlockLength);
        if (explicitBlock is < 1)
            throw new ArgumentOutOfRangeException(OptionsParameter, explicitBlock, $"AdditionalProperties[\"{SaberChatOptionKeys.BlockLength}\"] must be an integer >= 1; got {explicitBlock}.");
        int block = BlockFor(limit, explicitBlock, settings);
        long g = ((long)limit + block - 1) / block * block;
        if (g > DecodeOptions.MaxGenerationLength)
            throw new ArgumentOutOfRangeException(OptionsParameter, limit,
                $"ChatOptions.MaxOutputTokens={limit} rounded up to a multiple of the block length {block} gives G={g}, above the largest G ({DecodeOptions.MaxGenerationLength}).");
        if (settings.MaxSequenceLength is int max && promptLength + g > max)
        {
            int room = max - promptLength;
            if (room < 1)
                throw new ContextLengthExceededException("messages", limit, promptLength, max, block, 0,
                    $"The prompt ({promptLength} tokens) leaves no room in the model's {max} positions for any output.");
            int largest = explicitBlock is int k ? room / k * k : room <= settings.DefaultBlockLength ? room : room / settings.DefaultBlockLength * settings.DefaultBlockLength;
            string hint = largest >= 1
                ? $"at most {largest} fits here"
                : $"no output fits with block length {explicitBlock}; lower \"{SaberChatOptionKeys.BlockLength}\"";
            throw new ContextLengthExceededException(OptionsParameter, limit, promptLength, max, block, largest,
                $"ChatOptions.MaxOutputTokens={limit} (G={g} generated positions with block length {block}) plus the prompt ({promptLength} tokens) " +
                $"makes {promptLength + g} positions; the model takes at most {max}: MaxOutputTokens {hint}.");
        }
        int generation = (int)g;

        float temperature = chat?.Temperature ?? 0f;
        if (!float.IsFinite(temperature) || temperature < 0)
            throw new ArgumentOutOfRangeException(OptionsParameter, temperature, $"ChatOptions.Temperature must be finite and >= 0; got {temperature}.");
        ulong seed = unchecked((ulong)(chat?.Seed ?? 0));

        string strategyName = ReadString(extra, SaberChatOptionKeys.Strategy) ?? "saber";
        DecodingStrategy strategy = strategyName switch
        {
            "saber" => SaberFrom(extra),
            "low-confidence" => LowConfidenceFrom(extra, generation, block),
            "threshold" => ThresholdFrom(extra),
            "factor" => FactorFrom(extra),
            _ => throw new ArgumentException(
                $"AdditionalProperties[\"{SaberChatOptionKeys.Strategy}\"] must be \"saber\", \"low-confidence\", \"threshold\" or \"factor\"; got \"{strategyName}\".", OptionsParameter),
        };
        string[] foreign = strategyName switch
        {
            "saber" => [SaberChatOptionKeys.Steps, SaberChatOptionKeys.Metric, SaberChatOptionKeys.Threshold, SaberChatOptionKeys.Factor],
            "low-confidence" => [SaberChatOptionKeys.Variant, SaberChatOptionKeys.MinTokensPerStep, SaberChatOptionKeys.RemaskDivisor,
                SaberChatOptionKeys.Backtracking, SaberChatOptionKeys.FixedThreshold, SaberChatOptionKeys.Threshold, SaberChatOptionKeys.Factor],
            "threshold" => [SaberChatOptionKeys.Variant, SaberChatOptionKeys.MinTokensPerStep, SaberChatOptionKeys.RemaskDivisor,
                SaberChatOptionKeys.Backtracking, SaberChatOptionKeys.FixedThreshold, SaberChatOptionKeys.Steps, SaberChatOptionKeys.Metric,
                SaberChatOptionKeys.Factor],
            _ => [SaberChatOptionKeys.Variant, SaberChatOptionKeys.MinTokensPerStep, SaberChatOptionKeys.RemaskDivisor,
                SaberChatOptionKeys.Backtracking, SaberChatOptionKeys.FixedThreshold, SaberChatOptionKeys.Steps, SaberChatOptionKeys.Metric,
                SaberChatOptionKeys.Threshold],
        };
        foreach (string key in foreign)
            if (extra.ContainsKey(key))
                throw new ArgumentException($"AdditionalProperties[\"{key}\"] does not apply to strategy \"{strategyName}\".", OptionsParameter);

        var options = new DecodeOptions
        {
            GenerationLength = generation,
            BlockLength = block,
            Strategy = strategy,
            Temperature = temperature,
            Seed = seed,
            Cache = CacheFrom(extra, settings.DefaultCache),
        };
        options.Validate();   // every value was checked above; this is the library's own check as a backstop
        return (options, limit);
    }

    /// <summary>K: the explicit value, else the default, else (an output limit at or below the default) the limit itself.</summary>
    private static int BlockFor(int limit, int? explicitBlock, SaberChatClientOptions settings) =>
        explicitBlock ?? Math.Min(limit, settings.DefaultBlockLength);

    private static SaberStrategy SaberFrom(IReadOnlyDictionary<string, object?> extra)
    {
        string variantName = ReadString(extra, SaberChatOptionKeys.Variant) ?? "reference";
        SaberVariant variant = variantName switch
        {
            "reference" => SaberVariant.Reference,
            "paper" => SaberVariant.Paper,
            _ => throw new ArgumentException($"AdditionalProperties[\"{SaberChatOptionKeys.Variant}\"] must be \"reference\" or \"paper\"; got \"{variantName}\".", OptionsParameter),
        };
        int n = ReadInt(extra, SaberChatOptionKeys.MinTokensPerStep) ?? 2;
        if (n < 1)
            throw new ArgumentOutOfRangeException(OptionsParameter, n, $"AdditionalProperties[\"{SaberChatOptionKeys.MinTokensPerStep}\"] (minimum tokens per step) must be an integer >= 1; got {n}.");
        int mu = ReadInt(extra, SaberChatOptionKeys.RemaskDivisor) ?? 8;
        if (mu < 1)
            throw new ArgumentOutOfRangeException(OptionsParameter, mu, $"AdditionalProperties[\"{SaberChatOptionKeys.RemaskDivisor}\"] (remask divisor) must be an integer >= 1; got {mu}.");
        bool backtracking = ReadBool(extra, SaberChatOptionKeys.Backtracking) ?? true;
        float? fixedThreshold = ReadFloat(extra, SaberChatOptionKeys.FixedThreshold);
        if (fixedThreshold is float f && !(f > 0f && f <= 1f))
            throw new ArgumentOutOfRangeException(OptionsParameter, f, $"AdditionalProperties[\"{SaberChatOptionKeys.FixedThreshold}\"] must lie in (0, 1]; got {f}.");
        return new SaberStrategy(variant, n, mu, backtracking, fixedThreshold);
    }

    private static LowConfidenceStrategy LowConfidenceFrom(IReadOnlyDictionary<string, object?> extra, int generation, int block)
    {
        int blocks = generation / block;
        int steps = ReadInt(extra, SaberChatOptionKeys.Steps) ?? generation;
        if (steps < 1 || steps % blocks != 0 || steps > (long)LowConfidenceStrategy.MaxStepsPerPosition * generation)
            throw new ArgumentOutOfRangeException(OptionsParameter, steps,
                $"AdditionalProperties[\"{SaberChatOptionKeys.Steps}\"] must be a positive multiple of the block count {blocks} (G={generation}, K={block}), " +
                $"at most {(long)LowConfidenceStrategy.MaxStepsPerPosition * generation}; got {steps}.");
        string metricName = ReadString(extra, SaberChatOptionKeys.Metric) ?? "maxprob";
        ConfidenceMetric metric = metricName switch
        {
            "maxprob" => ConfidenceMetric.MaxProb,
            "margin" => ConfidenceMetric.Margin,
            "negentropy" => ConfidenceMetric.NegEntropy,
            "random" => ConfidenceMetric.Random,
            _ => throw new ArgumentException(
                $"AdditionalProperties[\"{SaberChatOptionKeys.Metric}\"] must be \"maxprob\", \"margin\", \"negentropy\" or \"random\"; got \"{metricName}\".", OptionsParameter),
        };
        return new LowConfidenceStrategy(steps, metric);
    }

    private static ThresholdStrategy ThresholdFrom(IReadOnlyDictionary<string, object?> extra)
    {
        float theta = ReadFloat(extra, SaberChatOptionKeys.Threshold) ?? 0.9f;
        if (!(theta > 0f && theta <= 1f))
            throw new ArgumentOutOfRangeException(OptionsParameter, theta, $"AdditionalProperties[\"{SaberChatOptionKeys.Threshold}\"] must lie in (0, 1]; got {theta}.");
        return new ThresholdStrategy(theta);
    }

    private static FactorStrategy FactorFrom(IReadOnlyDictionary<string, object?> extra)
    {
        float factor = ReadFloat(extra, SaberChatOptionKeys.Factor) ?? new FactorStrategy().Factor;
        if (!(float.IsFinite(factor) && factor > 0f))
            throw new ArgumentOutOfRangeException(OptionsParameter, factor, $"AdditionalProperties[\"{SaberChatOptionKeys.Factor}\"] must be finite and > 0; got {factor}.");
        return new FactorStrategy(factor);
    }

    /// <summary>The cache of <c>"cache"</c>: a policy name, an object of policy, refresh_every and on_remask, or a <see cref="CacheOptions"/>.</summary>
    private static CacheOptions CacheFrom(IReadOnlyDictionary<string, object?> extra, CacheOptions defaults)
    {
        const string key = SaberChatOptionKeys.Cache;
        const string kind = "\"none\", \"prefix\", \"dual\" or an object {\"policy\", \"refresh_every\", \"on_remask\"}";
        if (!extra.TryGetValue(key, out object? value) || value is null or JsonElement { ValueKind: JsonValueKind.Null }) return defaults;
        switch (value)
        {
            case CacheOptions cache:
                Check(cache);
                return cache;
            case string name:
                return new CacheOptions(Policy(name, key));
            case JsonElement { ValueKind: JsonValueKind.String } e:
                return new CacheOptions(Policy(e.GetString()!, key));
            case JsonElement { ValueKind: JsonValueKind.Object } e:
                {
                    CachePolicy policy = CachePolicy.None;
                    int? refreshEvery = null;
                    RemaskRefresh onRemask = RemaskRefresh.Positions;
                    bool named = false;
                    foreach (JsonProperty p in e.EnumerateObject())
                    {
                        var single = new Dictionary<string, object?> { [$"{key}.{p.Name}"] = p.Value };
                        switch (p.Name)
                        {
                            case "policy":
                                named = true;
                                policy = Policy(ReadString(single, $"{key}.policy") ?? "none", $"{key}.policy");
                                break;
                            case "refresh_every":
                                refreshEvery = ReadInt(single, $"{key}.refresh_every");
                                break;
                            case "on_remask":
                                string rule = ReadString(single, $"{key}.on_remask") ?? "positions";
                                onRemask = CacheOptions.OnRemaskNames.TryGetValue(rule, out RemaskRefresh found) ? found
                                    : throw new ArgumentException($"AdditionalProperties[\"{key}.on_remask\"] must be \"positions\" or \"block\"; got \"{rule}\".", OptionsParameter);
                                break;
                            default:
                                throw new ArgumentException($"AdditionalProperties[\"{key}\"] has an unknown field \"{p.Name}\"; expected policy, refresh_every, on_remask.", OptionsParameter);
                        }
                    }
                    if (!named)
                        throw new ArgumentException($"AdditionalProperties[\"{key}.policy\"] is required in a cache object.", OptionsParameter);
                    var options = new CacheOptions(policy, refreshEvery, onRemask);
                    Check(options);
                    return options;
                }
            default:
                throw Bad(key, value, kind);
        }

        static CachePolicy Policy(string name, string key) =>
            CacheOptions.PolicyNames.TryGetValue(name, out CachePolicy found) ? found
                : throw new ArgumentException($"AdditionalProperties[\"{key}\"] must be \"none\", \"prefix\" or \"dual\"; got \"{name}\".", OptionsParameter);

        // The settings a policy name cannot get wrong; an object or a CacheOptions can.
        static void Check(CacheOptions cache)
        {
            if (cache.RefreshEvery is < 1)
                throw new ArgumentOutOfRangeException(OptionsParameter, cache.RefreshEvery,
                    $"AdditionalProperties[\"{key}.refresh_every\"] must be an integer >= 1; got {cache.RefreshEvery}.");
            if (!Enum.IsDefined(cache.Policy) || !Enum.IsDefined(cache.OnRemask))
                throw new ArgumentException($"AdditionalProperties[\"{key}\"] holds an unknown policy or re-mask rule ({cache.Policy}, {cache.OnRemask}).", OptionsParameter);
        }
    }

    private static ArgumentException Bad(string key, object value, string kind) =>
        new($"AdditionalProperties[\"{key}\"] must be {kind}; got {Describe(value)}.", OptionsParameter);

    private static string Describe(object value) => value switch
    {
        string s => $"\"{s}\"",
        JsonElement e => e.GetRawText(),
        IFormattable f => $"{f.ToString(null, CultureInfo.InvariantCulture)} ({value.GetType().Name})",
        _ => $"a {value.GetType().Name}",
    };

    private static int? ReadInt(IReadOnlyDictionary<string, object?> extra, string key)
    {
        if (!extra.TryGetValue(key, out object? value) || value is null) return null;
        const string kind = "an integer";
        switch (value)
        {
            case int i: return i;
            case long or short or byte or sbyte or ushort or uint or ulong:
                {
                    decimal d = Convert.ToDecimal(value, CultureInfo.InvariantCulture);
                    return d >= int.MinValue && d <= int.MaxValue ? (int)d : throw Bad(key, value, kind + " within 32 bits");
                }
            case double or float or decimal:
                {
                    double d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                    return double.IsFinite(d) && Math.Floor(d) == d && d >= int.MinValue && d <= int.MaxValue ? (int)d : throw Bad(key, value, kind);
                }
            case string s:
                return int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int parsed) ? parsed : throw Bad(key, value, kind);
            case JsonElement { ValueKind: JsonValueKind.Number } e:
                return e.TryGetInt32(out int fromJson) ? fromJson : throw Bad(key, value, kind);
            case JsonElement { ValueKind: JsonValueKind.String } e:
                return ReadInt(new Dictionary<string, object?> { [key] = e.GetString() }, key);
            case JsonElement { ValueKind: JsonValueKind.Null }:
                return null;
            default:
                throw Bad(key, value, kind);
        }
    }

    private static float? ReadFloat(IReadOnlyDictionary<string, object?> extra, string key)
    {
        if (!extra.TryGetValue(key, out object? value) || value is null) return null;
        const string kind = "a number";
        switch (value)
        {
            case float f: return f;
            case double or decimal or int or long or short or byte or sbyte or ushort or uint or ulong:
                return (float)Convert.ToDouble(value, CultureInfo.InvariantCulture);
            case string s:
                return float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float parsed) ? parsed : throw Bad(key, value, kind);
            case JsonElement { ValueKind: JsonValueKind.Number } e:
                return (float)e.GetDouble();
            case JsonElement { ValueKind: JsonValueKind.String } e:
                return ReadFloat(new Dictionary<string, object?> { [key] = e.GetString() }, key);
            case JsonElement { ValueKind: JsonValueKind.Null }:
                return null;
            default:
                throw Bad(key, value, kind);
        }
    }

    private static bool? ReadBool(IReadOnlyDictionary<string, object?> extra, string key)
    {
        if (!extra.TryGetValue(key, out object? value) || value is null) return null;
        const string kind = "true or false";
        return value switch
        {
            bool b => b,
            string s when bool.TryParse(s, out bool parsed) => parsed,
            JsonElement { ValueKind: JsonValueKind.True } => true,
            JsonElement { ValueKind: JsonValueKind.False } => false,
            JsonElement { ValueKind: JsonValueKind.String } e when bool.TryParse(e.GetString(), out bool parsed) => parsed,
            JsonElement { ValueKind: JsonValueKind.Null } => null,
            _ => throw Bad(key, value, kind),
        };
    }

    private static string? ReadString(IReadOnlyDictionary<string, object?> extra, string key)
    {
        if (!extra.TryGetValue(key, out object? value) || value is null) return null;
        return value switch
        {
            string s => s,
            JsonElement { ValueKind: JsonValueKind.String } e => e.GetString(),
            JsonElement { ValueKind: JsonValueKind.Null } => null,
            _ => throw Bad(key, value, "a string"),
        };
    }
}
