using System.Text.Json;
using System.Text.Json.Serialization;

namespace Saber.Json;

/// <summary>Reads and writes an enum as one of a fixed list of names; anything else fails naming the value.</summary>
internal static class EnumNames
{
    public static T Read<T>(ref Utf8JsonReader reader, (T Value, string Name)[] names, string what) where T : struct, Enum
    {
        if (reader.TokenType != JsonTokenType.String)
            throw new JsonException($"{what} must be a string, one of {List(names)}; got {Describe(ref reader)}.");
        string text = reader.GetString()!;
        foreach ((T value, string name) in names)
            if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
                return value;
        throw new JsonException($"Unknown {what} '{text}'; expected one of {List(names)}.");
    }

    public static void Write<T>(Utf8JsonWriter writer, T value, (T Value, string Name)[] names, string what) where T : struct, Enum
    {
        foreach ((T known, string name) in names)
            if (EqualityComparer<T>.Default.Equals(known, value))
            {
                writer.WriteStringValue(name);
                return;
            }
        throw new JsonException($"Unknown {what} {value}; it has no JSON name (expected one of {List(names)}).");
    }

    private static string List<T>((T Value, string Name)[] names) => string.Join(", ", names.Select(n => n.Name));

    /// <summary>The offending token, for error messages (numbers and literals as written, other tokens by kind).</summary>
    internal static string Describe(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null =>
            System.Text.Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan),
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        _ => reader.TokenType.ToString(),
    };
}

/// <summary>
/// <see cref="SaberVariant"/> as <c>"reference"</c> or <c>"paper"</c>, the CLI's <c>--variant</c> names
/// (read case-insensitively; numbers and other names are a <see cref="JsonException"/> naming the value).
/// </summary>
public sealed class SaberVariantJsonConverter : JsonConverter<SaberVariant>
{
    internal static readonly (SaberVariant Value, string Name)[] Names = [(SaberVariant.Reference, "reference"), (SaberVariant.Paper, "paper")];

    public override SaberVariant Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        EnumNames.Read(ref reader, Names, "Saber variant");

    public override void Write(Utf8JsonWriter writer, SaberVariant value, JsonSerializerOptions options) =>
        EnumNames.Write(writer, value, Names, "Saber variant");
}

/// <summary>
/// <see cref="ConfidenceMetric"/> as <c>"maxprob"</c>, <c>"margin"</c>, <c>"negentropy"</c> or <c>"random"</c>,
/// the CLI's <c>--metric</c> names (read case-insensitively; anything else is a <see cref="JsonException"/> naming the value).
/// </summary>
public sealed class ConfidenceMetricJsonConverter : JsonConverter<ConfidenceMetric>
{
    internal static readonly (ConfidenceMetric Value, string Name)[] Names =
    [
        (ConfidenceMetric.MaxProb, "maxprob"),
        (ConfidenceMetric.Margin, "margin"),
        (ConfidenceMetric.NegEntropy, "negentropy"),
        (ConfidenceMetric.Random, "random"),
    ];

    public override ConfidenceMetric Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        EnumNames.Read(ref reader, Names, "confidence metric");

    public override void Write(Utf8JsonWriter writer, ConfidenceMetric value, JsonSerializerOptions options) =>
        EnumNames.Write(writer, value, Names, "confidence metric");
}

/// <summary><see cref="CachePolicy"/> as <c>"none"</c>, <c>"prefix"</c> or <c>"dual"</c>, the CLI's <c>--cache</c> names.</summary>
public sealed class CachePolicyJsonConverter : JsonConverter<CachePolicy>
{
    internal static readonly (CachePolicy Value, string Name)[] Names = CacheOptions.PolicyNames.Select(p => (p.Value, p.Key)).ToArray();

    public override CachePolicy Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        EnumNames.Read(ref reader, Names, "cache policy");

    public override void Write(Utf8JsonWriter writer, CachePolicy value, JsonSerializerOptions options) =>
        EnumNames.Write(writer, value, Names, "cache policy");
}

/// <summary><see cref="RemaskRefresh"/> as <c>"positions"</c> or <c>"block"</c>, the CLI's <c>--cache-on-remask</c> names.</summary>
public sealed class RemaskRefreshJsonConverter : JsonConverter<RemaskRefresh>
{
    internal static readonly (RemaskRefresh Value, string Name)[] Names = CacheOptions.OnRemaskNames.Select(r => (r.Value, r.Key)).ToArray();

    public override RemaskRefresh Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        EnumNames.Read(ref reader, Names, "re-mask refresh");

    public override void Write(Utf8JsonWriter writer, RemaskRefresh value, JsonSerializerOptions options) =>
        EnumNames.Write(writer, value, Names, "re-mask refresh");
}
