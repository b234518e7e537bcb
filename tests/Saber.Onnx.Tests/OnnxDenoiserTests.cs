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
        Assert.That(model.HasAttentionMask, Is.True);
    }

    /// <summary>
    /// ONNX Runtime's logits against a literal pure-Python forward pass of the same weights (tools/make_tiny_model.py),
    /// for each shipped model (the trained task models' logits reach tens, hence a relative part in the bound).
    /// </summary>
    [TestCase("tiny")]
    [TestCase("addition")]
    [TestCase("sudoku")]
    public async Task LogitsMatchTheLiteralForwardPass(string name)
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(Path.Combine(Models, name, "model.onnx"));
        using JsonDocument reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(Models, name, "reference_logits.json")));
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
                    worst = Math.Max(worst, Math.Abs(x.GetDouble() - logits[row, v++]) / Math.Max(1.0, Math.Abs(x.GetDouble())));
                Assert.That(v, Is.EqualTo(model.VocabularySize));
                row++;
            }
            Assert.That(worst, Is.LessThan(1e-4), $"case {cases}: largest |ONNX Runtime - reference| / max(1, |reference|) over {ids.Length} x V logits");
            cases++;
        }
        Assert.That(cases, Is.EqualTo(2));
    }

    /// <summary>
    /// The padded batches of reference_logits.json (the two cases, padded on the left, and padded as the engine pads),
    /// straight through ONNX Runtime with their stored input_ids and attention_mask: each row's real positions against
    /// the literal forward pass of the row unpadded; and the same two canvases through the engine, which pads them itself.
    /// </summary>
    [Test]
    public async Task PaddedLogitsMatchTheLiteralForwardPassOfEachRowUnpadded()
    {
        using JsonDocument reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(Models, "tiny", "reference_logits.json")));
        using var session = new InferenceSession(TinyModel);
        int batches = 0;
        int[][] canvases = [];
        double[][][] expected = [];
        foreach (JsonElement batch in reference.RootElement.GetProperty("padded_batches").EnumerateArray())
        {
            long[][] ids = batch.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
            long[][] mask = batch.GetProperty("attention_mask").EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
            expected = batch.GetProperty("logits").EnumerateArray()
                .Select(r => r.EnumerateArray().Select(p => p.EnumerateArray().Select(e => e.GetDouble()).ToArray()).ToArray()).ToArray();
            canvases = ids.Select((r, i) => r.Where((_, j) => mask[i][j] == 1).Select(x => (int)x).ToArray()).ToArray();
            int rows = ids.Length, width = ids[0].Length;
            Assert.That(mask.Select(m => m.Count(x => x == 0)).Distinct().Count(), Is.GreaterThan(1), "rows of different lengths");

            using OrtValue idsValue = OrtValue.CreateTensorValueFromMemory(ids.SelectMany(r => r).ToArray(), [rows, width]);
            using OrtValue maskValue = OrtValue.CreateTensorValueFromMemory(mask.SelectMany(r => r).ToArray(), [rows, width]);
            using var runOptions = new RunOptions();
            using IDisposableReadOnlyCollection<OrtValue> outputs = session.Run(runOptions,
                new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue }, ["logits"]);
            float[] logits = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            for (int r = 0; r < rows; r++)
            {
                int left = Array.IndexOf(mask[r], 1L);
                double worst = 0;
                for (int p = 0; p < expected[r].Length; p++)
                    for (int v = 0; v < 100; v++)
                        worst = Math.Max(worst, Math.Abs(expected[r][p][v] - logits[((r * width) + left + p) * 100 + v]));
                Assert.That(worst, Is.LessThan(1e-4), $"batch {batches} ({batch.GetProperty("layout").GetString()}), row {r}: largest |ONNX Runtime - unpadded reference|");
            }
            batches++;
        }
        Assert.That(batches, Is.EqualTo(2));

        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel);
        IReadOnlyList<SequenceLogits> engine = await model.ForwardAsync(Request(1, canvases), CancellationToken.None);
        Assert.That(model.Runs, Is.EqualTo(1), "two lengths, one run");
        for (int r = 0; r < canvases.Length; r++)
        {
            Assert.That(engine[r].Rows, Is.EqualTo(expected[r].Length));
            double worst = 0;
            for (int p = 0; p < expected[r].Length; p++)
                for (int v = 0; v < 100; v++)
                    worst = Math.Max(worst, Math.Abs(expected[r][p][v] - engine[r][p, v]));
            Assert.That(worst, Is.LessThan(1e-4), $"engine row {r}: largest |ONNX Runtime - unpadded reference|");
        }
    }

    /// <summary>
    /// Canvases alone vs in ragged batches with longer and shorter canvases: padded on the left only (by 16, 32), on
    /// the right only (by fewer than 16) and both; every position, bit for bit (max |diff| in the message).
    /// </summary>
    [Test]
    public async Task APaddedCanvasGetsTheLogitsItGetsAlone()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { IntraOpThreads = 1 });
        Assert.That(model.PadsRaggedBatches, Is.True);
        var random = new Random(14);
        int[] Canvas(int length) => Enumerable.Range(0, length).Select(i => i % 3 == 0 ? 99 : random.Next(2, 99)).ToArray();
        int[][] canvases = [Canvas(3), Canvas(8), Canvas(19), Canvas(24), Canvas(35), Canvas(40)];
        var alone = new float[canvases.Length][];
        for (int i = 0; i < canvases.Length; i++)
            alone[i] = Flatten((await model.ForwardAsync(Request(1, canvases[i]), CancellationToken.None))[0]);
        int[][][] batches = [[canvases[1], canvases[2], canvases[0]], [canvases[5], canvases[0], canvases[3], canvases[1]],
            [canvases[4], canvases[2], canvases[5], canvases[3], canvases[1], canvases[0]], [canvases[2], canvases[3]]];
        double worst = 0;
        foreach (int[][] batch in batches)
        {
            int runsBefore = model.Runs;
            IReadOnlyList<SequenceLogits> batched = await model.ForwardAsync(Request(2, batch), CancellationToken.None);
            Assert.That(model.Runs - runsBefore, Is.EqualTo(1), "one run per call, whatever the lengths");
            int longest = batch.Max(c => c.Length);
            for (int m = 0; m < batch.Length; m++)
            {
                int i = Array.IndexOf(canvases, batch[m]);
                float[] padded = Flatten(batched[m]);
                Assert.That(batched[m].Rows, Is.EqualTo(batch[m].Length), "each canvas gets its own rows, the padding sliced off");
                double difference = padded.Zip(alone[i]).Max(p => (double)Math.Abs(p.First - p.Second));
                int differing = padded.Zip(alone[i]).Count(p => p.First != p.Second);
                worst = Math.Max(worst, difference);
                Assert.That(padded, Is.EqualTo(alone[i]),
                    $"canvas of {batch[m].Length} padded by {longest - batch[m].Length} in a run of {longest} vs alone: max |diff| {difference:E3}, {differing} logits differ");
            }
        }
        TestContext.Out.WriteLine($"padded vs alone over {batches.Length} ragged batches: max |diff| {worst:E2}");

        IReadOnlyList<SequenceLogits> first = await model.ForwardAsync(Request(3, batches[0]), CancellationToken.None);
        float[] a = Flatten(first[0]), b = Flatten(first[1]);
        float[] again = Flatten((await model.ForwardAsync(Request(4, batches[0]), CancellationToken.None))[0]);
        Assert.That(again, Is.EqualTo(a), "the same batch twice gives the same logits");
        Assert.That(a.Take(300), Is.Not.EqualTo(b.Take(300)), "different canvases give different logits");
    }

    /// <summary>RaggedBatches off: the mask model runs each length as its own batch, bit-identical to each canvas alone.</summary>
    [Test]
    public async Task WithRaggedBatchesOffEachLengthRunsAloneBitIdentically()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(TinyModel, new OnnxEngineOptions { IntraOpThreads = 1, RaggedBatches = false });
        Assert.That(model.HasAttentionMask, Is.True);
        Assert.That(model.PadsRaggedBatches, Is.False);
        int[] a = [10, 11, 12, 99, 99, 99, 40, 41], b = [40, 99, 99], c = [13, 14, 15, 99, 99, 99, 20, 21];
        int[][] canvases = [a, b, c];
        float[][] alone = new float[3][];
        for (int i = 0; i < 3; i++)
            alone[i] = Flatten((await model.ForwardAsync(Request(1, canvases[i]), CancellationToken.None))[0]);
        int runsBefore = model.Runs;
        IReadOnlyList<SequenceLogits> batched = await model.ForwardAsync(Request(2, a, b, c), CancellationToken.None);
        Assert.That(model.Runs - runsBefore, Is.EqualTo(2), "lengths 8 and 3: one run each");
        for (int i = 0; i < 3; i++)
            Assert.That(Flatten(batched[i]), Is.EqualTo(alone[i]), $"canvas {i}: bit-identical to alone");
    }

    /// <summary>A model without an attention mask keeps running equal lengths together and unequal ones apart.</summary>
    [Test]
    public async Task AModelWithoutAnAttentionMaskRunsEachLengthSeparately()
    {
        using OnnxDenoiser model = OnnxDenoiser.Load(Path.Combine(Models, "lookup-no-mask.onnx"));
        Assert.That(model.HasAttentionMask, Is.False);
        Assert.That(model.VocabularySize, Is.EqualTo(16));
        int[] a = [1, 2, 3, 4, 5], b = [6, 7, 8], c = [9, 10, 11, 12, 13];
        IReadOnlyList<SequenceLogits> batched = await model.ForwardAsync(Request(1, a, b, c), CancellationToken.None);
        Assert.That(model.Runs, Is.EqualTo(2), "lengths 5 and 3: one run each");
        int[][] canvases = [a, b, c];
        for (int i = 0; i < 3; i++)
        {
            float[] alone = Flatten((await model.ForwardAsync(Request(2, canvases[i]), CancellationToken.None))[0]);
            // The lookup's logits depend on the token only: row p is the table row of canvas[p].
            float[] batchedAgain = Flatten((await model.ForwardAsync(Request(3, a, b, c), CancellationToken.None))[i]);
            Assert.That(batchedAgain, Is.EqualTo(alone), $"canvas {i} in a batch vs alone");
        }
    }

    /// <summary>The pass runs on the thread pool: a decode hands its task back before it finishes, with the same result.</summary>
    [Test]
    public async Task DecodeAsyncReturnsBeforeTheForwardPassesRun()
    {
        using LocalModel model = LocalModel.Open(Path.Combine(Models, "tiny"));
        int[] prompt = model.Tokenizer.Encode("def f(x):\n");
        var options = new DecodeOptions { GenerationLength = 32, BlockLength = 8 };
        DecodeResult expected = await new CpuSampler().DecodeAsync(model.Denoiser, [prompt], options);
        int runsBefore = model.Denoiser.Runs;
        Task<DecodeResult> decode = new CpuSampler().DecodeAsync(model.Denoiser, [prompt], options);
        bool completedAtReturn = decode.IsCompleted;
        DecodeResult result = await decode;
        Assert.That(completedAtReturn, Is.False, "DecodeAsync returned a task that had already completed: the forward passes ran on the caller's thread");
        Assert.That(result.Sequences[0].Tokens.ToArray(), Is.EqualTo(expected.Sequences[0].Tokens.ToArray()));
        Assert.That(model.Denoiser.Runs - runsBefore, Is.EqualTo(expected.Sequences[0].Nfe));
    }

    /// <summary>Counts the calls of the denoiser it wraps.</summary>
    private sealed class CountingDenoiser(OnnxDenoiser inner) : IDenoiser
    {
        public int Calls { get; private set; }
        public int VocabularySize => inner.VocabularySize;
        public int MaskId => inner.MaskId;
        public int? MaxSequenceLength => inner.MaxSequenceLength;

        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
        {
            Calls++;
            return inner.ForwardAsync(request, cancellationToken);
        }
    }

    /// <summary>
    /// Prompts of four lengths decoded together: one ONNX Runtime run per step (not one per length), and per prompt the
    /// tokens, NFE and trace (confidences bit for bit) of decoding it alone.
    /// </summary>
    [Test]
    public async Task RaggedPromptsDecodeInOneRunPerStepWithTheTokensOfDecodingAlone()
    {
        using LocalModel model = LocalModel.Open(Path.Combine(Models, "tiny"));
        string[] texts = ["def f(x):\n", "import os\n\n\ndef main():\n", "x = 1\n", "class Stack:\n\tdef push(self, item):\n"];
        ReadOnlyMemory<int>[] prompts = texts.Select(t => (ReadOnlyMemory<int>)model.Tokenizer.Encode(t)).ToArray();
        Assert.That(prompts.Select(p => p.Length).Distinct().Count(), Is.EqualTo(4));
        foreach (DecodingStrategy strategy in new DecodingStrategy[] { new SaberStrategy(), new LowConfidenceStrategy(16) })
        {
            var options = new DecodeOptions { GenerationLength = 32, BlockLength = 16, Strategy = strategy };
            var counting = new CountingDenoiser(model.Denoiser);
            int runsBefore = model.Denoiser.Runs;
            var traced = options with { Trace = true };
            DecodeResult together = await new CpuSampler().DecodeAsync(counting, prompts, traced);
            Assert.That(model.Denoiser.Runs - runsBefore, Is.EqualTo(counting.Calls), $"{strategy}: one ONNX Runtime run per step");
            Assert.That(counting.Calls, Is.EqualTo(together.Sequences.Max(s => s.Nfe)), $"{strategy}: steps = the longest decode's NFE");
            for (int i = 0; i < prompts.Length; i++)
            {
                SequenceResult alone = (await new CpuSampler().DecodeAsync(model.Denoiser, [prompts[i]], traced)).Sequences[0];
                int steps = together.Sequences[i].Trace.Count;
                Assert.That(steps, Is.EqualTo(alone.Trace.Count));
                for (int t = 0; t < steps; t++)
                    Assert.That(together.Sequences[i].Trace[t].Committed.Select(x => (x.Position, x.Token, BitConverter.SingleToInt32Bits(x.Confidence))),
                        Is.EqualTo(alone.Trace[t].Committed.Select(x => (x.Position, x.Token, BitConverter.SingleToInt32Bits(x.Confidence)))),
                        $"{strategy}, prompt {i}, step {t + 1}: committed tokens and confidences bit for bit");
                Assert.That(together.Sequences[i].Tokens.ToArray(), Is.EqualTo(alone.Tokens.ToArray()), $"{strategy}, prompt {i}: tokens together vs alone");
                Assert.That(together.Sequences[i].Nfe, Is.EqualTo(alone.Nfe), $"{strategy}, prompt {i}: NFE together vs alone");
            }
        }
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

    [TestCase("float-mask.onnx", "Single [-1, -1]")]
    [TestCase("flat-mask.onnx", "Int64 [-1]")]
    public void AnAttentionMaskThatIsNotInt64BatchBySequenceIsRejected(string file, string described)
    {
        var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(Path.Combine(Models, file), new OnnxEngineOptions { MaskId = 0 }));
        Assert.That(e!.Message, Does.Contain("Input 'attention_mask'").And.Contain("must be int64 [batch, sequence]").And.Contain(described));
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
        foreach (DecodingStrategy strategy in new DecodingStrategy[] { new SaberStrategy(), new LowConfidenceStrategy(32), new ThresholdStrategy(0.9f), new FactorStrategy() })
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
