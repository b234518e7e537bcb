using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import.Tests;

/// <summary>
/// The KV-cache graph (<see cref="CacheGraph"/>, <c>model.cache.onnx</c>) against the plain graph, both run by ONNX Runtime
/// (default options): a full pass equals it, a windowed pass on an unchanged canvas reproduces the full pass's rows and
/// keys/values, a stale cache is approximate but the queries use their fresh keys/values, padding on the right of the key
/// axis changes nothing; its metadata; the importer and <c>saber import --cache-graph</c> writing it; and the plain graph's
/// bytes unchanged by the forward pass now being shared between the two. Every equality between the graphs is bit for bit
/// (measured maxima are printed).
/// </summary>
public sealed class CacheGraphTests
{
    private static string Models => Path.Combine(AppContext.BaseDirectory, "models");

    // ---- Full passes: the cache graph with every position a query (past all zeros) gives the plain graph's logits.

    [TestCase("tiny")]
    [TestCase("addition")]
    public void AShippedModelsFullPassEqualsItsPlainGraph(string name)
    {
        using var plain = new InferenceSession(Path.Combine(Models, name, "model.onnx"));
        using var cache = Cache.Open(Path.Combine(Models, name, CacheGraph.FileName));
        int[] canvas = ShippedCanvas(40, seed: 1);
        float[] expected = RunShippedPlain(plain, [canvas])[0];
        Pass full = cache.Full([canvas]);
        AssertBitIdentical(full.Logits, expected, $"{name}: full pass vs model.onnx");
    }

    [TestCase(Family.LLaDA, false, false, TestName = "Imported LLaDA untied: full pass equals the plain graph")]
    [TestCase(Family.LLaDA, true, true, TestName = "Imported LLaDA tied with include_bias: full pass equals the plain graph")]
    [TestCase(Family.Dream, false, false, TestName = "Imported Dream (grouped-query, q/k/v biases): full pass equals the plain graph")]
    public void AnImportedModelsFullPassEqualsItsPlainGraph(Family family, bool tied, bool bias)
    {
        using var fixture = Fixture.Create(family == Family.LLaDA ? TinyModel.LLaDA(tied, bias) : TinyModel.Dream());
        int[] canvas = FixtureCanvas(29, seed: 2);
        Pass full = fixture.Cache.Full([canvas]);
        AssertBitIdentical(full.Logits, fixture.Model.Run([canvas])[0], $"{family} tied {tied} bias {bias}: full pass vs model.onnx");
    }

    [Test]
    public void AHalfPrecisionImportsFullPassEqualsItsPlainGraph()
    {
        using var fixture = Fixture.Create(TinyModel.Dream() with { DType = FixtureDType.BF16 });
        int[] canvas = FixtureCanvas(17, seed: 3);
        AssertBitIdentical(fixture.Cache.Full([canvas]).Logits, fixture.Model.Run([canvas])[0], "Dream bf16: full pass vs model.onnx");
    }

    // ---- Windowed passes.

    /// <summary>A block of 8 and two far positions, out of order: the query set of a windowed pass on a 40-position canvas.</summary>
    private static readonly int[] Window = [8, 9, 10, 11, 12, 13, 14, 15, 2, 33];

    [TestCase("tiny")]
    [TestCase("dream")]
    public void AWindowedPassOnAnUnchangedCanvasReproducesTheFullPass(string model)
    {
        using Subject subject = Subject.Create(model);
        int[] canvas = subject.Canvas(40, seed: 4);
        Pass full = subject.Cache.Full([canvas]);
        Pass window = subject.Cache.Run([[.. Window.Select(p => canvas[p])]], [Window], [canvas.Length], full.Keys, full.Values);

        float[] expectedRows = [.. Window.SelectMany(p => full.Row(p))];
        AssertBitIdentical(window.Logits, expectedRows, $"{model}: windowed rows vs the full pass's rows");
        for (int layer = 0; layer < subject.Cache.Layers; layer++)
        {
            AssertBitIdentical(window.Keys[layer], full.Gather(full.Keys[layer], Window), $"{model} layer {layer}: present keys vs the full pass's");
            AssertBitIdentical(window.Values[layer], full.Gather(full.Values[layer], Window), $"{model} layer {layer}: present values vs the full pass's");
        }
    }

