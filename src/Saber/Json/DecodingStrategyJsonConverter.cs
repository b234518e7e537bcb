using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Saber.Json;

/// <summary>
/// A <see cref="DecodingStrategy"/> as a JSON object tagged by a <c>"type"</c> property: <c>"saber"</c>
/// (<see cref="SaberStrategy"/>), <c>"low-confidence"</c> (<see cref="LowConfidenceStrategy"/>),
/// <c>"threshold"</c> (<see cref="ThresholdStrategy"/>) or <c>"factor"</c> (<see cref="FactorStrategy"/>), the CLI's <c>--strategy</c> names, followed by the
/// strategy's parameters. <c>"type"</c> is written first and read anywhere in the object.
/// </summary>
/// <remarks>
/// This plays the part of <c>[JsonPolymorphic]</c>/<c>[JsonDerivedType]</c>, which would do the same for
/// well-formed input but answers a missing <c>"type"</c> with a <see cref="NotSupportedException"/> (the base is
/// abstract) and requires <c>"type"</c> first unless the caller's options say otherwise. Here a missing, duplicated,
/// non-string or unknown <c>"type"</c> is a <see cref="JsonException"/> naming it. The parameters are read and
/// written through the resolver of the options in use, so <see cref="SaberJsonContext"/> (or reflection) must know the
/// four strategy types: it does.
/// </remarks>
public sealed class DecodingStrategyJsonConverter : JsonConverter<DecodingStrategy>
{
    /// <summary>The discriminator property.</summary>
    public const string TypePropertyName = "type";

    internal static readonly (Type Type, string Name)[] Names =
    [
        (typeof(SaberStrategy), "saber"),
        (typeof(LowConfidenceStrategy), "low-confidence"),
        (typeof(ThresholdStrategy), "threshold"),
        (typeof(FactorStrategy), "factor"),
    ];

    private static string Expected => string.Join(", ", Names.Select(n => n.Name));

    public override DecodingStrategy? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new JsonException($"A decoding strategy must be a JSON object with a \"{TypePropertyName}\" ({Expected}); got {EnumNames.Describe(ref reader)}.");
        using JsonDocument document = JsonDocument.ParseValue(ref reader);
        string? name = null;
        foreach (JsonProperty property in document.RootElement.EnumerateObject())
        {
            if (!property.NameEquals(TypePropertyName)) continue;
            if (name is not null)
                throw new JsonException($"A decoding strategy has more than one \"{TypePropertyName}\".");
            if (property.Value.ValueKind != JsonValueKind.String)
                throw new JsonException($"A decoding strategy's \"{TypePropertyName}\" must be a string, one of {Expected}; got {property.Value.GetRawText()}.");
            name = property.Value.GetString()!;
        }
        if (name is null)
            throw new JsonException($"A decoding strategy needs a \"{TypePropertyName}\" property: one of {Expected}.");
        Type? type = null;
        foreach ((Type t, string n) in Names)
            if (n == name) type = t;
        if (type is null)
            throw new JsonException($"Unknown decoding strategy type '{name}'; expected one of {Expected}.");

        // The parameters without the discriminator (the strategy records reject unknown properties).
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
                if (!property.NameEquals(TypePropertyName))
                    property.WriteTo(writer);
            writer.WriteEndObject();
        }
        try
        {
            return (DecodingStrategy?)JsonSerializer.Deserialize(buffer.WrittenSpan, options.GetTypeInfo(type));
        }
        catch (JsonException e)
        {
            throw new JsonException($"Invalid \"{name}\" strategy: {e.Message}", e);
        }
    }

    public override void Write(Utf8JsonWriter writer, DecodingStrategy value, JsonSerializerOptions options)
    {
        Type type = value.GetType();
        string? name = null;
        foreach ((Type t, string n) in Names)
            if (t == type) name = n;
        if (name is null)
            throw new JsonException($"The decoding strategy {type} has no JSON name.");
        JsonTypeInfo info = options.GetTypeInfo(type);
        JsonElement parameters = JsonSerializer.SerializeToElement(value, info);
        writer.WriteStartObject();
        writer.WriteString(TypePropertyName, name);
        foreach (JsonProperty property in parameters.EnumerateObject())
            property.WriteTo(writer);
        writer.WriteEndObject();
    }
}
