using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx.Tests;

public class OnnxDenoiserTests
{
    private static string Models => Path.Combine(AppContext.BaseDirectory, "models");
    private static string TinyModel => Path.Combine(Models, "tiny", "model.onnx");

    private static DenoiseRequest Request(int step, params int[][] canvases) =>
        new(step, Enumerable.Range(0, canvases.Length).ToArray(), canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray());

    [Test]
    public void ReadsTheSignatureAndMetadata()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel);
        Assert.That(model.VocabularySize, Is.EqualTo(100));
        Assert.That(model.MaskId, Is.EqualTo(99));
        Assert.That(model.MaxPositions, Is.EqualTo(512));
        Assert.That(model.ElementType, Is.EqualTo(LogitsElementType.Float32));
    }

    /// <summary>ONNX Runtime's logits against a literal pure-Python forward pass of the same weights (tools/make_tiny_model.py).</summary>
    [Test]
    public async Task LogitsMatchTheLiteralForwardPass()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel);
        using JsonDocument reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(Models, "tiny", "reference_logits.json")));
        int cases = 0;
        foreach (JsonElement c in reference.RootElement.GetProperty("cases").EnumerateArray())
        {
            int[] ids = c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            SequenceLogits logits = (await model.ForwardAsync(Request(1, ids), CancellationToken.None))[0];
            Assert.That(logits.Rows, Is.EqualTo(ids.Length));
            int row = 0;
            double worst = 0;
            foreach (JsonElement expected in c.GetProperty("logits").EnumerateArray())
            {
                int v = 0;
                foreach (JsonElement x in expected.EnumerateArray())
                    worst = Math.Max(worst, Math.Abs(x.GetDouble() - logits[row, v++]));
                Assert.That(v, Is.EqualTo(model.VocabularySize));
                row++;
            }
            Assert.That(worst, Is.LessThan(1e-4), $"case {cases}: largest |ONNX Runtime - reference| over {ids.Length} x V logits");
            cases++;
        }
        Assert.That(cases, Is.EqualTo(2));
    }

    [Test]
    public async Task ARaggedBatchGivesEachCanvasItsOwnLogitsDeterministically()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { IntraOpThreads = 1 });
        int[] a = [10, 11, 12, 99, 99], b = [40, 99, 99], c = [13, 14, 15, 99, 99];
        float[][] alone = new float[3][];
        int[][] canvases = [a, b, c];
        for (int i = 0; i < 3; i++)
            alone[i] = Flatten((await model.ForwardAsync(Request(1, canvases[i]), CancellationToken.None))[0]);
        int runsBefore = model.Runs;
        IReadOnlyList<SequenceLogits> batched = await model.ForwardAsync(Request(2, a, b, c), CancellationToken.None);
        Assert.That(model.Runs - runsBefore, Is.EqualTo(2), "lengths 5 and 3: one run each");
        for (int i = 0; i < 3; i++)
            Assert.That(Flatten(batched[i]), Is.EqualTo(alone[i]).Within(1e-5f), $"canvas {i} in a batch vs alone");
        float[] again = Flatten((await model.ForwardAsync(Request(3, a, b, c), CancellationToken.None))[0]);
        Assert.That(again, Is.EqualTo(Flatten(batched[0])), "the same batch twice gives the same logits");
        Assert.That(Flatten(batched[0]), Is.Not.EqualTo(Flatten(batched[2])), "different canvases give different logits");
    }

    private static float[] Flatten(SequenceLogits logits)
    {
        var values = new float[logits.Rows * logits.Vocabulary];
        for (int r = 0; r < logits.Rows; r++)
            for (int v = 0; v < logits.Vocabulary; v++)
                values[r * logits.Vocabulary + v] = logits[r, v];
        return values;
    }

    [Test]
    public void ACanvasLongerThanTheModelAcceptsIsRejectedNamingBoth()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel);
        var e = Assert.Throws<ArgumentException>(() => model.ForwardAsync(Request(1, new int[513]), CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("513").And.Contain("512"));
    }

    [Test]
    public void ACancelledTokenStopsBeforeRunning()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel);
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.Throws<OperationCanceledException>(() => model.ForwardAsync(Request(1, [1, 2, 3]), cancel.Token));
        Assert.That(model.Runs, Is.Zero);
    }

    [Test]
    public void AMissingFileIsNamed()
    {
        string path = Path.Combine(Models, "absent.onnx");
        var e = Assert.Throws<FileNotFoundException>(() => OnnxDenoiser.Load(path));
        Assert.That(e!.Message, Does.Contain(path));
    }

    [Test]
    public void AFileThatIsNotAnOnnxModelIsNamed()
    {
        string path = Path.Combine(Path.GetTempPath(), $"saber-not-a-model-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, [0x08, 0xFF, 0xFF, 0x13, 0x37, 0x42]);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(path));
            Assert.That(e!.Message, Does.Contain(path).And.Contain("not a loadable ONNX model"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void AFloatInputIsRejected()
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(Path.Combine(Models, "float-input.onnx")));
        Assert.That(e!.Message, Does.Contain("must be int64 [batch, sequence]").And.Contain("Single"));
    }

    [Test]
    public void AModelWithoutALogitsOutputIsRejected()
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(Path.Combine(Models, "no-logits-output.onnx"), new OnnxEngineOptions { MaskId = 0 }));
        Assert.That(e!.Message, Does.Contain("no output 'logits'").And.Contain("scores"));
    }

    [Test]
    public void SessionOptionsAreChecked()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { IntraOpThreads = -1 }));
        // A thread count far past the cores would start that many threads at load (and take minutes): rejected first.
        int cap = OnnxEngineOptions.MaxIntraOpThreads;
        Assert.That(cap, Is.EqualTo(4 * Environment.ProcessorCount));
        var threads = Assert.Throws<ArgumentOutOfRangeException>(() => OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { IntraOpThreads = cap + 1 }));
        Assert.That(threads!.ParamName, Is.EqualTo("IntraOpThreads"));
        Assert.That(threads.Message, Does.Contain($"must lie in [0, {cap}]").And.Contain($"got {cap + 1}"));
        using OnnxDenoiser basic = OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { OptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });
        Assert.That(basic.VocabularySize, Is.EqualTo(100));
        var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { MaskId = 100 }));
        Assert.That(e!.Message, Does.Contain("Mask id 100"));
    }

    [Test]
    public void ADecodeLongerThanMaxPositionsIsRejectedBeforeTheFirstRun()
    {
        using LocalModel model = LocalModel.Open(Path.Combine(Models, "tiny"));
        Assert.That(((IDenoiser)model.Denoiser).MaxSequenceLength, Is.EqualTo(512));
        int[] prompt = model.Tokenizer.Encode("def f():\n");   // 9 characters
        var options = new DecodeOptions { GenerationLength = 504 };
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => new CpuSampler().DecodeAsync(model.Denoiser, [prompt], options));
        Assert.That(e!.Message, Does.Contain("Prompt 0 (9 tokens) plus generation length G=504 makes a canvas of 513 positions; the model takes at most 512."));
        Assert.That(model.Denoiser.Runs, Is.Zero);
    }

    [Test]
    public async Task DecodesWithEveryStrategyOnTheShippedModel()
    {
        using LocalModel model = LocalModel.Open(Path.Combine(Models, "tiny"));
        int[] prompt = model.Tokenizer.Encode("def add(a, b):\n");
        foreach (DecodingStrategy strategy in new DecodingStrategy[] { new SaberStrategy(), new LowConfidenceStrategy(32), new ThresholdStrategy(0.9f) })
        {
            var options = new DecodeOptions { GenerationLength = 32, BlockLength = 8, Strategy = strategy };
            SequenceResult first = (await new CpuSampler().DecodeAsync(model.Denoiser, [prompt], options)).Sequences[0];
            SequenceResult second = (await new CpuSampler().DecodeAsync(model.Denoiser, [prompt], options)).Sequences[0];
            Assert.That(first.Tokens.ToArray(), Does.Not.Contain(model.Tokenizer.MaskId), $"{strategy}: no mask left");
            Assert.That(second.Tokens.ToArray(), Is.EqualTo(first.Tokens.ToArray()), $"{strategy}: deterministic at T = 0");
            Assert.That(first.Nfe, Is.InRange(1, 32), $"{strategy}: at most one step per position");
        }
    }
}

