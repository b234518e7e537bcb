using System.Text.Json;
using System.Text.RegularExpressions;

namespace Saber.Onnx.Tokenizers;

/// <summary>
/// The parts of a Hugging Face <c>tokenizer.json</c> that a byte-level BPE needs, read and checked. Microsoft.ML.Tokenizers
/// has no reader for this file, so this is the glue: it turns the file into the vocabulary, merges and pre-tokenizer
/// settings that <see cref="HuggingFaceTokenizer"/> gives to <c>BpeTokenizer</c>. Anything the tokenizer would not
/// reproduce faithfully (another model type, dropout, byte fallback, an unknown pre-tokenizer) is an
/// <see cref="InvalidDataException"/>, not a silent approximation.
/// </summary>
internal sealed class TokenizerJson
{
    /// <summary>GPT-2's split regex, which ByteLevel uses when its <c>use_regex</c> is true.</summary>
    internal const string Gpt2SplitPattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public required Dictionary<string, int> Vocabulary { get; init; }
    public required List<string> Merges { get; init; }
    public required bool IgnoreMerges { get; init; }
    public required List<(int Id, string Content)> AddedTokens { get; init; }
    public required bool NormalizeToNfc { get; init; }
    /// <summary>The pre-tokenization steps in order: each splits every piece the previous one produced.</summary>
    public required List<PreTokenizationStep> PreTokenization { get; init; }

    /// <summary>One step: split by <see cref="Split"/> (matches and the text between them both become pieces, HF's "Isolated"), and/or prefix each piece with a space.</summary>
    public sealed record PreTokenizationStep(Regex? Split, bool AddPrefixSpace);

    public static TokenizerJson Read(string path)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = document.RootElement;
            JsonElement model = root.GetProperty("model");
            string? type = model.TryGetProperty("type", out JsonElement t) ? t.GetString() : null;
            if (type != "BPE") throw Unsupported(path, $"model type '{type}' (only \"BPE\")");
            RequireNullOrFalse(path, model, "dropout", "BPE dropout");
            RequireNullOrFalse(path, model, "byte_fallback", "BPE byte_fallback");
            RequireEmpty(path, model, "continuing_subword_prefix");
            RequireEmpty(path, model, "end_of_word_suffix");

            var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (JsonProperty entry in model.GetProperty("vocab").EnumerateObject())
                vocabulary[entry.Name] = entry.Value.GetInt32();

            var merges = new List<string>();
            foreach (JsonElement merge in model.GetProperty("merges").EnumerateArray())
            {
                // Older files write "a b"; newer ones [a, b]. Byte-level symbols never hold a space, so "a b" is unambiguous.
                if (merge.ValueKind == JsonValueKind.String) merges.Add(merge.GetString()!);
                else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
                    merges.Add(merge[0].GetString() + " " + merge[1].GetString());
                else throw new InvalidDataException($"'{path}': a merge is neither \"a b\" nor [a, b]: {merge.GetRawText()}.");
            }
            bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement im) && im.ValueKind == JsonValueKind.True;

            var added = new List<(int, string)>();
            if (root.TryGetProperty("added_tokens", out JsonElement addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
                foreach (JsonElement token in addedTokens.EnumerateArray())
                {
                    string content = token.GetProperty("content").GetString() ?? "";
                    foreach (string flag in new[] { "lstrip", "rstrip", "single_word" })
                        if (token.TryGetProperty(flag, out JsonElement value) && value.ValueKind == JsonValueKind.True)
                            throw Unsupported(path, $"added token '{content}' with {flag} true");
                    added.Add((token.GetProperty("id").GetInt32(), content));
                }

            return new TokenizerJson
            {
                Vocabulary = vocabulary,
                Merges = merges,
                IgnoreMerges = ignoreMerges,
                AddedTokens = added,
                NormalizeToNfc = ReadNormalizer(path, root),
                PreTokenization = ReadPreTokenizer(path, root),
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"'{path}' is not a Hugging Face tokenizer.json this reader supports: {e.Message}", e);
        }
    }

    private static bool ReadNormalizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out JsonElement normalizer) || normalizer.ValueKind == JsonValueKind.Null) return false;
        string? type = normalizer.GetProperty("type").GetString();
        return type == "NFC" ? true : throw Unsupported(path, $"normalizer '{type}' (only null or \"NFC\")");
    }

    private static List<PreTokenizationStep> ReadPreTokenizer(string path, JsonElement root)
    {
        var steps = new List<PreTokenizationStep>();
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement preTokenizer) || preTokenizer.ValueKind == JsonValueKind.Null)
            throw Unsupported(path, "a missing pre_tokenizer (byte-level BPE needs ByteLevel)");
        bool byteLevelSeen = false;
        void Add(JsonElement step)
        {
            string? type = step.GetProperty("type").GetString();
            switch (type)
            {
                case "Sequence":
                    foreach (JsonElement inner in step.GetProperty("pretokenizers").EnumerateArray()) Add(inner);
                    break;
                case "Split":
                    string behavior = step.GetProperty("behavior").GetString() ?? "";
                    if (behavior != "Isolated") throw Unsupported(path, $"Split behavior '{behavior}' (only \"Isolated\")");
                    if (step.TryGetProperty("invert", out JsonElement invert) && invert.ValueKind == JsonValueKind.True)
                        throw Unsupported(path, "Split with invert true");
                    JsonElement pattern = step.GetProperty("pattern");
                    string regex = pattern.TryGetProperty("Regex", out JsonElement r) ? r.GetString()!
                        : Regex.Escape(pattern.GetProperty("String").GetString()!);
                    steps.Add(new PreTokenizationStep(CreateRegex(regex), false));
                    break;
                case "ByteLevel":
                    byteLevelSeen = true;
                    bool useRegex = !step.TryGetProperty("use_regex", out JsonElement ur) || ur.ValueKind != JsonValueKind.False;
                    bool addPrefixSpace = step.TryGetProperty("add_prefix_space", out JsonElement aps) && aps.ValueKind == JsonValueKind.True;
                    steps.Add(new PreTokenizationStep(useRegex ? CreateRegex(Gpt2SplitPattern) : null, addPrefixSpace));
                    break;
                default:
                    throw Unsupported(path, $"pre-tokenizer '{type}'");
            }
        }
        Add(preTokenizer);
        if (!byteLevelSeen) throw Unsupported(path, "a pre_tokenizer without ByteLevel (only byte-level BPE is supported)");
        if (root.TryGetProperty("decoder", out JsonElement decoder) && decoder.ValueKind != JsonValueKind.Null
            && decoder.GetProperty("type").GetString() != "ByteLevel")
            throw Unsupported(path, $"decoder '{decoder.GetProperty("type").GetString()}' (only \"ByteLevel\")");
        return steps;
    }

    // The HF patterns are Oniguruma/fancy-regex syntax; the constructs they use ((?i:...), \p{L}, (?!\S)) mean the same in .NET.
    private static Regex CreateRegex(string pattern) => new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static void RequireNullOrFalse(string path, JsonElement model, string name, string what)
    {
        if (model.TryGetProperty(name, out JsonElement value) && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.False))
            throw Unsupported(path, $"{what} ({value.GetRawText()})");
    }

    private static void RequireEmpty(string path, JsonElement model, string name)
    {
        if (model.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString() != "")
            throw Unsupported(path, $"BPE {name} '{value.GetString()}'");
    }

    private static InvalidDataException Unsupported(string path, string what) =>
        new($"'{path}': unsupported {what}.");
}
