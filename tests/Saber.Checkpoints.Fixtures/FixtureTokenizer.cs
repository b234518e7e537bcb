using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// Writes a small byte-level BPE tokenizer in a family's Hugging Face format: <c>tokenizer.json</c> (ids as
/// <see cref="FixtureVocabulary"/> lays them out) and <c>tokenizer_config.json</c> (the family's special-token fields and
/// its real <c>chat_template</c>).
/// </summary>
/// <remarks>
/// Ids 0-255 are the byte-level symbols in byte order (id = byte value); ids 256 onwards are the
/// <see cref="FixtureVocabulary.Merges"/> merges, learnt by plain BPE training on <see cref="TrainingText"/>
/// (pre-tokenized with the family's split regex; the most frequent pair first, ties broken by the ordinal order of the
/// pair) so that common English and Python pairs merge; then the family's special tokens as added tokens. The file
/// layout follows the families' files: LLaDA-8B's Llama-3-style <c>Sequence[Split, ByteLevel]</c> with merges as
/// <c>"a b"</c> strings, and Dream's Qwen2 layout (NFC normalizer, Qwen2 split regex) with merges as <c>[a, b]</c> pairs.
/// Everything is deterministic: the same family writes the same bytes.
/// </remarks>
public static class FixtureTokenizer
{
    /// <summary>The text the merges are learnt from: a little English and a little Python.</summary>
    public const string TrainingText =
        "The model reads the prompt and then writes the answer. The answer is in the text that the model writes.\n" +
        "In the beginning there is the question; then the model thinks, and the thinking ends with the answer.\n" +
        "def add(a, b):\n    return a + b\n\n" +
        "def main():\n    for item in items:\n        if item is not None:\n            print(item)\n    return 0\n\n" +
        "class Tokenizer:\n    def __init__(self, text):\n        self.text = text\n\n    def tokens(self):\n        return self.text.split()\n";

    /// <summary>
    /// LLaDA-8B-Instruct's chat_template, as its tokenizer_config.json has it (the JSON's "\n" escapes are newline
    /// characters inside the template's string literals). It always ends with the assistant header, whatever
    /// add_generation_prompt is, and trims each message's content.
    /// </summary>
    public const string LLaDAChatTemplate =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