    [TestCase("tiny")]
    [TestCase("dream")]
    public void AStaleCacheIsApproximateButTheQueriesUseTheirFreshKeysAndValues(string model)
    {
        using Subject subject = Subject.Create(model);
        int[] before = subject.Canvas(40, seed: 5);
        Pass cached = subject.Cache.Full([before]);
        // Since the cache was filled: positions 20..23 (not queries) and 10 (a query) changed.
        int[] after = [.. before];
        foreach (int p in new[] { 20, 21, 22, 23, 10 }) after[p] = subject.OtherToken(before[p]);
        long[] queryIds = [.. Window.Select(p => (long)after[p])];

        Pass window = subject.Cache.Run([queryIds], [Window], [after.Length], cached.Keys, cached.Values);
        Pass fresh = subject.Cache.Full([after]);
        float[] freshRows = [.. Window.SelectMany(p => fresh.Row(p))];
        double staleness = MaxAbsDifference(window.Logits, freshRows);
        TestContext.Out.WriteLine($"{model}: windowed pass on a stale cache vs the full pass on the new canvas: max |diff| {staleness:E2}");
        Assert.That(staleness, Is.GreaterThan(1e-3), "the changed non-query positions' stale keys/values should show in the query rows");

        // Layer 0's keys and values depend on a position's own token alone: the queries' equal the full pass's on the new canvas.
        AssertBitIdentical(window.Keys[0], fresh.Gather(fresh.Keys[0], Window), $"{model}: layer 0 present keys vs the new canvas's");
        AssertBitIdentical(window.Values[0], fresh.Gather(fresh.Values[0], Window), $"{model}: layer 0 present values vs the new canvas's");

        // The changed query's row moves (against the same windowed pass on the unchanged canvas).
        Pass unchanged = subject.Cache.Run([[.. Window.Select(p => (long)before[p])]], [Window], [before.Length], cached.Keys, cached.Values);
        int changed = Array.IndexOf(Window, 10);
        Assert.That(MaxAbsDifference(window.Logits.AsSpan(changed * subject.Cache.Vocabulary, subject.Cache.Vocabulary).ToArray(),
            unchanged.Logits.AsSpan(changed * subject.Cache.Vocabulary, subject.Cache.Vocabulary).ToArray()), Is.GreaterThan(1e-3));

        // The cached entries at the query positions are ignored: NaN there changes nothing.
        float[][] poisonedKeys = [.. cached.Keys.Select(k => Poison(k, cached, Window))];
        float[][] poisonedValues = [.. cached.Values.Select(v => Poison(v, cached, Window))];
        Pass poisoned = subject.Cache.Run([queryIds], [Window], [after.Length], poisonedKeys, poisonedValues);
        AssertBitIdentical(poisoned.Logits, window.Logits, $"{model}: NaN in the past at the query positions");
    }

    [TestCase("tiny")]
    [TestCase("dream")]
    public void ARaggedBatchGivesEachCanvasItsLogitsAlone(string model)
    {
        using Subject subject = Subject.Create(model);
        int[][] canvases = [subject.Canvas(40, seed: 6), subject.Canvas(27, seed: 7)];
        Pass batch = subject.Cache.Full(canvases);
        for (int b = 0; b < canvases.Length; b++)
        {
            Pass alone = subject.Cache.Full([canvases[b]]);
            AssertBitIdentical(batch.CanvasLogits(b, canvases[b].Length), alone.Logits, $"{model}: canvas {b} ({canvases[b].Length} positions) in a batch vs alone");
            int[] positions = [.. Enumerable.Range(0, canvases[b].Length)];
            for (int layer = 0; layer < subject.Cache.Layers; layer++)
                AssertBitIdentical(batch.Gather(batch.Keys[layer], positions, b), alone.Keys[layer], $"{model}: canvas {b} layer {layer} keys");
        }
        // And a windowed pass of the batch on its own cache gives the full pass's rows.
        int[][] windows = [[8, 9, 10, 33], [0, 26, 5, 6]];
        Pass window = subject.Cache.Run([.. windows.Select((w, b) => w.Select(p => (long)canvases[b][p]).ToArray())], windows,
            [.. canvases.Select(c => c.Length)], batch.Keys, batch.Values, keys: 40);
        float[] expected = [.. windows.SelectMany((w, b) => w.SelectMany(p => batch.Row(p, b)))];
        AssertBitIdentical(window.Logits, expected, $"{model}: windowed ragged batch vs the full pass's rows");
    }

