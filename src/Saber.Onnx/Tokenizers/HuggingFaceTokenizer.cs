using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Saber.Onnx.Tokenizers;

/// <summary>
/// A byte-level BPE tokenizer read from a Hugging Face model directory (<c>tokenizer.json</c> and
/// <c>tokenizer_config.json</c>), as LLaDA-8B and Dream/Qwen2 ship it.
/// </summary>
/// <remarks>
/// <para><b>Encode</b> splits the text at added tokens first (they are never split, so <c>&lt;|eot_id|&gt;</c> in a
/// prompt is that one id), except the mask token: its text encodes as ordinary bytes, so Encode never yields the mask
/// id. Each piece between them is normalized (NFC if the file says so), pre-tokenized by the file's split regexes and
/// merged by Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> in byte-level mode. No bos is added: the chat template does that.</para>
/// <para><b>Decode</b> maps ids to bytes and decodes UTF-8 itself instead of using BpeTokenizer.Decode, which turns an
/// incomplete character into U+FFFD and so is not prefix-stable: an incomplete UTF-8 sequence at the end is held back.
/// It stops at the first of <see cref="EndOfTextIds"/>; ids at or past <see cref="VocabularySize"/> (a model's logits
/// can be wider than its vocabulary) decode to nothing.</para>
/// </remarks>
public sealed class HuggingFaceTokenizer : ITextTokenizer
{
    /// <summary>The glyph masked positions show as in <see cref="Decode(ReadOnlySpan{int})"/>.</summary>
    public const string DefaultMaskGlyph = "\u2591";   // ░

    private static readonly string[] EndOfTurnTokens = ["<|eot_id|>", "<|im_end|>"];
    private static readonly string[] WellKnownMaskTokens = ["<|mdm_mask|>", "<|mask|>"];

    private readonly BpeTokenizer bpe;
    private readonly TokenizerJson.PreTokenizationStep[] preTokenization;
    private readonly bool normalizeToNfc;
    private readonly Regex? addedTokenSplitter;
    private readonly Dictionary<string, int> addedTokenIds;
    private readonly Dictionary<string, int>? wholeWordIds;
    private readonly byte[]?[] bytesOfId;
    private readonly HashSet<int> endOfTextIds;

    private HuggingFaceTokenizer(TokenizerJson file, TokenizerConfig config, HuggingFaceTokenizerOptions options, IEnumerable<int> configuredEndIds, string directory)
    {
        preTokenization = file.PreTokenization.ToArray();
        normalizeToNfc = file.NormalizeToNfc && CanNormalize;
        addedTokenIds = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach ((int id, string content) in file.AddedTokens) addedTokenIds[content] = id;

        VocabularySize = Math.Max(file.Vocabulary.Count == 0 ? 0 : file.Vocabulary.Values.Max() + 1,
                                  file.AddedTokens.Count == 0 ? 0 : file.AddedTokens.Max(a => a.Id) + 1);
        bytesOfId = new byte[]?[VocabularySize];
        foreach ((string token, int id) in file.Vocabulary)
        {
            var bytes = new byte[token.Length];
            for (int i = 0; i < token.Length; i++)
                if (!ByteLevelAlphabet.TryGetByte(token[i], out bytes[i]))
                    throw new InvalidDataException($"'{directory}': vocabulary token '{token}' (id {id}) is not in the byte-level alphabet.");
            bytesOfId[id] = bytes;
        }
        foreach ((int id, string content) in file.AddedTokens) bytesOfId[id] = Encoding.UTF8.GetBytes(content);

        MaskId = options.MaskId ?? LookUp(options.MaskToken ?? config.MaskToken)
                 ?? WellKnownMaskTokens.Select(LookUp).FirstOrDefault(id => id is not null);
        if (MaskId is { } mask && (mask < 0 || mask >= VocabularySize))
            throw new InvalidDataException($"'{directory}': mask id {mask} is outside the vocabulary [0, {VocabularySize}).");

        BosId = LookUp(config.BosToken);
        BosToken = config.BosToken;
        EosToken = config.EosToken;
        AddBosToken = config.AddBosToken;
        ChatTemplate = config.ChatTemplate;

        endOfTextIds = options.EndOfTextIds is { } given ? [.. given]
            : [.. configuredEndIds, .. new[] { config.EosToken }.Concat(EndOfTurnTokens).Select(LookUp).OfType<int>()];
        EosId = options.EosId ?? LookUp(config.EosToken) ?? (endOfTextIds.Count > 0 ? endOfTextIds.Min() : null);
        if (EosId is { } eos) endOfTextIds.Add(eos);

        // The mask is left out of the added tokens Encode recognizes: a prompt must never hold a mask.
        string[] splitTokens = addedTokenIds.Where(p => p.Value != MaskId).Select(p => p.Key)
            .OrderByDescending(s => s.Length).ThenBy(s => s, StringComparer.Ordinal).ToArray();
        addedTokenSplitter = splitTokens.Length == 0 ? null
            : new Regex(string.Join("|", splitTokens.Select(Regex.Escape)), RegexOptions.Compiled | RegexOptions.CultureInvariant);

        if (file.IgnoreMerges) wholeWordIds = file.Vocabulary;   // HF: a word already in the vocabulary is one id, merges or not.
        bpe = BpeTokenizer.Create(new BpeOptions(file.Vocabulary) { Merges = file.Merges, ByteLevel = true });
    }