public class CharacterTokenizerTests
{
    private static string TokenizerPath => Path.Combine(AppContext.BaseDirectory, "models", "tiny", "tokenizer.json");

    [Test]
    public void RoundTripsCodeAndMarksUnknownCharacters()
    {
        CharacterTokenizer tokenizer = CharacterTokenizer.Load(TokenizerPath);
        const string code = "def f(x):\n\treturn x * 2  # ~\n";
        Assert.That(tokenizer.Decode(tokenizer.Encode(code)), Is.EqualTo(code));
        Assert.That(tokenizer.Encode("é"), Is.EqualTo(new[] { tokenizer.UnknownId }));
        Assert.That(tokenizer.Decode([tokenizer.Encode("a")[0], tokenizer.MaskId, tokenizer.EosId, tokenizer.Encode("b")[0]]), Is.EqualTo("a\u2591"),
            "a mask shows as a glyph that is not in the vocabulary ('_' is), and end-of-text ends the text");
        Assert.That(tokenizer.Encode("_"), Has.Length.EqualTo(1).And.Not.Contains(tokenizer.UnknownId), "'_' is a real character of this vocabulary");
        Assert.That(tokenizer.Decode([tokenizer.MaskId], mask: "_"), Is.EqualTo("_"));
        Assert.That(tokenizer.VocabularySize, Is.EqualTo(100));
        Assert.That(tokenizer.MaskId, Is.EqualTo(99));
    }

