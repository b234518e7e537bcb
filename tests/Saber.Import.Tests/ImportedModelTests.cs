using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Saber.Checkpoints.Fixtures;
using Saber.Extensions.AI;
using Saber.Import.Checkpoints;
using Saber.Onnx;
using Saber.Service;
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// Fixture checkpoints in each family's Hugging Face layout, imported, then used as a user would: logits against the
/// fixtures' independent literal forward pass (every row, the generation rows only, ragged batches, Dream's shift),
/// and decodes through the CLI, the engine and the chat client with the checkpoint's tokenizer and chat template.
/// </summary>
[NonParallelizable]
public sealed class ImportedModelTests
{
    /// <summary>
    /// The float32 graph against the double-precision literal pass on the same stored weights. Logits of these fixtures
    /// are O(1); measured differences are printed to the test output.
    /// </summary>
    private const double Tolerance = 1e-4;

    private static string root = "";
    private static readonly Dictionary<string, (string Checkpoint, string Model)> Imported = [];

    [OneTimeSetUp]
    public void CreateRoot() => root = Directory.CreateTempSubdirectory("saber-imported-").FullName;

    [OneTimeTearDown]
    public void DeleteRoot()
    {
        Directory.Delete(root, recursive: true);
        Imported.Clear();
    }

    /// <summary>A fixture checkpoint and its import (made once per combination and shared by the tests).</summary>
    private static (string Checkpoint, string Model) Import(Family family, FixtureDType dtype = FixtureDType.F32, int shards = 1, string? importAs = null)
    {
        string key = $"{family}-{dtype}-{shards}-{importAs ?? "same"}";
        if (Imported.TryGetValue(key, out var found)) return found;
        string checkpoint = Path.Combine(root, key + "-checkpoint"), model = Path.Combine(root, key);
        CheckpointFixture.Write(checkpoint, new FixtureOptions { Family = family, DType = dtype, Shards = shards });
        var options = new ImportOptions { DType = importAs is null ? null : ImportOptions.DTypeNames[importAs] };
        new ModelImporter().Import(checkpoint, model, options);
        return Imported[key] = (checkpoint, model);
    }

    private static readonly string[] Texts = ["def add(a, b):\n    return", "The answer is", "print(\"hello, world\")"];

    /// <summary>Each text's ids followed by <paramref name="masks"/> mask ids: canvases as a decode's first step sees them.</summary>
    private static int[][] Canvases(IModelTokenizer tokenizer, int masks) =>
        Texts.Select(t => tokenizer.Encode(t).Concat(Enumerable.Repeat(tokenizer.MaskId, masks)).ToArray()).ToArray();

    public static IEnumerable<TestCaseData> Checkpoints()
    {
        yield return new TestCaseData(Family.LLaDA, FixtureDType.F32, 1, null).SetArgDisplayNames("LLaDA", "F32", "single file", "as stored");
        yield return new TestCaseData(Family.LLaDA, FixtureDType.BF16, 2, null).SetArgDisplayNames("LLaDA", "BF16", "2 shards", "as stored");
        yield return new TestCaseData(Family.Dream, FixtureDType.F32, 3, null).SetArgDisplayNames("Dream", "F32", "3 shards", "as stored");
        yield return new TestCaseData(Family.Dream, FixtureDType.BF16, 1, "fp32").SetArgDisplayNames("Dream", "BF16", "single file", "fp32");
        yield return new TestCaseData(Family.Dream, FixtureDType.F16, 2, null).SetArgDisplayNames("Dream", "F16", "2 shards", "as stored");
    }

