using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Saber.Checkpoints.Fixtures;
using Saber.Onnx.Tokenizers;

namespace Saber.Onnx.Tests;

/// <summary>
/// HuggingFaceTokenizer on the fixture tokenizers (FixtureTokenizer writes them in the families' HF formats). The known
/// encodings are worked out by hand from the fixture's learnt merges (FixtureTokenizer.LearnMerges; the ranks used are
/// checked in <see cref="TheMergesTheHandWorkedEncodingsUse"/>): ids 0-255 are bytes, 256 + i is merge i.
/// </summary>
public class HuggingFaceTokenizerTests
{
    private static readonly string Root = Path.Combine(Path.GetTempPath(), "saber-hf-tokenizer-tests-" + Environment.ProcessId);
    private static string Directory(Family family) => Path.Combine(Root, family.ToString());

    private static HuggingFaceTokenizer LLaDA => Load(Family.LLaDA);
    private static HuggingFaceTokenizer Dream => Load(Family.Dream);
    private static readonly Dictionary<Family, HuggingFaceTokenizer> Loaded = [];

    private static HuggingFaceTokenizer Load(Family family)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(family, out HuggingFaceTokenizer? tokenizer))
                Loaded[family] = tokenizer = HuggingFaceTokenizer.Load(Directory(family));
            return tokenizer;
        }
    }

    [OneTimeSetUp]
    public void WriteFixtures()
    {
        foreach (Family family in Enum.GetValues<Family>()) FixtureTokenizer.Write(family, Directory(family));
    }

    [OneTimeTearDown]
    public void DeleteFixtures()
    {
        if (System.IO.Directory.Exists(Root)) System.IO.Directory.Delete(Root, recursive: true);
    }

    private static readonly string[] Samples =
    [
        "",
        "Hello, world!",
        "The model reads the prompt and then writes the answer.",
        "  leading and trailing spaces  \n\n\ttabs\r\nCRLF",
        "Numbers: 0 7 42 1234567 3.14159 -1e10",
        "def main():\n    for item in items:\n        if item is not None:\n            print(item)\n    return 0\n",
        "naïve café, Größe, ñandú, Ærøskøbing",
        "日本語のテキストと中文文本",
        "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and a lone 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "It's they're we've I'm you'll he'd IT'S",
        "a<|eot_id|>b<|im_end|>c<|endoftext|>",
    ];

    [Test]
    public void ReadsTheFamiliesSpecialIds()
    {
        Assert.Multiple(() =>
        {
            Assert.That(LLaDA.VocabularySize, Is.EqualTo(FixtureVocabulary.LLaDA.VocabSize));
            Assert.That(LLaDA.MaskId, Is.EqualTo(FixtureVocabulary.LLaDA.Mask));
            Assert.That(LLaDA.EosId, Is.EqualTo(FixtureVocabulary.LLaDA.Eos));
            Assert.That(LLaDA.BosId, Is.EqualTo(FixtureVocabulary.LLaDA.Bos));
            Assert.That(LLaDA.EndOfTextIds, Is.EquivalentTo(new[] { FixtureVocabulary.LLaDA.Eos, FixtureVocabulary.LLaDA.Eot }));
            Assert.That(LLaDA.BosToken, Is.EqualTo("<|startoftext|>"));
            Assert.That(LLaDA.EosToken, Is.EqualTo("<|endoftext|>"));
            Assert.That(LLaDA.AddBosToken, Is.False);
            Assert.That(LLaDA.ChatTemplate, Is.EqualTo(FixtureTokenizer.LLaDAChatTemplate));

            Assert.That(Dream.VocabularySize, Is.EqualTo(FixtureVocabulary.Dream.VocabSize));
            Assert.That(Dream.MaskId, Is.EqualTo(FixtureVocabulary.Dream.Mask));
            Assert.That(Dream.EosId, Is.EqualTo(FixtureVocabulary.Dream.EndOfText));
            Assert.That(Dream.BosId, Is.Null);
            Assert.That(Dream.EndOfTextIds, Is.EquivalentTo(new[] { FixtureVocabulary.Dream.EndOfText, FixtureVocabulary.Dream.ImEnd }));
            Assert.That(Dream.ChatTemplate, Is.EqualTo(FixtureTokenizer.DreamChatTemplate));
        });
    }

    [Test]
    public void TheMergesTheHandWorkedEncodingsUse()
    {
        // The ranks the expectations below were worked out with: if the learnt merges change, so must they.
        IReadOnlyList<(string Left, string Right)> merges = FixtureTokenizer.LearnMerges(Family.LLaDA);
        var expected = new Dictionary<int, (string, string)>
        {
            [257] = ("Ġ", "t"), [258] = ("Ġt", "h"), [259] = ("Ġth", "e"), [264] = (":", "Ċ"), [265] = ("d", "e"),
            [266] = ("Ġ", "a"), [271] = ("Ġa", "n"), [272] = (")", ":Ċ"), [273] = ("de", "f"), [274] = ("e", "l"),
            [275] = ("e", "r"), [280] = ("Ġ", "m"), [283] = ("de", "l"), [285] = ("o", "del"), [287] = ("s", "w"),
            [288] = ("sw", "er"), [295] = ("Ġan", "swer"), [297] = ("Ġm", "odel"),
        };
        foreach ((int id, (string, string) pair) in expected) Assert.That(merges[id - 256], Is.EqualTo(pair), $"merge {id}");
        Assert.That(FixtureTokenizer.LearnMerges(Family.Dream), Is.EqualTo(merges), "same text, same merges");
    }

    // "the": no merge joins t+h or h+e without a leading space. " model": d+e (265), Ġ+m (280), de+l (283), o+del (285), Ġm+odel (297).
    [TestCase("the model", new[] { 116, 104, 101, 297 })]
    // " the": Ġ+t (257), Ġt+h (258), Ġth+e (259). " answer": Ġ+a (266), Ġa+n (271), s+w (287), e+r (275), sw+er (288), Ġan+swer (295).
    [TestCase(" the answer", new[] { 259, 295 })]
    // Pieces "def" | " f" | "(x" | "):\n": d+e, de+f (273); no merges; no merges; :+\n (264), )+:\n (272).
    [TestCase("def f(x):\n", new[] { 273, 32, 102, 40, 120, 272 })]
    // "user" between two specials: e+r (275) only.
    [TestCase("<|start_header_id|>user<|end_header_id|>", new[] { 323, 117, 115, 275, 324 })]
    [TestCase("é😀", new[] { 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80 })]
    public void KnownEncodings(string text, int[] ids)
    {
        Assert.That(LLaDA.Encode(text), Is.EqualTo(ids));
        Assert.That(LLaDA.Decode(ids), Is.EqualTo(text));
    }

    [Test]
    public void DreamSplitsDigitsOneByOneAndNormalizesToNfc()
    {
        Assert.That(Dream.Encode("2024"), Is.EqualTo(new[] { 50, 48, 50, 52 }));
        // Dream's NFC normalizer composes e + combining acute where the process can normalize (not under InvariantGlobalization).
        bool canNormalize = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9";
        Assert.That(Dream.NormalizesToNfc, Is.EqualTo(canNormalize));
        Assert.That(Dream.Decode(Dream.Encode("e\u0301")), Is.EqualTo(canNormalize ? "\u00E9" : "e\u0301"));
        Assert.That(LLaDA.NormalizesToNfc, Is.False);
        Assert.That(LLaDA.Decode(LLaDA.Encode("e\u0301")), Is.EqualTo("e\u0301"), "LLaDA has no normalizer");
    }

    [Test]
    public void RoundTripsText([Values] Family family)
    {
        HuggingFaceTokenizer tokenizer = Load(family);
        foreach (string text in Samples.Append(FixtureTokenizer.TrainingText))
        {
            int[] ids = tokenizer.Encode(text);
            // Decode stops at the first end token (whose text Encode kept as that one id); Dream's NFC composes characters.
            int cut = FixtureTokenizer.SpecialTokens(family).Where(s => tokenizer.EndOfTextIds.Contains(s.Id))
                .Select(s => text.IndexOf(s.Text, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(text.Length).Min();
            string expected = tokenizer.NormalizesToNfc ? text[..cut].Normalize(NormalizationForm.FormC) : text[..cut];
            Assert.That(tokenizer.Decode(ids), Is.EqualTo(expected), text);
            Assert.That(ids, Has.All.InRange(0, tokenizer.VocabularySize - 1));
        }
    }

    [Test]
    public void SpecialTokensAreNeverSplit([Values] Family family)
    {
        HuggingFaceTokenizer tokenizer = Load(family);
        foreach ((int id, string text) in FixtureTokenizer.SpecialTokens(family))
        {
            if (id == tokenizer.MaskId) continue;
            Assert.That(tokenizer.Encode(text), Is.EqualTo(new[] { id }), text);
            Assert.That(tokenizer.GetSpecialTokenId(text), Is.EqualTo(id));
            int[] inText = tokenizer.Encode("x" + text + " y");
            Assert.That(inText, Is.EqualTo(new[] { 'x', id, ' ', 'y' }.Select(c => (int)c).Select((c, i) => i == 1 ? id : c)), text + " inside text");
        }
        Assert.That(tokenizer.GetSpecialTokenId("<|not_a_token|>"), Is.Null);
    }

    [Test]
    public void EncodeNeverYieldsTheMask([Values] Family family)
    {
        HuggingFaceTokenizer tokenizer = Load(family);
        string maskText = family == Family.LLaDA ? "<|mdm_mask|>" : "<|mask|>";
        int mask = tokenizer.MaskId!.Value;
        foreach (string text in new[] { maskText, "a" + maskText + maskText + "b", "<|" + maskText + "|>", maskText[..^1] })
        {
            int[] ids = tokenizer.Encode(text);
            Assert.That(ids, Has.None.EqualTo(mask), text);
            Assert.That(tokenizer.Decode(ids), Is.EqualTo(text), "the mask's text comes back as text");
        }
        var random = new Random(7);
        string[] fragments = ["<|", "|>", "mask", "mdm_", maskText, "<|eot_id|>", "<|im_end|>", " ", "x", "é"];
        for (int i = 0; i < 200; i++)
        {
            string text = string.Concat(Enumerable.Range(0, random.Next(1, 12)).Select(_ => fragments[random.Next(fragments.Length)]));
            Assert.That(tokenizer.Encode(text), Has.None.EqualTo(mask), text);
        }
    }

    [Test]
    public void DecodeIsPrefixStableForEveryPrefixOfEncodedText([Values] Family family)
    {
        HuggingFaceTokenizer tokenizer = Load(family);
        foreach (string text in Samples)
        {
            int[] ids = tokenizer.Encode(text).Where(id => !tokenizer.EndOfTextIds.Contains(id)).ToArray();
            string whole = tokenizer.Decode(ids);
            for (int k = 0; k <= ids.Length; k++)
                Assert.That(whole.StartsWith(tokenizer.Decode(ids.AsSpan(0, k)), StringComparison.Ordinal), Is.True, $"'{text}' prefix {k}");
        }
    }

    [Test]
    public void DecodeIsPrefixStableForRandomIds([Values] Family family)
    {
        // Random ids, bytes weighted towards UTF-8 lead and continuation bytes so that incomplete and invalid
        // sequences are common; masks, specials and ids past the vocabulary mixed in.
        HuggingFaceTokenizer tokenizer = Load(family);
        int width = family == Family.LLaDA ? FixtureVocabulary.LLaDA.EmbeddingSize : FixtureVocabulary.Dream.VocabSize + 3;
        int[] pool = Enumerable.Range(0, width).Where(id => !tokenizer.EndOfTextIds.Contains(id)).ToArray();
        var random = new Random(11);
        for (int round = 0; round < 500; round++)
        {
            int[] ids = Enumerable.Range(0, random.Next(1, 24))
                .Select(_ => random.Next(3) == 0 ? random.Next(0x80, 0x100) : pool[random.Next(pool.Length)]).ToArray();
            string whole = tokenizer.Decode(ids);
            for (int k = 0; k <= ids.Length; k++)
                Assert.That(whole.StartsWith(tokenizer.Decode(ids.AsSpan(0, k)), StringComparison.Ordinal), Is.True,
                    $"ids [{string.Join(", ", ids)}] prefix {k}");
        }
    }

    [Test]
    public void DecodeHoldsBackOnlyAnIncompleteCharacter()
    {
        Assert.Multiple(() =>
        {
            Assert.That(LLaDA.Decode([0x61, 0xF0, 0x9F]), Is.EqualTo("a"), "the start of a 4-byte character waits");
            Assert.That(LLaDA.Decode([0x61, 0xF0, 0x9F, 0x98, 0x80]), Is.EqualTo("a😀"));
            Assert.That(LLaDA.Decode([0xC3]), Is.EqualTo(""));
            Assert.That(LLaDA.Decode([0x80]), Is.EqualTo("\uFFFD"), "a lone continuation byte can never be completed");
            Assert.That(LLaDA.Decode([0xE0, 0x80]), Is.EqualTo("\uFFFD\uFFFD"), "E0 80 is an overlong start: invalid already");
            Assert.That(LLaDA.Decode([0xF0, 0x9F, 0x61]), Is.EqualTo("\uFFFDa"), "an interrupted character is one U+FFFD");
        });
    }

    [Test]
    public void IdsPastTheVocabularyDecodeToNothing()
    {
        int v = FixtureVocabulary.LLaDA.VocabSize;
        Assert.That(LLaDA.Decode([104, v, FixtureVocabulary.LLaDA.EmbeddingSize - 1, 105]), Is.EqualTo("hi"));
        Assert.That(Dream.Decode([104, FixtureVocabulary.Dream.VocabSize, 105]), Is.EqualTo("hi"));
        Assert.Throws<ArgumentOutOfRangeException>(() => LLaDA.Decode([104, -1]));
    }

    [Test]
    public void DecodeStopsAtEveryEndToken()
    {
        Assert.Multiple(() =>
        {
            Assert.That(LLaDA.Decode([104, 105, FixtureVocabulary.LLaDA.Eot, 106]), Is.EqualTo("hi"));
            Assert.That(LLaDA.Decode([104, 105, FixtureVocabulary.LLaDA.Eos, 106]), Is.EqualTo("hi"));
            Assert.That(Dream.Decode([104, 105, FixtureVocabulary.Dream.ImEnd, 106]), Is.EqualTo("hi"));
            Assert.That(Dream.Decode([104, 105, FixtureVocabulary.Dream.EndOfText, 106]), Is.EqualTo("hi"));
            Assert.That(Dream.Decode([FixtureVocabulary.Dream.ImStart, 104]), Is.EqualTo("<|im_start|>h"), "other specials show as their text");
        });
    }

    [Test]
    public void MasksShowAsTheGlyph()
    {
        Assert.That(LLaDA.Decode([104, FixtureVocabulary.LLaDA.Mask, 105], "_"), Is.EqualTo("h_i"));
        Assert.That(LLaDA.Decode([104, FixtureVocabulary.LLaDA.Mask, 105]), Is.EqualTo("h" + HuggingFaceTokenizer.DefaultMaskGlyph + "i"));
        Assert.That(Dream.Decode([FixtureVocabulary.Dream.Mask, FixtureVocabulary.Dream.Mask], "?"), Is.EqualTo("??"));
    }

    [Test]
    public void OptionsOverrideTheEndIdsAndTheMask()
    {
        var options = new HuggingFaceTokenizerOptions { EndOfTextIds = [FixtureVocabulary.LLaDA.Eot], MaskId = FixtureVocabulary.LLaDA.Bos };
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(Directory(Family.LLaDA), options);
        Assert.That(tokenizer.MaskId, Is.EqualTo(FixtureVocabulary.LLaDA.Bos));
        // The primary eos (tokenizer_config's) always ends text too.
        Assert.That(tokenizer.EndOfTextIds, Is.EquivalentTo(new[] { FixtureVocabulary.LLaDA.Eot, FixtureVocabulary.LLaDA.Eos }));
        Assert.That(tokenizer.Encode("<|startoftext|>"), Has.None.EqualTo(FixtureVocabulary.LLaDA.Bos), "the mask is never encoded");
    }

    [Test]
    public void AMaskThatBpeCouldProduceIsRejected()
    {
        var error = Assert.Throws<InvalidDataException>(() =>
            HuggingFaceTokenizer.Load(Directory(Family.LLaDA), new HuggingFaceTokenizerOptions { MaskId = 297 }));
        Assert.That(error!.Message, Does.Contain("mask id 297 is an ordinary vocabulary token"));
    }

    [Test]
    public void ReadsEosIdsFromGenerationConfigAndConfig()
    {
        string directory = Path.Combine(Root, "with-configs");
        FixtureTokenizer.Write(Family.Dream, directory);
        File.WriteAllText(Path.Combine(directory, "generation_config.json"), "{\"eos_token_id\": [104, 105]}");
        File.WriteAllText(Path.Combine(directory, "config.json"), "{\"eos_token_id\": 106}");
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(directory);
        Assert.That(tokenizer.EndOfTextIds, Is.SupersetOf(new[] { 104, 105, 106, FixtureVocabulary.Dream.EndOfText, FixtureVocabulary.Dream.ImEnd }));
    }

    [TestCase("model.type", "\"WordPiece\"", "model type 'WordPiece'")]
    [TestCase("pre_tokenizer", "{\"type\": \"Metaspace\"}", "pre-tokenizer 'Metaspace'")]
    [TestCase("normalizer", "{\"type\": \"NFKC\"}", "normalizer 'NFKC'")]
    [TestCase("model.byte_fallback", "true", "byte_fallback")]
    [TestCase("decoder", "{\"type\": \"WordPiece\"}", "decoder 'WordPiece'")]
    public void RejectsWhatItCannotReproduce(string property, string json, string message)
    {
        string directory = Path.Combine(Root, "unsupported-" + property.Replace('.', '-'));
        FixtureTokenizer.Write(Family.Dream, directory);
        string path = Path.Combine(directory, "tokenizer.json");
        JsonNode root = JsonNode.Parse(File.ReadAllText(path))!;
        string[] parts = property.Split('.');
        JsonObject parent = parts.Length == 1 ? root.AsObject() : root[parts[0]]!.AsObject();
        parent[parts[^1]] = JsonNode.Parse(json);
        File.WriteAllText(path, root.ToJsonString());
        var error = Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.Load(directory));
        Assert.That(error!.Message, Does.Contain(message));
    }

    [TestCase(false, new[] { 104, 274, 108, 111 })]   // merges only: e+l (274) is the one that applies to "hello"
    [TestCase(true, new[] { 400 })]                    // ignore_merges: a word in the vocabulary is that id
    public void IgnoreMergesTakesWholeWordsFromTheVocabulary(bool ignoreMerges, int[] ids)
    {
        string directory = Path.Combine(Root, "ignore-merges-" + ignoreMerges);
        FixtureTokenizer.Write(Family.LLaDA, directory);
        string path = Path.Combine(directory, "tokenizer.json");
        JsonNode root = JsonNode.Parse(File.ReadAllText(path))!;
        root["model"]!["ignore_merges"] = ignoreMerges;
        root["model"]!["vocab"]!["hello"] = 400;
        File.WriteAllText(path, root.ToJsonString());
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(directory);
        Assert.That(tokenizer.Encode("hello"), Is.EqualTo(ids));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo("hello"));
    }

    [Test]
    public void ByteLevelAloneSplitsWithGpt2sRegexAfterThePrefixSpace()
    {
        // pre_tokenizer ByteLevel(add_prefix_space, use_regex): " 123abc" splits into " 123" and "abc" (GPT-2's regex
        // takes " ?\p{N}+" then "\p{L}+"), so "abc" gets no space of its own.
        string directory = Path.Combine(Root, "byte-level-alone");
        FixtureTokenizer.Write(Family.LLaDA, directory);
        string path = Path.Combine(directory, "tokenizer.json");
        JsonNode root = JsonNode.Parse(File.ReadAllText(path))!;
        root["pre_tokenizer"] = JsonNode.Parse("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}");
        File.WriteAllText(path, root.ToJsonString());
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(directory);
        Assert.That(tokenizer.Encode("123abc"), Is.EqualTo(new[] { 32, 49, 50, 51, 97, 98, 99 }));
        // " the": Ġ+t, Ġt+h, Ġth+e (259) once the prefix space is there.
        Assert.That(tokenizer.Encode("the"), Is.EqualTo(new[] { 259 }));
    }

    [Test]
    public void ReadsAQwen2SlowTokenizerWithoutTokenizerJson()
    {
        // Dream ships DreamTokenizer (Qwen2's slow tokenizer): vocab.json, merges.txt and tokenizer_config.json's
        // added_tokens_decoder. Written here from the fixture's tokenizer.json, it must encode exactly as that does.
        string directory = Path.Combine(Root, "dream-slow");
        FixtureTokenizer.Write(Family.Dream, directory);
        FixtureTokenizer.ConvertToSlowFiles(directory);
        HuggingFaceTokenizer slow = HuggingFaceTokenizer.Load(directory);
        Assert.That(slow.VocabularySize, Is.EqualTo(Dream.VocabularySize));
        Assert.That(slow.MaskId, Is.EqualTo(Dream.MaskId));
        Assert.That(slow.EndOfTextIds, Is.EquivalentTo(Dream.EndOfTextIds));
        foreach (string text in Samples.Append(FixtureTokenizer.TrainingText))
            Assert.That(slow.Encode(text), Is.EqualTo(Dream.Encode(text)), text);

        File.Delete(Path.Combine(directory, "tokenizer_config.json"));
        var error = Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.Load(directory));
        Assert.That(error!.Message, Does.Contain("tokenizer_class '' without a tokenizer.json"));
    }

    [Test]
    public void EncodesTenThousandCharactersWellUnder100Milliseconds([Values] Family family)
    {
        HuggingFaceTokenizer tokenizer = Load(family);
        var text = new StringBuilder();
        while (text.Length < 10_000) text.Append(Samples[(text.Length / 7) % Samples.Length]).Append(FixtureTokenizer.TrainingText);
        string input = text.ToString(0, 10_000);
        tokenizer.Encode(input);   // warm-up: regex compilation and the BPE word cache
        long best = long.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            var watch = Stopwatch.StartNew();
            tokenizer.Encode(input + i);
            best = Math.Min(best, watch.ElapsedMilliseconds);
        }
        TestContext.Out.WriteLine($"{family}: 10k characters in {best} ms");
        Assert.That(best, Is.LessThan(100));
    }
}
