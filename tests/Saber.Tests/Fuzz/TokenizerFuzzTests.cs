using System.Text;
using System.Text.Json;
using CsCheck;
using Saber.Onnx;
using static Saber.Tests.Fuzz.Fuzz;

namespace Saber.Tests.Fuzz;

/// <summary>
/// The character tokenizer: the shipped vocabulary on any text (one id per Unicode scalar value, unknown exactly where a
/// character is not listed), decoding, and loading generated or damaged tokenizer.json files. The expected ids come from
/// reading tokenizer.json here with System.Text.Json, not from the tokenizer.
/// </summary>
public class TokenizerFuzzTests
{
    /// <summary>tokenizer.json as this test reads it: the vocabulary in order and the three special tokens' indices.</summary>
    private sealed record Oracle(string[] Vocabulary, int Mask, int Eos, int Unknown)
    {
        public Dictionary<string, int> Ids { get; } = Vocabulary.Select((t, i) => (t, i)).GroupBy(p => p.t).ToDictionary(g => g.Key, g => g.First().i);
    }

    private static string ShippedPath()
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "models", "tiny", "tokenizer.json");
        if (File.Exists(beside)) return beside;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Saber.Native.sln")))
                return Path.Combine(dir.FullName, "models", "tiny", "tokenizer.json");
        throw new FileNotFoundException("models/tiny/tokenizer.json not found beside the tests or above them.");
    }

    private static readonly Lazy<(CharacterTokenizer Tokenizer, Oracle Oracle)> Shipped = new(() =>
    {
        string path = ShippedPath();
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = json.RootElement;
        string[] vocabulary = root.GetProperty("vocabulary").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var oracle = new Oracle(vocabulary, Array.IndexOf(vocabulary, root.GetProperty("mask").GetString()),
            Array.IndexOf(vocabulary, root.GetProperty("eos").GetString()), Array.IndexOf(vocabulary, root.GetProperty("unknown").GetString()));
        return (CharacterTokenizer.Load(path), oracle);
    });

    /// <summary>Exactly one Unicode scalar value (a lone surrogate is none).</summary>
    private static bool IsOneCharacter(string s) =>
        Rune.DecodeFromUtf16(s, out _, out int consumed) == System.Buffers.OperationStatus.Done && consumed == s.Length;

    private static string[] SingleCharacterEntries(Oracle o) => o.Vocabulary.Where(IsOneCharacter).ToArray();

    // ---- text generators ----

    private static readonly string[] Awkward =
    [
        "<|mask|>", "<|eos|>", "<|unk|>", "<|", "|>", "\uFFFD", "\uFEFF", "\u200D", "\u200B", "e\u0301", "👨‍👩‍👧", "🏳️‍🌈", "\r\n", "\r",
        "░", "▒", "·", "¤", "\u2028", "\u0085", "\0", "ﬀ", "İ", "ß", "Σ", "\U0010FFFF", "\uD800\uDC00", "\uDBFF\uDFFF",
    ];

    private static Gen<string> Piece(string[] vocabularyCharacters) => Gen.Frequency<string>(
        (6, Gen.OneOf(vocabularyCharacters)),
        (2, Gen.Int[0x10000, 0x10FFFF].Select(char.ConvertFromUtf32)),                   // outside the BMP: one character, two UTF-16 units
        (2, Gen.Char['\uD800', '\uDFFF'].Select(c => c.ToString())),                      // a surrogate, usually unpaired
        (2, Gen.Char['\0', '\u001F'].Select(c => c.ToString())),                          // C0 controls
        (1, Gen.Char['\u007F', '\u009F'].Select(c => c.ToString())),                      // DEL and C1 controls
        (2, Gen.OneOf(Awkward)),
        (2, Gen.Char.Select(c => c.ToString())),
        (1, Gen.String[0, 6]));

    private static Gen<string> Text(string[] vocabularyCharacters) => Piece(vocabularyCharacters).Array[0, 40].Select(string.Concat);

    // ---- encode and decode on the shipped tokenizer ----

    [Test]
    public void EncodeGivesOneIdPerCharacterAndMarksExactlyTheUnknownOnes()
    {
        var (tokenizer, oracle) = Shipped.Value;
        Require(tokenizer.VocabularySize == oracle.Vocabulary.Length, $"V {tokenizer.VocabularySize}, tokenizer.json lists {oracle.Vocabulary.Length}");
        Require((tokenizer.MaskId, tokenizer.EosId, tokenizer.UnknownId) == (oracle.Mask, oracle.Eos, oracle.Unknown),
            $"special ids {(tokenizer.MaskId, tokenizer.EosId, tokenizer.UnknownId)}, tokenizer.json says {(oracle.Mask, oracle.Eos, oracle.Unknown)}");
        Fuzz.Sample(Text(SingleCharacterEntries(oracle)), text =>
        {
            int[] ids = tokenizer.Encode(text, out IReadOnlyList<string> unknown);
            string[] characters = text.EnumerateRunes().Select(r => r.ToString()).ToArray();
            Require(ids.Length == characters.Length, $"{ids.Length} ids for {characters.Length} characters");
            for (int i = 0; i < ids.Length; i++)
            {
                Require(ids[i] >= 0 && ids[i] < tokenizer.VocabularySize, $"id {ids[i]} at {i} outside [0, {tokenizer.VocabularySize})");
                Require(ids[i] != tokenizer.MaskId && ids[i] != tokenizer.EosId, $"text encoded to the {(ids[i] == tokenizer.MaskId ? "mask" : "eos")} id at {i}");
                int expected = oracle.Ids.TryGetValue(characters[i], out int id) ? id : oracle.Unknown;
                Require(ids[i] == expected, $"character {i} {Show(characters[i])} encoded to {ids[i]}, tokenizer.json says {expected}");
            }
            string[] missing = characters.Where(c => !oracle.Ids.ContainsKey(c)).Distinct().ToArray();
            Require(unknown.SequenceEqual(missing), $"unknown [{string.Join(", ", unknown.Select(Show))}], expected [{string.Join(", ", missing.Select(Show))}]");
            Require(tokenizer.Encode(text).SequenceEqual(ids), "Encode(text) differs from Encode(text, out _)");
            return missing.Length == 0 ? "all known" : "some unknown";
        }, cases: 3000, print: Show);
    }

    [Test]
    public void DecodeInvertsEncodeOnVocabularyText()
    {
        var (tokenizer, oracle) = Shipped.Value;
        string[] characters = SingleCharacterEntries(oracle).Where(c => Array.IndexOf(oracle.Vocabulary, c) is int i && i != oracle.Mask && i != oracle.Eos).ToArray();
        Require(characters.Length > 50, $"only {characters.Length} single-character entries in the shipped vocabulary");
        Fuzz.Sample(Gen.OneOf(characters).Array[0, 60].Select(string.Concat), text =>
        {
            int[] ids = tokenizer.Encode(text, out IReadOnlyList<string> unknown);
            Require(unknown.Count == 0, $"vocabulary characters reported unknown: {string.Join(", ", unknown.Select(Show))}");
            string back = tokenizer.Decode(ids);
            Require(back == text, $"Decode(Encode(s)) = {Show(back)}");
        }, cases: 1000, print: Show);
    }

    [Test]
    public void DecodeStopsAtEndOfTextAndRejectsIdsOutsideTheVocabulary()
    {
        var (tokenizer, oracle) = Shipped.Value;
        int v = oracle.Vocabulary.Length;
        Require(!oracle.Ids.ContainsKey(tokenizer.MaskGlyph), $"the mask glyph {Show(tokenizer.MaskGlyph)} is a vocabulary entry");
        Gen<int> id = Gen.Frequency<int>((12, Gen.Int[0, v - 1]), (1, Gen.OneOf(oracle.Eos, oracle.Mask, oracle.Unknown)),
            (1, Gen.OneOf(-1, v, v + 1, int.MinValue, int.MaxValue)));
        Fuzz.Sample(Gen.Select(id.Array[0, 50], Gen.Bool), c =>
        {
            var (ids, explicitMask) = c;
            string mask = explicitMask ? "<MASK>" : tokenizer.MaskGlyph;
            var expected = new StringBuilder();
            int? bad = null;
            foreach (int t in ids)
            {
                if (t == oracle.Eos) break;
                if (t < 0 || t >= v)
                {
                    bad = t;
                    break;
                }
                expected.Append(t == oracle.Mask ? mask : oracle.Vocabulary[t]);
            }
            string? text = null;
            try
            {
                text = explicitMask ? tokenizer.Decode(ids, mask) : tokenizer.Decode(ids);
            }
            catch (ArgumentOutOfRangeException e)
            {
                Require(bad is not null, $"Decode threw for ids that are all in range before end-of-text: {e.Message}");
                return "out of range";
            }
            Require(bad is null, $"id {bad} outside [0, {v}) decoded to {Show(text)}");
            Require(text == expected.ToString(), $"decoded {Show(text)}, expected {Show(expected.ToString())}");
            return "decoded";
        }, cases: 1500, print: t => $"[{string.Join(", ", t.Item1)}] explicit mask {t.Item2}");
    }

    // ---- loading generated and damaged tokenizer.json files ----

    public enum Damage
    {
        RemoveKey, ReplaceValue, DuplicateKey, AppendEntry, SpecialsEqual, SpecialMissing, WrapRoot, Truncate, ReplaceChar, InsertChar, PrefixBom,
    }

    public sealed record Mutation(Damage Kind, int Index, string Literal)
    {
        public override string ToString() => $"{Kind}({Index}, {Show(Literal)})";
    }

    public sealed record TokenizerCase(string[] Vocabulary, int Mask, int Eos, int Unknown, Mutation[] Mutations)
    {
        public override string ToString() =>
            $"vocabulary [{string.Join(", ", Vocabulary.Select(Show))}] mask {Mask} eos {Eos} unknown {Unknown}" +
            (Mutations.Length == 0 ? "" : $", damage [{string.Join(", ", Mutations.Select(m => m.ToString()))}]");
    }

    private static readonly string[] Keys = ["type", "vocabulary", "mask", "eos", "unknown"];

    private static readonly string[] Literals =
    [
        "1", "-1.5e308", "1e400", "true", "false", "null", "[]", "{}", "\"x\"", "[1, 2]", "{\"a\": 1}", "\"characters\"", "\"Characters\"",
        "[null]", "[\"a\", \"a\"]", "\"\"", "\"\\ud800\"", "[\"\\udc00\"]", "\"<|mask|>\"", "\"\\u0000\"",
        new string('[', 70) + new string(']', 70), new string('[', 20) + "\"a\"" + new string(']', 20), "[" + string.Join(", ", Enumerable.Range(0, 300).Select(i => $"\"{i}\"")) + "]",
    ];

    private static readonly Gen<TokenizerCase> TokenizerCaseGen =
        from entries in Gen.Frequency<string>((4, Gen.String[1, 3]), (2, Gen.OneOf(Awkward)), (1, Gen.Const(""))).Array[3, 24]
        let vocabulary = entries.Distinct().ToArray()
        from picks in Gen.Shuffle(Enumerable.Range(0, Math.Max(3, vocabulary.Length)).ToArray(), 3)
        from mutations in Gen.Frequency<Mutation[]>(
            (1, Gen.Const(Array.Empty<Mutation>())),
            (3, Gen.Select(Gen.Enum<Damage>(), Gen.Int[0, 1000], Gen.OneOf(Literals), (k, i, l) => new Mutation(k, i, l)).Array[1, 3]))
        select new TokenizerCase(vocabulary, picks[0] % vocabulary.Length, picks[1] % vocabulary.Length, picks[2] % vocabulary.Length, mutations);

    private static string Json(string s) => JsonSerializer.Serialize(s);

    /// <summary>The file's text: the description as members, damaged member-wise, then as text.</summary>
    private static string TextOf(TokenizerCase c)
    {
        var members = new List<(string Key, string Value)>
        {
            ("type", Json("characters")),
            ("vocabulary", "[" + string.Join(", ", c.Vocabulary.Select(Json)) + "]"),
            ("mask", Json(c.Vocabulary[c.Mask])),
            ("eos", Json(c.Vocabulary[c.Eos])),
            ("unknown", Json(c.Vocabulary[c.Unknown])),
        };
        var textEdits = new List<Mutation>();
        foreach (Mutation m in c.Mutations)
        {
            string key = Keys[m.Index % Keys.Length];
            int at = members.FindIndex(p => p.Key == key);
            switch (m.Kind)
            {
                case Damage.RemoveKey when at >= 0:
                    members.RemoveAt(at);
                    break;
                case Damage.ReplaceValue when at >= 0:
                    members[at] = (key, m.Literal);
                    break;
                case Damage.DuplicateKey:
                    members.Insert(m.Index % (members.Count + 1), (key, m.Literal));
                    break;
                case Damage.AppendEntry when members.FindIndex(p => p.Key == "vocabulary") is int vi and >= 0 && members[vi].Value.EndsWith(']'):
                    string entry = m.Index % 2 == 0 ? m.Literal : Json(c.Vocabulary[m.Index % c.Vocabulary.Length]);   // odd: a duplicate entry
                    string list = members[vi].Value;
                    members[vi] = ("vocabulary", list.Length > 2 ? list[..^1] + ", " + entry + "]" : "[" + entry + "]");
                    break;
                case Damage.SpecialsEqual:
                    string from = Keys[2 + m.Index % 3], to = Keys[2 + (m.Index / 3 + 1 + m.Index % 3) % 3];
                    int fi = members.FindIndex(p => p.Key == from), ti = members.FindIndex(p => p.Key == to);
                    if (fi >= 0 && ti >= 0 && fi != ti) members[ti] = (to, members[fi].Value);
                    break;
                case Damage.SpecialMissing:
                    int si = members.FindIndex(p => p.Key == Keys[2 + m.Index % 3]);
                    if (si >= 0) members[si] = (members[si].Key, Json("\u2603not-in-the-vocabulary"));
                    break;
                default:
                    textEdits.Add(m);
                    break;
            }
        }
        string text = "{\n" + string.Join(",\n", members.Select(p => $" {Json(p.Key)}: {p.Value}")) + "\n}";
        foreach (Mutation m in textEdits)
        {
            int at = text.Length == 0 ? 0 : m.Index % text.Length;
            text = m.Kind switch
            {
                Damage.WrapRoot => (m.Index % 4) switch { 0 => "[" + text + "]", 1 => text + m.Literal, 2 => m.Literal, _ => "{\"tokenizer\": " + text + "}" },
                Damage.Truncate => text[..at],
                Damage.ReplaceChar when text.Length > 0 => text[..at] + m.Literal[m.Index % m.Literal.Length] + text[(at + 1)..],
                Damage.InsertChar => text[..at] + m.Literal[m.Index % m.Literal.Length] + text[at..],
                Damage.PrefixBom => "\uFEFF" + text,
                _ => text,
            };
        }
        return text;
    }

    /// <summary>
    /// What the file must do, where this test can tell from the JSON alone: null where the document holds values
    /// (nulls, numbers) whose reading is the tokenizer's own choice.
    /// </summary>
    private static (bool Valid, Oracle? Oracle)? Expect(string text)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text.StartsWith('\uFEFF') ? text[1..] : text);
        }
        catch (JsonException)
        {
            return (false, null);
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (false, null);
            string[] keys = ["type", "vocabulary", "mask", "eos", "unknown"];
            if (keys.Any(k => !root.TryGetProperty(k, out _))) return (false, null);
            if (root.GetProperty("vocabulary").ValueKind != JsonValueKind.Array) return (false, null);
            IEnumerable<JsonElement> values = keys.Where(k => k != "vocabulary").Select(k => root.GetProperty(k)).Concat(root.GetProperty("vocabulary").EnumerateArray());
            if (values.Any(e => e.ValueKind is not JsonValueKind.String))
                return root.GetProperty("type").ValueKind == JsonValueKind.String && root.GetProperty("type").ValueEquals("characters") ? null : (false, null);
            string?[] vocabulary;
            try
            {
                vocabulary = root.GetProperty("vocabulary").EnumerateArray().Select(e => e.GetString()).ToArray();
            }
            catch (InvalidOperationException)
            {
                return (false, null);   // an unpaired surrogate escape: not a string .NET can read
            }
            string? Read(string key)
            {
                try
                {
                    return root.GetProperty(key).GetString();
                }
                catch (InvalidOperationException)
                {
                    return null;
                }
            }
            if (Read("type") != "characters") return (false, null);
            if (vocabulary.Distinct().Count() != vocabulary.Length) return (false, null);
            int[] specials = new[] { "mask", "eos", "unknown" }.Select(k => Read(k) is { } s ? Array.IndexOf(vocabulary, s) : -1).ToArray();
            if (specials.Any(i => i < 0) || specials.Distinct().Count() != 3) return (false, null);
            return (true, new Oracle(vocabulary!, specials[0], specials[1], specials[2]));
        }
    }

    [Test]
    public void LoadReadsATokenizerOrSaysWhyNot()
    {
        using var scratch = new Fuzz.Scratch();
        Fuzz.Sample(TokenizerCaseGen, c =>
        {
            string text = TextOf(c);
            string path = scratch.NewPath(".json");
            File.WriteAllText(path, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            try
            {
                var expect = Expect(text);
                CharacterTokenizer tokenizer;
                try
                {
                    tokenizer = CharacterTokenizer.Load(path);
                }
                catch (InvalidDataException e)
                {
                    Require(expect is not (true, _), $"a valid description was refused: {e.Message}");
                    return "refused";
                }
                catch (Exception e)
                {
                    throw new PropertyViolation($"Load threw {e.GetType().FullName} (only InvalidDataException may escape): {e.Message}\n{text}");
                }
                Require(expect is not (false, _), $"an invalid description was loaded (V {tokenizer.VocabularySize}):\n{text}");
                int v = tokenizer.VocabularySize;
                int[] specials = [tokenizer.MaskId, tokenizer.EosId, tokenizer.UnknownId];
                Require(specials.All(i => i >= 0 && i < v) && specials.Distinct().Count() == 3, $"special ids ({string.Join(", ", specials)}) for V {v}");
                if (expect is (true, Oracle o))
                {
                    Require(v == o.Vocabulary.Length && specials.SequenceEqual([o.Mask, o.Eos, o.Unknown]),
                        $"loaded V {v}, ids ({string.Join(", ", specials)}); the file says V {o.Vocabulary.Length}, ids ({o.Mask}, {o.Eos}, {o.Unknown})");
                    foreach (string entry in o.Vocabulary.Where(IsOneCharacter))
                        Require(tokenizer.Encode(entry).SequenceEqual([o.Ids[entry]]), $"entry {Show(entry)} encoded to [{string.Join(", ", tokenizer.Encode(entry))}], listed at {o.Ids[entry]}");
                }
                return c.Mutations.Length == 0 ? "generated, loaded" : "damaged, loaded";
            }
            finally
            {
                File.Delete(path);
            }
        }, cases: 2000, print: c => c + "\n" + TextOf(c));
    }
}