    [TestCaseSource(nameof(Checkpoints))]
    public async Task LogitsMatchTheLiteralForwardPassForEveryRowAndTheGenerationRows(Family family, FixtureDType dtype, int shards, string? importAs)
    {
        var (checkpoint, directory) = Import(family, dtype, shards, importAs);
        using LocalModel model = LocalModel.Open(directory);
        Assert.That(model.Architecture, Is.EqualTo(family == Family.LLaDA ? "llada" : "dream"));
        Assert.That(model.Denoiser.ShiftedLogits, Is.EqualTo(family == Family.Dream));
        int[][] canvases = Canvases(model.Tokenizer, masks: 6);
        int[] prompts = Texts.Select(t => model.Tokenizer.Encode(t).Length).ToArray();
        var request = new DenoiseRequest(1, [0, 1, 2], canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray());

        // Every row, as one ragged batch; then the generation rows only (copied first: the next call reuses the buffers).
        IReadOnlyList<SequenceLogits> all = await model.Denoiser.ForwardAsync(request, CancellationToken.None);
        float[][][] allRows = all.Select((l, b) => Enumerable.Range(0, canvases[b].Length).Select(p => l.Float32Row(p).ToArray()).ToArray()).ToArray();
        IReadOnlyList<SequenceLogits> generation = await model.Denoiser.ForwardAsync(request with { LogitsFrom = prompts }, CancellationToken.None);

        double worst = 0;
        for (int b = 0; b < canvases.Length; b++)
        {
            float[,] expected = ReferenceForward.PredictionLogits(checkpoint, canvases[b]);
            Assert.That(expected.GetLength(1), Is.EqualTo(model.Denoiser.VocabularySize), "the logits width (LLaDA: embedding_size)");
            Assert.That((generation[b].FirstPosition, generation[b].Rows), Is.EqualTo((prompts[b], canvases[b].Length - prompts[b])));
            for (int p = 0; p < canvases[b].Length; p++)
            {
                for (int v = 0; v < expected.GetLength(1); v++)
                    worst = Math.Max(worst, Math.Abs(allRows[b][p][v] - expected[p, v]));
                if (p >= prompts[b])
                    Assert.That(generation[b].Float32Row(p).ToArray(), Is.EqualTo(allRows[b][p]), $"canvas {b}, position {p}: generation rows equal the same rows of a full pass");
            }
        }
        TestContext.Out.WriteLine($"max |imported - literal| = {worst:G3}");
        Assert.That(worst, Is.LessThan(Tolerance));
    }

    [Test]
    public async Task DreamsPredictionForAPositionIsTheModelsOutputOneRowEarlier()
    {
        var (checkpoint, directory) = Import(Family.Dream);
        using LocalModel model = LocalModel.Open(directory);
        int[] canvas = Canvases(model.Tokenizer, masks: 4)[1];
        SequenceLogits logits = (await model.Denoiser.ForwardAsync(new DenoiseRequest(1, [0], [canvas]), CancellationToken.None))[0];
        float[,] raw = ReferenceForward.Logits(checkpoint, canvas);
        int v = raw.GetLength(1);
        double Distance(int position, int rawRow) => Enumerable.Range(0, v).Max(i => Math.Abs(logits[position, i] - raw[rawRow, i]));
        Assert.That(Distance(0, 0), Is.LessThan(Tolerance), "position 0 keeps row 0");
        for (int p = 1; p < canvas.Length; p++)
        {
            Assert.That(Distance(p, p - 1), Is.LessThan(Tolerance), $"position {p} reads output row {p - 1}");
            Assert.That(Distance(p, p), Is.GreaterThan(100 * Tolerance), $"position {p}: the unshifted row differs (the test can tell)");
        }
    }

    public static IEnumerable<TestCaseData> Strategies()
    {
        foreach (Family family in new[] { Family.LLaDA, Family.Dream })
            foreach (string[] strategy in new[]
            {
                new[] { "--strategy", "saber" }, new[] { "--strategy", "saber", "--variant", "paper" },
                new[] { "--strategy", "low-confidence", "--steps", "8" }, new[] { "--strategy", "threshold", "--threshold", "0.5" },
                new[] { "--strategy", "factor" },
            })
                yield return new TestCaseData(family, strategy).SetArgDisplayNames(family.ToString(), string.Join(" ", strategy.Skip(1)));
    }