    // string.Normalize silently does nothing under InvariantGlobalization (this repository's default): probe it once.
    private static readonly bool CanNormalize = "e\u0301".Normalize(NormalizationForm.FormC).Length == 1;

    /// <summary>
    /// True when tokenizer.json asks for NFC and this process can apply it. Under InvariantGlobalization (no ICU)
    /// <see cref="string.Normalize()"/> does nothing, so there Encode takes the text as given: a decomposed character
    /// (rare in prompts) then encodes to other ids than transformers gives, though it still decodes back to the same text.
    /// </summary>
    public bool NormalizesToNfc => normalizeToNfc;

    /// <summary>How many ids the tokenizer knows (vocabulary and added tokens): one past the largest id.</summary>
    public int VocabularySize { get; }

    /// <summary>The mask id, or null when none is known (see <see cref="HuggingFaceTokenizerOptions.MaskToken"/>).</summary>
    public int? MaskId { get; }

    /// <inheritdoc />
    public int? EosId { get; }

    /// <summary>Every id that ends generated text (<see cref="EosId"/> among them).</summary>
    public IReadOnlySet<int> EndOfTextIds => endOfTextIds;

    /// <summary>The bos id (<c>tokenizer_config.json</c>'s <c>bos_token</c>), or null.</summary>
    public int? BosId { get; }

    /// <summary><c>tokenizer_config.json</c>'s <c>bos_token</c> text (what a chat template's <c>bos_token</c> is), or null.</summary>
    public string? BosToken { get; }

    /// <summary><c>tokenizer_config.json</c>'s <c>eos_token</c> text, or null.</summary>
    public string? EosToken { get; }

    /// <summary><c>tokenizer_config.json</c>'s <c>add_bos_token</c> (false when absent). <see cref="Encode"/> never adds one itself.</summary>
    public bool AddBosToken { get; }

    /// <summary><c>tokenizer_config.json</c>'s <c>chat_template</c>, or null.</summary>
    public string? ChatTemplate { get; }