    /// <summary>
    /// Dream-v0-Instruct-7B's chat_template: Qwen2's ChatML template, which adds the default system prompt
    /// "You are a helpful assistant." when the conversation does not start with a system turn.
    /// </summary>
    public const string DreamChatTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// <summary>Llama 3's split regex (LLaDA-8B's tokenizer is Llama-3-style): numbers in runs of up to three digits.</summary>
    public const string LLaDASplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's split regex (Dream's tokenizer is Qwen2's): one digit at a time.</summary>
    public const string DreamSplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The family's special tokens (id, text) in id order.</summary>
    public static IReadOnlyList<(int Id, string Text)> SpecialTokens(Family family) => family switch
    {
        Family.LLaDA =>
        [
            (FixtureVocabulary.LLaDA.Bos, "<|startoftext|>"), (FixtureVocabulary.LLaDA.Eos, "<|endoftext|>"),
            (FixtureVocabulary.LLaDA.Mask, "<|mdm_mask|>"), (FixtureVocabulary.LLaDA.StartHeader, "<|start_header_id|>"),
            (FixtureVocabulary.LLaDA.EndHeader, "<|end_header_id|>"), (FixtureVocabulary.LLaDA.Eot, "<|eot_id|>"),
        ],
        Family.Dream =>
        [
            (FixtureVocabulary.Dream.EndOfText, "<|endoftext|>"), (FixtureVocabulary.Dream.ImStart, "<|im_start|>"),
            (FixtureVocabulary.Dream.ImEnd, "<|im_end|>"), (FixtureVocabulary.Dream.Mask, "<|mask|>"),
        ],
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, null),
    };

    /// <summary>The learnt merges in rank order, each as its two byte-level symbols; merge i is id 256 + i.</summary>
    public static IReadOnlyList<(string Left, string Right)> LearnMerges(Family family)
    {
        var split = new Regex(family == Family.LLaDA ? LLaDASplitPattern : DreamSplitPattern, RegexOptions.CultureInvariant);
        var wordCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match match in split.Matches(TrainingText))
            wordCounts[match.Value] = wordCounts.GetValueOrDefault(match.Value) + 1;
        List<(List<string> Symbols, int Count)> words = wordCounts
            .Select(p => (Encoding.UTF8.GetBytes(p.Key).Select(b => ByteCharacters[b].ToString()).ToList(), p.Value)).ToList();

        var merges = new List<(string, string)>();
        while (merges.Count < FixtureVocabulary.Merges)
        {
            var pairCounts = new Dictionary<(string, string), int>();
            foreach ((List<string> symbols, int count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    pairCounts[(symbols[i], symbols[i + 1])] = pairCounts.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairCounts.Count == 0) throw new InvalidOperationException("The training text is too small for the fixture's merges.");
            (string left, string right) = pairCounts
                .OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal).ThenBy(p => p.Key.Item2, StringComparer.Ordinal)
                .First().Key;
            merges.Add((left, right));
            foreach ((List<string> symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = left + right;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return merges;
    }

    /// <summary>
    /// Replaces the <c>tokenizer.json</c> in <paramref name="directory"/> by the same tokenizer as a Qwen2-style slow
    /// tokenizer's files, as Dream's repositories ship it: <c>vocab.json</c> and <c>merges.txt</c> (the added tokens stay
    /// in tokenizer_config.json's <c>added_tokens_decoder</c>).
    /// </summary>
    public static void ConvertToSlowFiles(string directory)
    {
        string path = Path.Combine(directory, "tokenizer.json");
        System.Text.Json.Nodes.JsonNode model = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!["model"]!;
        File.WriteAllText(Path.Combine(directory, "vocab.json"), model["vocab"]!.ToJsonString());
        File.WriteAllLines(Path.Combine(directory, "merges.txt"),
            model["merges"]!.AsArray().Select(m => m![0]!.GetValue<string>() + " " + m[1]!.GetValue<string>()).Prepend("#version: 0.2"));
        File.Delete(path);
    }

    /// <summary>Writes <c>tokenizer.json</c> and <c>tokenizer_config.json</c> of <paramref name="family"/> into <paramref name="directory"/> (created if missing).</summary>
    public static void Write(Family family, string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, "tokenizer.json"), Json(w => WriteTokenizerJson(w, family)));
        File.WriteAllBytes(Path.Combine(directory, "tokenizer_config.json"), Json(w => WriteTokenizerConfig(w, family)));
    }

    private static void WriteTokenizerJson(Utf8JsonWriter w, Family family)
    {
        bool llada = family == Family.LLaDA;
        IReadOnlyList<(string Left, string Right)> merges = LearnMerges(family);
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach ((int id, string text) in SpecialTokens(family))
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", text);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (llada) w.WriteNull("normalizer");
        else
        {
            w.WriteStartObject("normalizer");
            w.WriteString("type", "NFC");
            w.WriteEndObject();
        }
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        w.WriteStartObject();
        w.WriteString("type", "Split");
        w.WriteStartObject("pattern");
        w.WriteString("Regex", llada ? LLaDASplitPattern : DreamSplitPattern);
        w.WriteEndObject();
        w.WriteString("behavior", "Isolated");
        w.WriteBoolean("invert", false);
        w.WriteEndObject();
        WriteByteLevel(w, null, addPrefixSpace: false, trimOffsets: llada, useRegex: false);
        w.WriteEndArray();
        w.WriteEndObject();
        WriteByteLevel(w, "post_processor", addPrefixSpace: llada, trimOffsets: false, useRegex: llada);
        WriteByteLevel(w, "decoder", addPrefixSpace: llada, trimOffsets: llada, useRegex: llada);
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        if (llada) { w.WriteNull("continuing_subword_prefix"); w.WriteNull("end_of_word_suffix"); }
        else { w.WriteString("continuing_subword_prefix", ""); w.WriteString("end_of_word_suffix", ""); }
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int b = 0; b < 256; b++) w.WriteNumber(ByteCharacters[b].ToString(), b);
        for (int i = 0; i < merges.Count; i++) w.WriteNumber(merges[i].Left + merges[i].Right, 256 + i);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach ((string left, string right) in merges)
        {
            if (llada) w.WriteStringValue(left + " " + right);
            else
            {
                w.WriteStartArray();
                w.WriteStringValue(left);
                w.WriteStringValue(right);
                w.WriteEndArray();
            }
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteByteLevel(Utf8JsonWriter w, string? property, bool addPrefixSpace, bool trimOffsets, bool useRegex)
    {
        if (property is null) w.WriteStartObject(); else w.WriteStartObject(property);
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", addPrefixSpace);
        w.WriteBoolean("trim_offsets", trimOffsets);
        w.WriteBoolean("use_regex", useRegex);
        w.WriteEndObject();
    }

    private static void WriteTokenizerConfig(Utf8JsonWriter w, Family family)
    {
        bool llada = family == Family.LLaDA;
        w.WriteStartObject();
        if (llada)
        {
            w.WriteBoolean("add_bos_token", false);
            w.WriteBoolean("add_eos_token", false);
        }
        else w.WriteBoolean("add_prefix_space", false);
        w.WriteStartObject("added_tokens_decoder");
        foreach ((int id, string text) in SpecialTokens(family))
        {
            w.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", text);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        if (llada)
        {
            w.WriteString("bos_token", "<|startoftext|>");
            w.WriteString("chat_template", LLaDAChatTemplate);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteString("eos_token", "<|endoftext|>");
            w.WriteBoolean("fast_tokenizer", true);
            w.WriteString("pad_token", "<|endoftext|>");
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        }
        else
        {
            w.WriteStartArray("additional_special_tokens");
            w.WriteStringValue("<|im_start|>");
            w.WriteStringValue("<|im_end|>");
            w.WriteEndArray();
            w.WriteNull("bos_token");
            w.WriteString("chat_template", DreamChatTemplate);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteString("eos_token", "<|endoftext|>");
            w.WriteString("errors", "replace");
            w.WriteString("mask_token", "<|mask|>");
            w.WriteNumber("model_max_length", 131072);
            w.WriteString("pad_token", "<|endoftext|>");
            w.WriteBoolean("split_special_tokens", false);
            w.WriteString("tokenizer_class", "Qwen2Tokenizer");
            w.WriteNull("unk_token");
        }
        w.WriteEndObject();
    }

    private static byte[] Json(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        // Raw non-ASCII characters ('Ġ' rather than \u0120), as the Hugging Face libraries write them.
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            write(writer);
        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }

    /// <summary>GPT-2's byte-level alphabet: printable Latin-1 bytes as themselves, the others as U+0100 upwards (a space is 'Ġ').</summary>
    internal static readonly char[] ByteCharacters = BuildByteCharacters();

    private static char[] BuildByteCharacters()
    {
        var characters = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            characters[b] = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF ? (char)b : (char)next++;
        return characters;
    }
}
