using System.Text;
using System.Text.Json;

namespace Saber.Onnx;

/// <summary>
/// A character vocabulary read from a model directory's <c>tokenizer.json</c>
/// (<c>{"type": "characters", "vocabulary": [...], "mask": "...", "eos": "...", "unknown": "..."}</c>):
/// one id per listed string, specials included; characters not in it encode to the unknown id.
/// </summary>
public sealed class CharacterTokenizer : IModelTokenizer
{
    private readonly string[] vocabulary;
    private readonly Dictionary<string, int> ids;

    private CharacterTokenizer(string[] vocabulary, int maskId, int eosId, int unknownId)
    {
        this.vocabulary = vocabulary;
        ids = vocabulary.Select((token, id) => (token, id)).ToDictionary(p => p.token, p => p.id);
        MaskId = maskId;
        EosId = eosId;
        UnknownId = unknownId;
        MaskGlyph = MaskGlyphs.FirstOrDefault(g => !ids.ContainsKey(g)) ?? vocabulary[maskId];
    }

    private static readonly string[] MaskGlyphs = ["\u2591", "\u2592", "\u00B7", "\u00A4"];   // ░ ▒ · ¤

    public int VocabularySize => vocabulary.Length;
    public int MaskId { get; }
    public int EosId { get; }
    public int UnknownId { get; }

    int? ITextTokenizer.EosId => EosId;

    /// <summary>As <see cref="Encode(string)"/>, but a character whose id is the mask id reads as the unknown id: a prompt never holds a mask.</summary>
    int[] ITextTokenizer.Encode(string text)
    {
        int[] ids = Encode(text);
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] == MaskId) ids[i] = UnknownId;
        return ids;
    }

    string ITextTokenizer.Decode(ReadOnlySpan<int> tokens) => Decode(tokens);

    /// <exception cref="InvalidDataException">The file is not a character tokenizer description.</exception>
    public static CharacterTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"No tokenizer at '{path}'.", path);
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = document.RootElement;
            if (root.GetProperty("type").GetString() != "characters")
                throw new InvalidDataException($"'{path}': only \"type\": \"characters\" tokenizers are supported.");
            string[] vocabulary = root.GetProperty("vocabulary").EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
            if (vocabulary.Distinct().Count() != vocabulary.Length)
                throw new InvalidDataException($"'{path}': the vocabulary lists a token twice.");
            int Id(string key)
            {
                string token = root.GetProperty(key).GetString() ?? "";
                int id = Array.IndexOf(vocabulary, token);
                return id >= 0 ? id : throw new InvalidDataException($"'{path}': {key} token '{token}' is not in the vocabulary.");
            }
            int mask = Id("mask"), eos = Id("eos"), unknown = Id("unknown");
            if (mask == eos || mask == unknown || eos == unknown)
                throw new InvalidDataException($"'{path}': the mask, eos and unknown tokens must be three different tokens.");
            return new CharacterTokenizer(vocabulary, mask, eos, unknown);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"'{path}' is not a tokenizer description: {e.Message}", e);
        }
    }

    /// <summary>
    /// A glyph for masked positions when text is shown: one that is not itself in the vocabulary, so that a
    /// mask and a real character never look alike.
    /// </summary>
    public string MaskGlyph { get; }

    /// <summary>One id per character: per Unicode scalar value, so an emoji outside the BMP is one character (an unpaired surrogate reads as U+FFFD).</summary>
    public int[] Encode(string text) => Encode(text, out _);

    /// <summary>Like <see cref="Encode(string)"/>; <paramref name="unknown"/> lists the distinct characters that are not in the vocabulary (encoded as <see cref="UnknownId"/>), in order of appearance.</summary>
    public int[] Encode(string text, out IReadOnlyList<string> unknown)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new List<int>(text.Length);
        List<string>? missing = null;
        foreach (Rune rune in text.EnumerateRunes())
        {
            string character = rune.ToString();
            if (ids.TryGetValue(character, out int id))
            {
                result.Add(id);
                continue;
            }
            result.Add(UnknownId);
            missing ??= [];
            if (!missing.Contains(character)) missing.Add(character);
        }
        unknown = (IReadOnlyList<string>?)missing ?? [];
        return result.ToArray();
    }

    /// <summary>Text of the ids; stops at the first end-of-text id; masks show as <paramref name="mask"/> (default: <see cref="MaskGlyph"/>).</summary>
    public string Decode(ReadOnlySpan<int> tokens, string? mask = null)
    {
        var text = new StringBuilder(tokens.Length);
        foreach (int id in tokens)
        {
            if (id == EosId) break;
            if (id < 0 || id >= vocabulary.Length) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"Token id outside [0, {vocabulary.Length}).");
            text.Append(id == MaskId ? mask ?? MaskGlyph : vocabulary[id]);
        }
        return text.ToString();
    }
}
