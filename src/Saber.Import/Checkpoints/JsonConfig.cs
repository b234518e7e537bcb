using System.Text.Json;

namespace Saber.Import.Checkpoints;

/// <summary>
/// Typed reads of a JSON config's top-level keys, each with the published default for an absent key and an
/// <see cref="InvalidDataException"/> naming the file, the key and the value for a wrong type or a refused setting.
/// </summary>
internal sealed class JsonConfig
{
    private JsonConfig(string path, JsonElement root)
    {
        Path = path;
        Root = root;
    }

    public string Path { get; }

    public JsonElement Root { get; }

    public static JsonConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new InvalidDataException($"'{path}' does not exist: not a Hugging Face checkpoint folder, or an incomplete one.");
        try
        {
            // Cloned so that the document can be disposed at once; configs are a few kilobytes.
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"'{path}' is not a JSON object.");
            return new JsonConfig(path, document.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}");
        }
    }

    public InvalidDataException Unsupported(string key, string value, string reason) =>
        new($"'{Path}': {key} {value} is not supported: {reason}.");

    /// <summary>The key's JSON text, or "(absent)".</summary>
    public string Raw(string key) => Value(key) is { } v ? v.GetRawText() : "(absent)";

    public string[] StringList(string key) => Value(key) switch
    {
        null => [],
        { ValueKind: JsonValueKind.String } s => [s.GetString()!],
        { ValueKind: JsonValueKind.Array } a when a.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
            [.. a.EnumerateArray().Select(e => e.GetString()!)],
        { } other => throw WrongType(key, other, "a string or a list of strings"),
    };

    public string? OptionalString(string key) => Value(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        { } other => throw WrongType(key, other, "a string"),
    };

    /// <summary>A string setting that must be <paramref name="supported"/> (the graph implements no other).</summary>
    public void Require(string key, string absentDefault, string supported)
    {
        string value = OptionalString(key) ?? absentDefault;
        if (value != supported)
            throw Unsupported(key, $"'{value}'" + (Value(key) is null ? " (the default when absent)" : ""), $"only '{supported}' is implemented");
    }

    /// <summary>A boolean setting that must be <paramref name="supported"/>.</summary>
    public void RequireFlag(string key, bool absentDefault, bool supported)
    {
        bool value = Bool(key, absentDefault);
        if (value != supported)
            throw Unsupported(key, Lower(value) + (Value(key) is null ? " (the default when absent)" : ""), $"only {Lower(supported)} is implemented");
    }

    /// <summary>A setting that must be absent or null.</summary>
    public void RequireNull(string key)
    {
        if (Value(key) is { } value)
            throw Unsupported(key, value.GetRawText(), "only null is implemented");
    }

    public bool Bool(string key, bool absentDefault) => OptionalBool(key) ?? absentDefault;

    public bool? OptionalBool(string key) => Value(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } other => throw WrongType(key, other, "true or false"),
    };

    public int Int(string key, int absentDefault) => Value(key) is { } v ? ToInt(key, v) : absentDefault;

    public int PositiveInt(string key, int absentDefault) => OptionalPositiveInt(key) ?? CheckPositive(key, absentDefault);

    /// <summary>The value, or null when absent or null.</summary>
    public int? OptionalPositiveInt(string key) => Value(key) is { } v ? CheckPositive(key, ToInt(key, v)) : null;

    /// <summary>The value; <paramref name="absentDefault"/> when absent; null when stated as null.</summary>
    public int? NullablePositiveInt(string key, int absentDefault) =>
        Root.TryGetProperty(key, out _) ? OptionalPositiveInt(key) : absentDefault;

    public int? OptionalNonNegativeInt(string key)
    {
        if (Value(key) is not { } v) return null;
        int value = ToInt(key, v);
        return value >= 0 ? value : throw new InvalidDataException($"'{Path}': {key} must be >= 0; it is {value}.");
    }

    public double PositiveDouble(string key, double absentDefault)
    {
        if (Value(key) is not { } v) return absentDefault;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double value) || !double.IsFinite(value))
            throw WrongType(key, v, "a number");
        return value > 0 ? value : throw new InvalidDataException($"'{Path}': {key} must be > 0; it is {v.GetRawText()}.");
    }

    /// <summary>Token ids stated as one id or a list of ids (null: none).</summary>
    public int[] IdList(string key, int[] absentDefault)
    {
        if (!Root.TryGetProperty(key, out JsonElement v)) return absentDefault;
        return v.ValueKind switch
        {
            JsonValueKind.Null => [],
            JsonValueKind.Array => [.. v.EnumerateArray().Select(e => ToInt(key, e))],
            _ => [ToInt(key, v)],
        };
    }

    /// <summary>The key's value; null when absent or JSON null (the published code reads both as "not set").</summary>
    private JsonElement? Value(string key) =>
        Root.TryGetProperty(key, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private int ToInt(string key, JsonElement v)
    {
        // 4096.0 is an integer too (configs written by hand or by other tools do that).
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw WrongType(key, v, "an integer");
    }

    private int CheckPositive(string key, int value) =>
        value > 0 ? value : throw new InvalidDataException($"'{Path}': {key} must be > 0; it is {value}.");

    private InvalidDataException WrongType(string key, JsonElement value, string expected) =>
        new($"'{Path}': {key} must be {expected}; it is {value.GetRawText()}.");

    private static string Lower(bool value) => value ? "true" : "false";
}