    /// <summary>
    /// <c>saber generate --prompt-ids --json</c> on an imported model, every strategy: all G ids per prompt, the text up to
    /// the first end-of-text, NFE, id for id the same as the library's CpuSampler on the same model.
    /// </summary>
    [TestCaseSource(nameof(Strategies))]
    public async Task GenerateWithPromptIdsWritesEveryGeneratedIdAsJson(Family family, string[] strategy)
    {
        var (_, directory) = Import(family);
        int[][] prompts = [[10, 20, 30, 40], [7, 8]];
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await Saber.Cli.Program.RunAsync(["generate", "--model", directory, "--prompt-ids", "10,20,30,40;7,8", "--json", "--no-progress",
            "--gen-length", "16", "--block-length", "8", .. strategy], stdout, stderr);
        Assert.That(exit, Is.EqualTo(0), stderr.ToString());
        string[] lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2));

        using LocalModel model = LocalModel.Open(directory);
        DecodingStrategy decoding = strategy[1] switch
        {
            "saber" => new SaberStrategy(strategy.Length > 2 ? SaberVariant.Paper : SaberVariant.Reference),
            "low-confidence" => new LowConfidenceStrategy(8),
            "threshold" => new ThresholdStrategy(0.5f),
            _ => new FactorStrategy(1f),
        };
        DecodeResult direct = await new CpuSampler().DecodeAsync(model.Denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(),
            new DecodeOptions { GenerationLength = 16, BlockLength = 8, Strategy = decoding });
        for (int b = 0; b < prompts.Length; b++)
        {
            using JsonDocument json = JsonDocument.Parse(lines[b]);
            JsonElement result = json.RootElement;
            Assert.That(result.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(prompts[b]));
            int[] ids = result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.That(ids, Is.EqualTo(direct.Sequences[b].Tokens.ToArray()), $"prompt {b}: id for id as the library decodes it");
            Assert.That(ids, Has.None.EqualTo(model.Tokenizer.MaskId));
            Assert.That(result.GetProperty("nfe").GetInt32(), Is.EqualTo(direct.Sequences[b].Nfe));
            Assert.That(result.GetProperty("text").GetString(), Is.EqualTo(model.Tokenizer.Decode(ids, null)));
        }
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public async Task CompareAndEvalRunOnAnImportedModel(Family family)
    {
        var (_, directory) = Import(family);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await Saber.Cli.Program.RunAsync(["compare", "--model", directory, "--gen-length", "8", "--block-length", "8", "def f(x):"], stdout, stderr);
        Assert.That(exit, Is.EqualTo(0), stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain("NFE").IgnoreCase);

        string set = Path.Combine(root, $"set-{family}.jsonl");
        await File.WriteAllLinesAsync(set, ["{\"prompt\": \"1+1=\", \"answer\": \"2\"}", "{\"prompt\": \"def f(\", \"answer\": \"x)\"}"]);
        stdout = new StringWriter();
        exit = await Saber.Cli.Program.RunAsync(["eval", "--model", directory, "--set", set, "--gen-length", "8", "--json", "--no-progress"], stdout, stderr);
        Assert.That(exit, Is.EqualTo(0), stderr.ToString());
        using JsonDocument json = JsonDocument.Parse(stdout.ToString());
        Assert.That(json.RootElement.ToString(), Does.Contain("saber").IgnoreCase);
    }

    /// <summary>
    /// The engine (<c>AddSaber</c>'s SaberEngine) and the chat client on an imported instruct checkpoint: the prompt is
    /// the family's chat template rendered (the expected strings are written here from the templates' meaning), and
    /// the engine's answers equal the CPU sampler's.
    /// </summary>
    [TestCase(Family.LLaDA, "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [TestCase(Family.Dream, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")]
    public async Task TheChatClientPromptsWithTheCheckpointsTemplate(Family family, string expectedPrompt)
    {
        var (_, directory) = Import(family);
        using LocalModel model = LocalModel.Open(directory);
        Assert.That(model.HasChatTemplate, Is.True);
        await using var engine = new SaberEngine(model.Denoiser, new SaberEngineOptions { DisposeDenoiser = false });
        var template = new JinjaChatPromptTemplate(model.ChatTemplate!, model.BosToken, model.EosToken);
        using var client = new SaberChatClient(engine, model.Tokenizer, new SaberChatClientOptions { PromptTemplate = template, DefaultMaxOutputTokens = 8 });
        ChatMessage[] messages = [new(ChatRole.User, "Hi there")];

        int[] expectedIds = model.Tokenizer.Encode(expectedPrompt);
        SaberChatRequest request = client.CreateRequest(messages, null);
        Assert.That(request.PromptTokens, Is.EqualTo(expectedIds), "the prompt is the rendered template, special tokens as single ids");
        Assert.That(expectedIds, Does.Contain(family == Family.LLaDA ? FixtureVocabulary.LLaDA.StartHeader : FixtureVocabulary.Dream.ImStart));

        ChatResponse response = await client.GetResponseAsync(messages);
        DecodeResult direct = await new CpuSampler().DecodeAsync(model.Denoiser, [expectedIds], request.Options);
        int[] generated = direct.Sequences[0].Tokens.ToArray();
        int end = model.Tokenizer.IndexOfEndOfText(generated);
        Assert.That(response.Text, Is.EqualTo(model.Tokenizer.Decode(end < 0 ? generated : generated[..end], null)));
        Assert.That(response.FinishReason, Is.EqualTo(end < 0 ? ChatFinishReason.Length : ChatFinishReason.Stop));
    }

    /// <summary><c>AddSaber</c> with an imported model's denoiser: concurrent requests decode as each would alone.</summary>
    [Test]
    public async Task AddSaberServesAnImportedModel()
    {
        var (_, directory) = Import(Family.Dream, FixtureDType.BF16, shards: 2);
        var services = new ServiceCollection();
        services.AddSaber(_ => LocalModel.Open(directory).Denoiser);
        await using ServiceProvider provider = services.BuildServiceProvider();
        SaberEngine engine = provider.GetRequiredService<SaberEngine>();
        using LocalModel model = LocalModel.Open(directory);
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 8 };
        int[][] prompts = Texts.Select(model.Tokenizer.Encode).ToArray();
        SequenceResult[] results = await Task.WhenAll(prompts.Select(p => engine.DecodeAsync(p, options)));
        for (int b = 0; b < prompts.Length; b++)
        {
            DecodeResult alone = await new CpuSampler().DecodeAsync(model.Denoiser, [prompts[b]], options);
            Assert.That(results[b].Tokens.ToArray(), Is.EqualTo(alone.Sequences[0].Tokens.ToArray()), $"request {b}");
        }
    }

    /// <summary>
    /// Dream's repositories ship the slow tokenizer (vocab.json, merges.txt, tokenizer_config.json's added tokens) rather
    /// than tokenizer.json: the import copies those files and the model encodes exactly as with the fast file.
    /// </summary>
    [Test]
    public async Task ADreamCheckpointWithTheSlowTokenizerFilesImportsAndDecodes()
    {
        string checkpoint = Path.Combine(root, "dream-slow-checkpoint"), directory = Path.Combine(root, "dream-slow");
        CheckpointFixture.Write(checkpoint, new FixtureOptions { Family = Family.Dream });
        FixtureTokenizer.ConvertToSlowFiles(checkpoint);
        new ModelImporter().Import(checkpoint, directory);
        Assert.That(File.Exists(Path.Combine(directory, "vocab.json")) && File.Exists(Path.Combine(directory, "merges.txt")), Is.True);

        using LocalModel slow = LocalModel.Open(directory);
        using LocalModel reference = LocalModel.Open(Import(Family.Dream).Model);
        foreach (string text in Texts)
            Assert.That(slow.Tokenizer.Encode(text), Is.EqualTo(reference.Tokenizer.Encode(text)), text);
        DecodeResult result = await new CpuSampler().DecodeAsync(slow.Denoiser, [slow.Tokenizer.Encode(Texts[0])], new DecodeOptions { GenerationLength = 8, BlockLength = 8 });
        Assert.That(result.Sequences[0].Tokens.ToArray(), Has.None.EqualTo(slow.Tokenizer.MaskId));
    }
}