    // ---- Metadata, files, commands.

    [Test]
    public void TheShippedCacheGraphsMetadataIsThePlainGraphsPlusTheSizes()
    {
        using var plain = new InferenceSession(Path.Combine(Models, "tiny", "model.onnx"));
        using var cache = new InferenceSession(Path.Combine(Models, "tiny", CacheGraph.FileName));
        // The sizes of models/tiny as tools/make_tiny_model.py states them (4 layers, d 128, 4 heads of 32, ff 352, V 100).
        var expected = new Dictionary<string, string>(plain.ModelMetadata.CustomMetadataMap)
        {
            ["cache_graph"] = "1", ["layers"] = "4", ["hidden_size"] = "128", ["heads"] = "4", ["kv_heads"] = "4", ["head_dim"] = "32",
            ["intermediate_size"] = "352", ["vocabulary"] = "100",
        };
        Assert.That(plain.ModelMetadata.CustomMetadataMap.Keys, Is.SupersetOf(new[] { "mask_id", "max_positions", "weights", "attention_mask" }));
        Assert.That(cache.ModelMetadata.CustomMetadataMap, Is.EquivalentTo(expected));
        string[] inputs = ["input_ids", "query_positions", "attention_mask", .. Enumerable.Range(0, 4).SelectMany(i => new[] { $"past_key_{i}", $"past_value_{i}" }), "logits_index"];
        Assert.That(cache.InputNames, Is.EqualTo(inputs));
        Assert.That(cache.OutputNames, Is.EqualTo(new[] { "logits" }.Concat(Enumerable.Range(0, 4).SelectMany(i => new[] { $"present_key_{i}", $"present_value_{i}" }))));
        Assert.That(cache.InputMetadata["past_key_0"].Dimensions, Is.EqualTo(new[] { -1, 4, -1, 32 }));
        Assert.That(cache.OutputMetadata["present_value_3"].Dimensions, Is.EqualTo(new[] { -1, 4, -1, 32 }));
        Assert.That(cache.OutputMetadata["logits"].Dimensions, Is.EqualTo(new[] { -1, -1, 100 }));
    }