    [Test]
    public void EncodesCodePointsAndReportsUnknownCharacters()
    {
        CharacterTokenizer tokenizer = CharacterTokenizer.Load(TokenizerPath);
        int a = tokenizer.Encode("a")[0], unk = tokenizer.UnknownId;
        // U+1F600 is two UTF-16 units but one character; an unpaired surrogate is one (U+FFFD) too.
        int[] ids = tokenizer.Encode("a\U0001F600é\U0001F600\uD800a", out IReadOnlyList<string> unknown);
        Assert.That(ids, Is.EqualTo(new[] { a, unk, unk, unk, unk, a }));
        Assert.That(unknown, Is.EqualTo(new[] { "\U0001F600", "é", "\uFFFD" }), "distinct, in order of appearance");
        Assert.That(tokenizer.Encode("def", out IReadOnlyList<string> none), Has.Length.EqualTo(3));
        Assert.That(none, Is.Empty);
        Assert.That(tokenizer.Encode("<|mask|>"), Has.None.EqualTo(tokenizer.MaskId), "special tokens are never read from text");
    }

    [TestCase("""{"type": "characters", "vocabulary": ["a", "b"], "mask": "m", "eos": "a", "unknown": "b"}""", "mask token 'm' is not in the vocabulary")]
    [TestCase("""{"type": "characters", "vocabulary": ["a", "m"], "mask": "m", "eos": "a", "unknown": "m"}""", "mask, eos and unknown tokens must be three different tokens")]
    public void ABadDescriptionIsNamed(string json, string message)
    {
        string path = Path.Combine(Path.GetTempPath(), $"saber-tokenizer-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => CharacterTokenizer.Load(path));
            Assert.That(e!.Message, Does.Contain(message));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