    /// <summary>
    /// Reads <c>tokenizer.json</c> and, if present, <c>tokenizer_config.json</c>, <c>generation_config.json</c> and
    /// <c>config.json</c> (their eos ids) from <paramref name="directory"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">A file is malformed or describes something this tokenizer does not support.</exception>
    public static HuggingFaceTokenizer Load(string directory, HuggingFaceTokenizerOptions? options = null)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"No model directory '{directory}'.");
        string tokenizerPath = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(tokenizerPath)) throw new FileNotFoundException($"No tokenizer.json in '{directory}'.", tokenizerPath);
        TokenizerJson file = TokenizerJson.Read(tokenizerPath);
        TokenizerConfig config = TokenizerConfig.Read(Path.Combine(directory, "tokenizer_config.json"));
        var endIds = new List<int>();
        foreach (string name in new[] { "generation_config.json", "config.json" })
            endIds.AddRange(ReadEosIds(Path.Combine(directory, name)));
        return new HuggingFaceTokenizer(file, config, options ?? new HuggingFaceTokenizerOptions(), endIds, directory);
    }

    /// <summary>The id of an added (special) token, by its exact text; null if there is none.</summary>
    public int? GetSpecialTokenId(string text) => addedTokenIds.TryGetValue(text, out int id) ? id : null;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        int start = 0;
        if (addedTokenSplitter is not null)
            for (Match match = addedTokenSplitter.Match(text); match.Success; match = match.NextMatch())
            {
                EncodeOrdinary(text.AsSpan(start, match.Index - start), ids);
                ids.Add(addedTokenIds[match.Value]);
                start = match.Index + match.Length;
            }
        EncodeOrdinary(text.AsSpan(start), ids);
        return ids.ToArray();
    }

    private void EncodeOrdinary(ReadOnlySpan<char> segment, List<int> ids)
    {
        if (segment.IsEmpty) return;
        string text = segment.ToString();
        if (normalizeToNfc) text = text.Normalize(NormalizationForm.FormC);
        List<string> pieces = [text];
        foreach (TokenizerJson.PreTokenizationStep step in preTokenization)
        {
            if (step.Split is { } split) pieces = pieces.SelectMany(p => SplitIsolated(split, p)).ToList();
            if (step.AddPrefixSpace)
                for (int i = 0; i < pieces.Count; i++)
                    if (!pieces[i].StartsWith(' ')) pieces[i] = " " + pieces[i];
        }
        foreach (string piece in pieces)
        {
            if (wholeWordIds is not null && wholeWordIds.TryGetValue(ToByteLevel(piece), out int whole))
            {
                ids.Add(whole);
                continue;
            }
            ids.AddRange(bpe.EncodeToIds(piece.AsSpan(), considerPreTokenization: false, considerNormalization: false));
        }
    }

    // HF's Split with behavior "Isolated": every match is a piece, and so is the text between matches.
    private static IEnumerable<string> SplitIsolated(Regex split, string text)
    {
        int start = 0;
        for (Match match = split.Match(text); match.Success; match = match.NextMatch())
        {
            if (match.Length == 0) continue;
            if (match.Index > start) yield return text[start..match.Index];
            yield return match.Value;
            start = match.Index + match.Length;
        }
        if (start < text.Length) yield return text[start..];
    }

    private static string ToByteLevel(string piece)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(piece);
        return string.Create(bytes.Length, bytes, (chars, b) =>
        {
            for (int i = 0; i < b.Length; i++) chars[i] = ByteLevelAlphabet.CharacterOfByte[b[i]];
        });
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> tokens) => Decode(tokens, DefaultMaskGlyph);

    /// <summary>
    /// The text of <paramref name="tokens"/> up to the first end-of-text id, masked positions shown as
    /// <paramref name="maskGlyph"/>; prefix-stable (see <see cref="ITextTokenizer"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative id.</exception>
    public string Decode(ReadOnlySpan<int> tokens, string maskGlyph)
    {
        ArgumentNullException.ThrowIfNull(maskGlyph);
        var bytes = new ArrayBufferWriter<byte>(tokens.Length * 4 + 16);
        byte[] glyph = Encoding.UTF8.GetBytes(maskGlyph);
        foreach (int id in tokens)
        {
            if (id < 0) throw new ArgumentOutOfRangeException(nameof(tokens), id, "Token ids are not negative.");
            if (endOfTextIds.Contains(id)) break;
            if (id >= VocabularySize) continue;
            bytes.Write(id == MaskId ? glyph : bytesOfId[id] ?? []);
        }
        ReadOnlySpan<byte> written = bytes.WrittenSpan;
        return Encoding.UTF8.GetString(written[..CompleteLength(written)]);
    }

    /// <summary>
    /// The length of <paramref name="bytes"/> without a trailing incomplete UTF-8 sequence: one that is a valid start
    /// of a character that more bytes could complete. Invalid bytes are not held back (they decode to U+FFFD whatever
    /// follows), so the text of a prefix is always a prefix of the text of the whole.
    /// </summary>
    internal static int CompleteLength(ReadOnlySpan<byte> bytes)
    {
        for (int back = 1; back <= 3 && back <= bytes.Length; back++)
        {
            int lead = bytes[^back];
            if ((lead & 0xC0) == 0x80) continue;   // a continuation byte: look further back for the lead
            int needed = lead switch { >= 0xC2 and <= 0xDF => 2, >= 0xE0 and <= 0xEF => 3, >= 0xF0 and <= 0xF4 => 4, _ => 0 };
            if (needed <= back) return bytes.Length;   // complete, or not a lead byte at all
            if (back >= 2)
            {
                // The second byte's range depends on the lead (no overlongs, no surrogates, nothing past U+10FFFF).
                int second = bytes[^(back - 1)];
                (int low, int high) = lead switch { 0xE0 => (0xA0, 0xBF), 0xED => (0x80, 0x9F), 0xF0 => (0x90, 0xBF), 0xF4 => (0x80, 0x8F), _ => (0x80, 0xBF) };
                if (second < low || second > high) return bytes.Length;
            }
            return bytes.Length - back;
        }
        return bytes.Length;
    }

    private int? LookUp(string? token) => token is not null && addedTokenIds.TryGetValue(token, out int id) ? id : null;

    private static IEnumerable<int> ReadEosIds(string path)
    {
        if (!File.Exists(path)) return [];
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            if (!document.RootElement.TryGetProperty("eos_token_id", out JsonElement eos)) return [];
            return eos.ValueKind switch
            {
                JsonValueKind.Number => [eos.GetInt32()],
                JsonValueKind.Array => eos.EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                _ => [],
            };
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }
}

/// <summary>The fields of <c>tokenizer_config.json</c> the tokenizer and the chat template use.</summary>
internal sealed record TokenizerConfig(string? BosToken, string? EosToken, string? MaskToken, bool AddBosToken, string? ChatTemplate)
{
    public static TokenizerConfig Read(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig(null, null, null, false, null);
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = document.RootElement;
            // A token is either its text or an AddedToken object {"content": ...}.
            string? Token(string name) => !root.TryGetProperty(name, out JsonElement e) ? null : e.ValueKind switch
            {
                JsonValueKind.String => e.GetString(),
                JsonValueKind.Object => e.GetProperty("content").GetString(),
                _ => null,
            };
            bool addBos = root.TryGetProperty("add_bos_token", out JsonElement ab) && ab.ValueKind == JsonValueKind.True;
            string? template = root.TryGetProperty("chat_template", out JsonElement ct) && ct.ValueKind == JsonValueKind.String ? ct.GetString() : null;
            return new TokenizerConfig(Token("bos_token"), Token("eos_token"), Token("mask_token"), addBos, template);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"'{path}' is not a tokenizer_config.json: {e.Message}", e);
        }
    }
}