    [TestCase("tiny")]
    [TestCase("addition")]
    public void RebuildingAShippedCacheGraphGivesTheCommittedBytes(string name)
    {
        string folder = Directory.CreateTempSubdirectory("saber-cache-graph-").FullName;
        try
        {
            File.Copy(Path.Combine(Models, name, "model.onnx"), Path.Combine(folder, "model.onnx"));
            string written = ModelImporter.AddCacheGraph(folder);
            Assert.That(written, Is.EqualTo(Path.Combine(folder, CacheGraph.FileName)));
            Assert.That(File.ReadAllBytes(written), Is.EqualTo(File.ReadAllBytes(Path.Combine(Models, name, CacheGraph.FileName))));
            Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.onnx", CacheGraph.FileName }));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestCase(Family.LLaDA, FixtureDType.F32)]
    [TestCase(Family.Dream, FixtureDType.BF16)]
    public async Task TheImporterWritesTheCacheGraphAndSaberImportRebuildsIt(Family family, FixtureDType type)
    {
        string root = Directory.CreateTempSubdirectory("saber-cache-graph-").FullName;
        try
        {
            string checkpoint = TestCheckpoints.Write(Path.Combine(root, "checkpoint"),
                new FixtureOptions { Family = family, DType = type, IncludeBias = family == Family.LLaDA });
            string model = Path.Combine(root, "model");
            new ModelImporter().Import(checkpoint, model);
            string cachePath = Path.Combine(model, CacheGraph.FileName);
            string manifestPath = Path.Combine(model, ModelManifest.FileName);
            Assert.That((string?)JsonNode.Parse(File.ReadAllText(manifestPath))!["cache_graph"], Is.EqualTo("model.cache.onnx"));
            long cacheBytes = new FileInfo(cachePath).Length, dataBytes = new FileInfo(Path.Combine(model, "model.onnx.data")).Length;
            TestContext.Out.WriteLine($"{family}: model.cache.onnx {cacheBytes} bytes, model.onnx.data {dataBytes} bytes");
            Assert.That(cacheBytes, Is.LessThan(dataBytes / 4), "the cache graph should point into model.onnx.data, not hold the weights");

            // It runs on the import's data file and its full pass equals model.onnx's logits.
            using var plain = new InferenceSession(Path.Combine(model, "model.onnx"));
            using (var cache = Cache.Open(cachePath))
            {
                int[] canvas = FixtureCanvas(21, seed: 8);
                AssertBitIdentical(cache.Full([canvas]).Logits, RunImportedPlain(plain, canvas), $"{family} {type} import: full pass vs model.onnx");
            }

            // A folder imported before cache graphs: no model.cache.onnx, no manifest entry. saber import --cache-graph
            // writes the same bytes and names it in the manifest; model.onnx is left as it was.
            byte[] imported = File.ReadAllBytes(cachePath), graph = File.ReadAllBytes(Path.Combine(model, "model.onnx"));
            File.Delete(cachePath);
            JsonObject manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!.AsObject();
            manifest.Remove("cache_graph");
            File.WriteAllText(manifestPath, manifest.ToJsonString());
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int code = await global::Saber.Cli.Program.RunAsync(["import", "--cache-graph", model], stdout, stderr);
            Assert.That(code, Is.EqualTo(0), stderr.ToString());
            Assert.That(stdout.ToString(), Does.StartWith($"wrote {cachePath} ("));
            Assert.That(File.ReadAllBytes(cachePath), Is.EqualTo(imported));
            Assert.That(File.ReadAllBytes(Path.Combine(model, "model.onnx")), Is.EqualTo(graph));
            Assert.That((string?)JsonNode.Parse(File.ReadAllText(manifestPath))!["cache_graph"], Is.EqualTo("model.cache.onnx"));
            Assert.That(Directory.GetFiles(model).Where(f => f.Contains(".tmp-", StringComparison.Ordinal)), Is.Empty);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    public async Task SaberImportCacheGraphErrorsNameTheFile()
    {
        string folder = Directory.CreateTempSubdirectory("saber-cache-graph-").FullName;
        try
        {
            var stderr = new StringWriter();
            int code = await global::Saber.Cli.Program.RunAsync(["import", "--cache-graph", folder], new StringWriter(), stderr);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1), stderr.ToString());
            Assert.That(stderr.ToString(), Does.StartWith("saber import: ").And.Contain(Path.Combine(folder, "model.onnx")));

            File.WriteAllBytes(Path.Combine(folder, "model.onnx"), [0xff, 0xff, 0xff]);
            stderr = new StringWriter();
            code = await global::Saber.Cli.Program.RunAsync(["import", "--cache-graph", folder], new StringWriter(), stderr);
            Assert.That(code, Is.EqualTo(1), stderr.ToString());
            Assert.That(stderr.ToString(), Does.Contain(Path.Combine(folder, "model.onnx")));
            Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName), Is.EqualTo(new[] { "model.onnx" }));

            stderr = new StringWriter();
            code = await global::Saber.Cli.Program.RunAsync(["import", "--cache-graph", folder, "extra"], new StringWriter(), stderr);
            Assert.That(code, Is.EqualTo(2));
            Assert.That(stderr.ToString(), Does.StartWith("saber import: --cache-graph takes one MODEL_DIR"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    // SHA-256 of the plain graphs as written before the forward pass was shared with the cache graph (commit 4446814):
    // TinyModel's graph of each fixture, and the importer's model.onnx of a fixture checkpoint folder named "checkpoint".
    [TestCase(Family.LLaDA, false, false, FixtureDType.F32, "e167b7992aaa10eeddb547149d4ff7f04746e34b2df9159f62d8175b49a7551b")]
    [TestCase(Family.LLaDA, true, true, FixtureDType.BF16, "865dc985ea5cad2f8f8993be6772c2ef68c627b00e97d9129c5b0f7ad5480e30")]
    [TestCase(Family.LLaDA, false, true, FixtureDType.F16, "c790a7622ad569df7a7105a468d8a08368033b68af9de87a975dfe807d71952b")]
    [TestCase(Family.Dream, false, false, FixtureDType.F32, "da1e0264ec6648dbed264b31df367a284446c0ead31f376e6fed2f277dd571df")]
    public void ThePlainGraphIsByteIdenticalToTheOneWrittenBeforeTheCacheGraph(Family family, bool tied, bool bias, FixtureDType type, string sha256)
    {
        using var model = TinyModel.Create((family == Family.LLaDA ? TinyModel.LLaDA(tied, bias) : TinyModel.Dream()) with { DType = type });
        Assert.That(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(model.GraphPath))), Is.EqualTo(sha256));
    }

    [TestCase(Family.LLaDA, "941f973dad8380eb90db71c9863542c49812212d993ddf242c6eb599a80d1f9c")]
    [TestCase(Family.Dream, "46321983bbffe65d0eed8b2cc30322b9a8f1eecce2362497e0effe1cc2c0a11b")]
    public void TheImportersModelOnnxIsByteIdenticalToTheOneWrittenBeforeTheCacheGraph(Family family, string sha256)
    {
        string root = Directory.CreateTempSubdirectory("saber-cache-graph-").FullName;
        try
        {
            string checkpoint = TestCheckpoints.Write(Path.Combine(root, "checkpoint"),
                new FixtureOptions { Family = family, TiedEmbeddings = family == Family.LLaDA, IncludeBias = family == Family.LLaDA });
            new ModelImporter().Import(checkpoint, Path.Combine(root, "model"),
                new ImportOptions { DType = family == Family.Dream ? WeightType.BFloat16 : null });
            Assert.That(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(root, "model", "model.onnx")))), Is.EqualTo(sha256));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // ---- Helpers.

    private static int[] ShippedCanvas(int length, int seed)
    {
        var random = new Random(seed);
        // Printable characters (ids 4..98) with about a quarter masked (99), as a canvas mid-decoding.
        return [.. Enumerable.Range(0, length).Select(_ => random.Next(4) == 0 ? 99 : random.Next(4, 99))];
    }

    private static int[] FixtureCanvas(int length, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, length).Select(_ => random.Next(0, 300))];
    }

    /// <summary>The shipped graph (input_ids, attention_mask → logits of every position) on one unpadded canvas.</summary>
    private static float[][] RunShippedPlain(InferenceSession plain, int[][] canvases)
    {
        int[] canvas = canvases.Single();
        using var ids = OrtValue.CreateTensorValueFromMemory(canvas.Select(t => (long)t).ToArray(), [1, canvas.Length]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, canvas.Length).ToArray(), [1, canvas.Length]);
        using var run = new RunOptions();
        using var outputs = plain.Run(run, new Dictionary<string, OrtValue> { ["input_ids"] = ids, ["attention_mask"] = mask }, ["logits"]);
        return [outputs[0].GetTensorDataAsSpan<float>().ToArray()];
    }

    /// <summary>An imported model.onnx on one unpadded canvas, every position's logits.</summary>
    private static float[] RunImportedPlain(InferenceSession plain, int[] canvas)
    {
        using var ids = OrtValue.CreateTensorValueFromMemory(canvas.Select(t => (long)t).ToArray(), [1, canvas.Length]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, canvas.Length).ToArray(), [1, canvas.Length]);
        using var rows = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, canvas.Length).Select(i => (long)i).ToArray(), [1, canvas.Length]);
        using var run = new RunOptions();
        using var outputs = plain.Run(run, new Dictionary<string, OrtValue> { ["input_ids"] = ids, ["attention_mask"] = mask, ["logits_index"] = rows }, ["logits"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Past entries at the given positions of canvas 0 replaced by NaN.</summary>
    private static float[] Poison(float[] past, Pass pass, int[] positions)
    {
        float[] copy = [.. past];
        for (int h = 0; h < pass.KvHeads; h++)
            foreach (int p in positions)
                copy.AsSpan((h * pass.Queries + p) * pass.HeadDim, pass.HeadDim).Fill(float.NaN);
        return copy;
    }

    private static void AssertBitIdentical(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        int differing = 0;
        for (int i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i])) differing++;
        TestContext.Out.WriteLine($"{what}: {actual.Length} values, {differing} differ, max |diff| {MaxAbsDifference(actual, expected):E2}");
        Assert.That(actual.All(float.IsFinite), Is.True, $"{what}: a value is not finite");
        Assert.That(differing, Is.Zero, what);
    }

    private static double MaxAbsDifference(float[] actual, float[] expected)
    {
        double worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs((double)actual[i] - expected[i]));
        return worst;
    }

    /// <summary>One run's outputs: logits [batch, queries, V] (every query row) and per layer keys/values [batch, kv, queries, head_dim].</summary>
    private sealed record Pass(float[] Logits, float[][] Keys, float[][] Values, int Batch, int Queries, int KvHeads, int HeadDim, int Vocabulary)
    {
        public float[] Row(int query, int batch = 0) => Logits.AsSpan((batch * Queries + query) * Vocabulary, Vocabulary).ToArray();

        public float[] CanvasLogits(int batch, int length) => Logits.AsSpan(batch * Queries * Vocabulary, length * Vocabulary).ToArray();

        /// <summary>The entries of the given queries of one canvas, [kv, positions, head_dim] (a one-canvas present's layout).</summary>
        public float[] Gather(float[] tensor, int[] queries, int batch = 0)
        {
            var result = new float[KvHeads * queries.Length * HeadDim];
            for (int h = 0; h < KvHeads; h++)
                for (int i = 0; i < queries.Length; i++)
                    tensor.AsSpan(((batch * KvHeads + h) * Queries + queries[i]) * HeadDim, HeadDim)
                        .CopyTo(result.AsSpan((h * queries.Length + i) * HeadDim));
            return result;
        }
    }

    /// <summary>A cache graph in ONNX Runtime (default options), with its sizes read from its input and output shapes.</summary>
    private sealed class Cache : IDisposable
    {
        private readonly InferenceSession session;

        private Cache(string path)
        {
            session = new InferenceSession(path);
            Layers = session.InputNames.Count(n => n.StartsWith("past_key_", StringComparison.Ordinal));
            int[] past = session.InputMetadata["past_key_0"].Dimensions;
            (KvHeads, HeadDim) = (past[1], past[3]);
            Vocabulary = session.OutputMetadata["logits"].Dimensions[2];
        }

        public int Layers { get; }
        public int KvHeads { get; }
        public int HeadDim { get; }
        public int Vocabulary { get; }

        public static Cache Open(string path) => new(path);

        /// <summary>Every position of every canvas a query (key slots: the longest canvas; the others padded on the right), past all zeros.</summary>
        public Pass Full(int[][] canvases)
        {
            int keys = canvases.Max(c => c.Length);
            long[][] ids = [.. canvases.Select(c => Enumerable.Range(0, keys).Select(p => p < c.Length ? (long)c[p] : 0L).ToArray())];
            int[][] positions = [.. canvases.Select(_ => Enumerable.Range(0, keys).ToArray())];
            float[][] zeros = [.. Enumerable.Range(0, Layers).Select(_ => new float[canvases.Length * KvHeads * keys * HeadDim])];
            return Run(ids, positions, [.. canvases.Select(c => c.Length)], zeros, zeros, keys);
        }

        /// <summary>One run: the query tokens and positions of each canvas, its length (attention mask), the past [batch, kv, keys, head_dim].</summary>
        public Pass Run(long[][] queryIds, int[][] queryPositions, int[] lengths, float[][] pastKeys, float[][] pastValues, int? keys = null)
        {
            int batch = queryIds.Length, queries = queryIds[0].Length, keySlots = keys ?? lengths.Max();
            var inputs = new Dictionary<string, OrtValue>();
            try
            {
                inputs["input_ids"] = OrtValue.CreateTensorValueFromMemory(queryIds.SelectMany(r => r).ToArray(), [batch, queries]);
                inputs["query_positions"] = OrtValue.CreateTensorValueFromMemory(queryPositions.SelectMany(r => r.Select(p => (long)p)).ToArray(), [batch, queries]);
                inputs["attention_mask"] = OrtValue.CreateTensorValueFromMemory(
                    lengths.SelectMany(n => Enumerable.Range(0, keySlots).Select(p => p < n ? 1L : 0L)).ToArray(), [batch, keySlots]);
                for (int layer = 0; layer < Layers; layer++)
                {
                    inputs[$"past_key_{layer}"] = OrtValue.CreateTensorValueFromMemory(pastKeys[layer], [batch, KvHeads, keySlots, HeadDim]);
                    inputs[$"past_value_{layer}"] = OrtValue.CreateTensorValueFromMemory(pastValues[layer], [batch, KvHeads, keySlots, HeadDim]);
                }
                inputs["logits_index"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, batch * queries).Select(i => (long)i).ToArray(), [batch, queries]);
                string[] outputs = ["logits", .. Enumerable.Range(0, Layers).SelectMany(i => new[] { $"present_key_{i}", $"present_value_{i}" })];
                using var run = new RunOptions();
                using IDisposableReadOnlyCollection<OrtValue> results = session.Run(run, inputs, outputs);
                return new Pass(results[0].GetTensorDataAsSpan<float>().ToArray(),
                    [.. Enumerable.Range(0, Layers).Select(i => results[1 + 2 * i].GetTensorDataAsSpan<float>().ToArray())],
                    [.. Enumerable.Range(0, Layers).Select(i => results[2 + 2 * i].GetTensorDataAsSpan<float>().ToArray())],
                    batch, queries, KvHeads, HeadDim, Vocabulary);
            }
            finally
            {
                foreach (OrtValue value in inputs.Values) value.Dispose();
            }
        }

        public void Dispose() => session.Dispose();
    }

    /// <summary>A fixture checkpoint's plain graph (<see cref="TinyModel"/>) and its cache graph beside it, on the same external weights.</summary>
    private sealed class Fixture : IDisposable
    {
        private Fixture(TinyModel model)
        {
            Model = model;
            string path = Path.Combine(model.Folder, CacheGraph.FileName);
            using (var stream = File.Create(path))
                CacheGraph.Write(stream, model.Spec, model.External, CacheGraph.Metadata(model.Spec, model.Metadata));
            Cache = Cache.Open(path);
        }

        public TinyModel Model { get; }
        public Cache Cache { get; }

        public static Fixture Create(FixtureOptions options) => new(TinyModel.Create(options));

        public void Dispose()
        {
            Cache.Dispose();
            Model.Dispose();
        }
    }

    /// <summary>The windowed tests' two models: the shipped models/tiny, or an imported Dream fixture (grouped-query, biases).</summary>
    private sealed class Subject : IDisposable
    {
        private readonly Fixture? fixture;
        private readonly Cache? shipped;

        private Subject(string model)
        {
            if (model == "tiny") shipped = Cache.Open(Path.Combine(Models, "tiny", CacheGraph.FileName));
            else fixture = Fixture.Create(TinyModel.Dream());
        }

        public Cache Cache => shipped ?? fixture!.Cache;

        public static Subject Create(string model) => new(model);

        public int[] Canvas(int length, int seed) => shipped is not null ? ShippedCanvas(length, seed) : FixtureCanvas(length, seed);

        /// <summary>A token other than <paramref name="token"/> (valid in both vocabularies).</summary>
        public int OtherToken(int token) => token == 40 ? 41 : 40;

        public void Dispose()
        {
            shipped?.Dispose();
            fixture?.Dispose();
        }
    }
}
