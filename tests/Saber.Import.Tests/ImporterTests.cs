using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;
using static Saber.Import.Tests.TestCheckpoints;
// An alias: the graph tests have a Saber.Import.Tests.LiteralForward of their own.
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// Whole imports of fixture checkpoints: what the model folder holds, that the weights arrive bit for bit (or converted
/// as <see cref="WeightConversion"/> says), that sharding does not change the output, and that a failed, refused or
/// cancelled import leaves nothing behind, through the library and through <c>saber import</c>.
/// </summary>
public sealed class ImporterTests
{
    private string root = "";

    [SetUp]
    public void CreateFolder() => root = Directory.CreateTempSubdirectory("saber-import-tests-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(root, recursive: true);

    private string Checkpoint(FixtureOptions options, string name = "checkpoint") => Write(Path.Combine(root, name), options);

    private string Output(string name = "model") => Path.Combine(root, name);

    private static ImportResult Import(string checkpoint, string output, ImportOptions? options = null,
        IProgress<ImportProgress>? progress = null, CancellationToken cancellationToken = default) =>
        new ModelImporter().Import(checkpoint, output, options, progress, cancellationToken);

    /// <summary>The folder after a failed import: the checkpoint alone, no model folder, no temporary folder.</summary>
    private void AssertNothingLeftBehind(string checkpointName = "checkpoint") =>
        Assert.That(Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName), Is.EqualTo(new[] { checkpointName }));

    [TestCase(Family.LLaDA, 1)]
    [TestCase(Family.Dream, 3)]
    public void AnImportWritesTheGraphTheWeightsTheTokenizerAndTheManifest(Family family, int shards)
    {
        string checkpoint = Checkpoint(new FixtureOptions { Family = family, Shards = shards });
        ImportResult result = Import(checkpoint, Output());
        string[] expected = family == Family.Dream
            ? ["generation_config.json", "model.cache.onnx", "model.onnx", "model.onnx.data", "saber_model.json", "tokenizer.json", "tokenizer_config.json"]
            : ["model.cache.onnx", "model.onnx", "model.onnx.data", "saber_model.json", "tokenizer.json", "tokenizer_config.json"];
        Assert.That(Listing(Output()), Is.EqualTo(expected));
        Assert.That(result.ModelDirectory, Is.EqualTo(Output()));
        Assert.That(result.Tensors, Is.EqualTo(CheckpointFixture.Tensors(new FixtureOptions { Family = family }).Count));
        Assert.That(result.DType, Is.EqualTo(WeightType.Float32));
        Assert.That(new FileInfo(Path.Combine(Output(), "model.onnx.data")).Length, Is.EqualTo(result.DataBytes));
        foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json" })
            Assert.That(File.ReadAllBytes(Path.Combine(Output(), file)), Is.EqualTo(File.ReadAllBytes(Path.Combine(checkpoint, file))), file);
        AssertWeightsCopied(checkpoint, Output(), WeightType.Float32);
        Assert.That(Listing(root).Where(p => p.Contains(".tmp-", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public void TheManifestDescribesTheModelAndHashesEverySourceFile()
    {
        string checkpoint = Checkpoint(new FixtureOptions { Family = Family.Dream, Shards = 2 });
        Import(checkpoint, Output(), new ImportOptions { DType = WeightType.BFloat16, MaxPositions = 256 });
        JsonObject manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Output(), "saber_model.json")))!.AsObject();
        Assert.That((int)manifest["format_version"]!, Is.EqualTo(1));
        Assert.That((string)manifest["architecture"]!, Is.EqualTo("dream"));
        Assert.That((int)manifest["vocabulary"]!, Is.EqualTo(FixtureVocabulary.Dream.VocabSize));
        Assert.That((int)manifest["mask_id"]!, Is.EqualTo(FixtureVocabulary.Dream.Mask));
        Assert.That(manifest["eos_ids"]!.AsArray().Select(n => (int)n!), Is.EqualTo(new[] { FixtureVocabulary.Dream.EndOfText }));
        Assert.That((int)manifest["max_positions"]!, Is.EqualTo(256));
        Assert.That((string)manifest["dtype"]!, Is.EqualTo("bf16"));
        Assert.That((bool)manifest["shifted_logits"]!, Is.True);
        Assert.That(((int)manifest["layers"]!, (int)manifest["hidden_size"]!, (int)manifest["heads"]!, (int)manifest["kv_heads"]!), Is.EqualTo((2, 64, 4, 2)));
        Assert.That((string)manifest["source"]!["folder"]!, Is.EqualTo("checkpoint"));
        JsonArray files = manifest["source"]!["files"]!.AsArray();
        Assert.That(files.Select(f => (string)f!["name"]!), Is.EquivalentTo(new[]
        {
            "config.json", "model.safetensors.index.json", CheckpointFixture.ShardFileName(1, 2), CheckpointFixture.ShardFileName(2, 2),
            "tokenizer.json", "tokenizer_config.json", "generation_config.json",
        }));
        foreach (JsonNode? file in files)
        {
            string path = Path.Combine(checkpoint, (string)file!["name"]!);
            Assert.That((long)file["size"]!, Is.EqualTo(new FileInfo(path).Length), path);
            Assert.That((string)file["sha256"]!, Is.EqualTo(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)))), path);
        }
    }

    [Test]
    public void TheGraphCarriesTheMetadataTheEnginesRead()
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        Import(checkpoint, Output());
        using var session = new InferenceSession(Path.Combine(Output(), "model.onnx"));
        IReadOnlyDictionary<string, string> metadata = session.ModelMetadata.CustomMetadataMap;
        Assert.That(metadata["mask_id"], Is.EqualTo(FixtureVocabulary.LLaDA.Mask.ToString()));
        Assert.That(metadata["max_positions"], Is.EqualTo("512"));
        Assert.That(metadata["logits_shift"], Is.EqualTo("0"));
        Assert.That(metadata["architecture"], Is.EqualTo("llada"));
        Assert.That(metadata["eos_ids"], Is.EqualTo(FixtureVocabulary.LLaDA.Eos.ToString()));
        Assert.That(metadata["source"], Is.EqualTo("checkpoint"));
    }

    /// <summary>
    /// The imported model, run by ONNX Runtime, against the fixture library's literal double-precision forward pass read
    /// from the same checkpoint: the import's whole chain (names, layout, offsets, conversion, the graph) end to end.
    /// </summary>
    [TestCase(Family.LLaDA, false, FixtureDType.F32)]
    [TestCase(Family.LLaDA, true, FixtureDType.BF16)]
    [TestCase(Family.Dream, false, FixtureDType.BF16)]
    [TestCase(Family.Dream, true, FixtureDType.F16)]
    public void TheImportedModelComputesTheCheckpointsLogits(Family family, bool tied, FixtureDType stored)
    {
        string checkpoint = Checkpoint(new FixtureOptions { Family = family, TiedEmbeddings = tied, DType = stored, Shards = 2 });
        Import(checkpoint, Output());
        long[] tokens = [5, 77, 300, 12, 0, 255, 9];
        float[,] expected = ReferenceForward.Logits(checkpoint, [.. tokens.Select(t => (int)t)]);
        using var session = new InferenceSession(Path.Combine(Output(), "model.onnx"));
        using var ids = OrtValue.CreateTensorValueFromMemory(tokens, [1, tokens.Length]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, tokens.Length).ToArray(), [1, tokens.Length]);
        using var rows = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, tokens.Length).Select(i => (long)i).ToArray(), [1, tokens.Length]);
        using var run = new RunOptions();
        using var outputs = session.Run(run, new Dictionary<string, OrtValue> { ["input_ids"] = ids, ["attention_mask"] = mask, ["logits_index"] = rows }, ["logits"]);
        ReadOnlySpan<float> logits = outputs[0].GetTensorDataAsSpan<float>();
        int vocabulary = expected.GetLength(1);
        Assert.That(logits.Length, Is.EqualTo(tokens.Length * vocabulary));
        double worst = 0;
        for (int position = 0; position < tokens.Length; position++)
            for (int token = 0; token < vocabulary; token++)
                worst = Math.Max(worst, Math.Abs(logits[position * vocabulary + token] - expected[position, token]));
        // float32 graph against a double reference, logits of magnitude up to ~15 (the graph tests' bound).
        Assert.That(worst, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void ShardedAndSingleFileCheckpointsGiveIdenticalModels()
    {
        string single = Checkpoint(new FixtureOptions(), "single/checkpoint");
        string sharded = Checkpoint(new FixtureOptions { Shards = 4 }, "sharded/checkpoint");
        // Same folder name in both: the graph's metadata names the source folder.
        Import(single, Output("single/model"));
        Import(sharded, Output("sharded/model"));
        foreach (string file in new[] { "model.onnx", "model.onnx.data" })
            Assert.That(File.ReadAllBytes(Output($"sharded/model/{file}")), Is.EqualTo(File.ReadAllBytes(Output($"single/model/{file}"))), file);
    }

    [TestCase(FixtureDType.F32, WeightType.BFloat16)]
    [TestCase(FixtureDType.F32, WeightType.Float16)]
    [TestCase(FixtureDType.BF16, WeightType.Float32)]
    [TestCase(FixtureDType.F16, WeightType.BFloat16)]
    [TestCase(FixtureDType.BF16, WeightType.BFloat16)]
    public void EveryWeightIsConvertedToTheChosenType(FixtureDType stored, WeightType target)
    {
        string checkpoint = Checkpoint(new FixtureOptions { DType = stored, Shards = 2 });
        // A small chunk so that tensors span many chunks.
        ImportResult result = Import(checkpoint, Output(), new ImportOptions { DType = target, ChunkBytes = 1000 });
        Assert.That(result.DType, Is.EqualTo(target));
        AssertWeightsCopied(checkpoint, Output(), target);
    }

    [Test]
    public void AMixedTypeCheckpointNeedsDtype()
    {
        var options = new FixtureOptions();
        string checkpoint = Checkpoint(options);
        List<RawTensor> tensors = FixtureTensors(options);
        tensors[0] = tensors[0] with { DType = "F16", Data = tensors[0].Data[..(tensors[0].Data.Length / 2)] };
        WriteSafetensors(Path.Combine(checkpoint, "model.safetensors"), tensors);
        Assert.That(Assert.Throws<InvalidDataException>(() => Import(checkpoint, Output()))!.Message, Does.Contain("mixes weight types").And.Contain("--dtype"));
        AssertNothingLeftBehind();
        Import(checkpoint, Output(), new ImportOptions { DType = WeightType.Float32 });
        AssertWeightsCopied(checkpoint, Output(), WeightType.Float32);
    }

    [Test]
    public void EachWeightStartsOnAPageBoundary()
    {
        string checkpoint = Checkpoint(new FixtureOptions { DType = FixtureDType.BF16 });
        Import(checkpoint, Output());
        foreach ((string _, long offset, long _) in ExpectedLayout(checkpoint, WeightType.BFloat16))
            Assert.That(offset % 4096, Is.Zero);
    }

    [Test]
    public void AnExistingModelFolderIsNeverOverwritten()
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        Directory.CreateDirectory(Output());
        File.WriteAllText(Output("model/keep.txt"), "mine");
        Assert.That(Assert.Throws<IOException>(() => Import(checkpoint, Output()))!.Message, Does.Contain("already exists"));
        Assert.That(Listing(Output()), Is.EqualTo(new[] { "keep.txt" }));
    }

    [Test]
    public void AnImportTheDiskCannotHoldIsRefusedBeforeWriting()
    {
        // The free space of the folder's file system is read (not skipped): more than any disk holds is refused.
        Assert.That(Assert.Throws<IOException>(() => ModelImporter.CheckFreeSpace(Output(), long.MaxValue))!.Message,
            Does.Contain("bytes free").And.Contain(long.MaxValue.ToString()));
        Assert.DoesNotThrow(() => ModelImporter.CheckFreeSpace(Output(), 1));
    }

    [Test]
    public void AMissingTokenizerIsAnErrorBeforeAnythingIsWritten()
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        File.Delete(Path.Combine(checkpoint, "tokenizer.json"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Import(checkpoint, Output()))!.Message, Does.Contain("tokenizer.json").And.Contain("does not exist"));
        AssertNothingLeftBehind();
    }

    [Test]
    public void ACancelledImportLeavesNothingBehind()
    {
        string checkpoint = Checkpoint(new FixtureOptions { Shards = 2 });
        using var cancel = new CancellationTokenSource();
        int reports = 0;
        // Synchronous progress (the importer reports on its own thread): cancel after a few chunks, mid-copy.
        var progress = new SynchronousProgress(_ =>
        {
            if (++reports == 5) cancel.Cancel();
        });
        Assert.Throws<OperationCanceledException>(() => Import(checkpoint, Output(), new ImportOptions { ChunkBytes = 4096 }, progress, cancel.Token));
        Assert.That(reports, Is.EqualTo(5));
        AssertNothingLeftBehind();
    }

    [Test]
    public void ProgressCountsEveryByteOnce()
    {
        string checkpoint = Checkpoint(new FixtureOptions { Shards = 2 });
        var reports = new List<ImportProgress>();
        ImportResult result = Import(checkpoint, Output(), new ImportOptions { ChunkBytes = 8192 }, new SynchronousProgress(reports.Add));
        Assert.That(reports[^1].BytesDone, Is.EqualTo(result.SourceBytes));
        Assert.That(reports.All(r => r.BytesTotal == result.SourceBytes));
        Assert.That(reports.Select(r => r.BytesDone), Is.Ordered.Ascending);
        Assert.That(reports.Select(r => r.CurrentFile).Distinct(), Is.EqualTo(new[] { CheckpointFixture.ShardFileName(1, 2), CheckpointFixture.ShardFileName(2, 2) }));
    }

    [Test]
    public void AShardTruncatedAfterValidationFailsAndLeavesNothing()
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        string shard = Path.Combine(checkpoint, "model.safetensors");
        long length = new FileInfo(shard).Length;
        // Truncate the file on the first progress report: after its header was validated, while it is being copied.
        var progress = new SynchronousProgress(_ =>
        {
            if (new FileInfo(shard).Length == length)
                using (var stream = new FileStream(shard, FileMode.Open)) stream.SetLength(length / 2);
        });
        Assert.That(Assert.Throws<InvalidDataException>(() => Import(checkpoint, Output(), new ImportOptions { ChunkBytes = 4096 }, progress))!.Message,
            Does.Contain(shard).And.Contain("truncated"));
        AssertNothingLeftBehind();
    }

    // ---- through saber import ----

    private static async Task<(int Code, string Stdout, string Stderr)> SaberImport(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await global::Saber.Cli.Program.RunAsync(["import", .. args], stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public async Task SaberImportPrintsProgressAndASummary()
    {
        string checkpoint = Checkpoint(new FixtureOptions { Shards = 2 });
        (int code, string stdout, string stderr) = await SaberImport(checkpoint, Output(), "--dtype", "fp16", "--max-positions", "128");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.StartWith("imported 21 tensors (LLaDA, fp16)").And.Contain(Output()));
        Assert.That(stderr, Does.Contain("import:").And.Contain(CheckpointFixture.ShardFileName(2, 2)).And.Contain("100.0%"));
        Assert.That(stderr.Split('\n').Count(l => l.StartsWith("import:", StringComparison.Ordinal)), Is.InRange(2, 23));
        Assert.That(JsonNode.Parse(File.ReadAllText(Path.Combine(Output(), "saber_model.json")))!["max_positions"]!.GetValue<int>(), Is.EqualTo(128));
    }

    /// <summary>Malformed checkpoints through the CLI: exit 1, one line naming what is wrong, nothing left behind.</summary>
    private static IEnumerable<TestCaseData> MalformedCheckpoints()
    {
        yield return new TestCaseData(new Action<string>(dir => EditConfig(dir, ("alibi", true))), "alibi true").SetName("Cli refuses alibi");
        yield return new TestCaseData(new Action<string>(dir =>
        {
            string path = Path.Combine(dir, "model.safetensors");
            using var stream = new FileStream(path, FileMode.Open);
            stream.SetLength(stream.Length - 1);
        }), "truncated").SetName("Cli refuses a truncated file");
        yield return new TestCaseData(new Action<string>(dir => EditConfig(dir, ("mlp_hidden_size", 96))),
            "tensor 'model.transformer.blocks.0.ff_proj.weight': shape [128, 64], expected [96, 64]").SetName("Cli refuses a wrong shape");
        yield return new TestCaseData(new Action<string>(dir => File.Delete(Path.Combine(dir, "config.json"))), "config.json' does not exist")
            .SetName("Cli refuses a folder without config");
    }

    [TestCaseSource(nameof(MalformedCheckpoints))]
    public async Task SaberImportExitsOneOnAMalformedCheckpoint(Action<string> spoil, string expected)
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        spoil(checkpoint);
        (int code, string stdout, string stderr) = await SaberImport(checkpoint, Output());
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty);
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("saber import: ").And.Contain(expected));
        AssertNothingLeftBehind();
    }

    [TestCase(new[] { "only-one" }, "Give CHECKPOINT_DIR and MODEL_DIR")]
    [TestCase(new[] { "a", "b", "--dtype", "fp8" }, "--dtype expects one of fp32, fp16, bf16")]
    [TestCase(new[] { "a", "b", "--max-positions", "0" }, "--max-positions must be at least 1")]
    [TestCase(new[] { "a", "b", "--shards", "2" }, "Unknown option --shards")]
    public async Task SaberImportUsageErrorsExitTwo(string[] args, string expected)
    {
        (int code, _, string stderr) = await SaberImport(args);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.StartWith($"saber import: {expected}").And.Contain("usage: saber import"));
    }

    [Test]
    public async Task SaberImportCancelledExits130()
    {
        string checkpoint = Checkpoint(new FixtureOptions());
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var stderr = new StringWriter();
        int code = await global::Saber.Cli.Program.RunAsync(["import", checkpoint, Output()], new StringWriter(), stderr, cancel.Token);
        Assert.That(code, Is.EqualTo(130));
        Assert.That(stderr.ToString(), Does.Contain("saber import: cancelled"));
        AssertNothingLeftBehind();
    }

    // ---- helpers ----

    /// <summary>IProgress that calls back at once on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<ImportProgress> report) : IProgress<ImportProgress>
    {
        public void Report(ImportProgress value) => report(value);
    }

    /// <summary>
    /// Where each weight must be in model.onnx.data, computed here from the fixture's own tensor list: model order, each
    /// at the next multiple of 4096.
    /// </summary>
    private static List<(string Name, long Offset, long Length)> ExpectedLayout(string checkpoint, WeightType type)
    {
        var layout = new List<(string, long, long)>();
        long offset = 0;
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "config.json")))!.AsObject();
        var family = (string?)config["model_type"] == "llada" ? Family.LLaDA : Family.Dream;
        var checkpointTensors = SafetensorsCheckpoint.Open(checkpoint).Tensors;
        foreach (FixtureTensor tensor in CheckpointFixture.Tensors(new FixtureOptions { Family = family }))
        {
            offset = (offset + 4095) / 4096 * 4096;
            long length = checkpointTensors[tensor.Name].Length / ElementSize(checkpointTensors[tensor.Name].DType) * WeightConversion.ElementSize(type);
            layout.Add((tensor.Name, offset, length));
            offset += length;
        }
        return layout;
    }

    private static int ElementSize(string dtype) => dtype == "F32" ? 4 : 2;

    /// <summary>Every weight of the data file equals the checkpoint's bytes converted to <paramref name="type"/>.</summary>
    private static void AssertWeightsCopied(string checkpoint, string model, WeightType type)
    {
        byte[] data = File.ReadAllBytes(Path.Combine(model, "model.onnx.data"));
        IReadOnlyDictionary<string, SafetensorsTensor> tensors = SafetensorsCheckpoint.Open(checkpoint).Tensors;
        List<(string Name, long Offset, long Length)> layout = ExpectedLayout(checkpoint, type);
        Assert.That(data.Length, Is.EqualTo(layout[^1].Offset + layout[^1].Length));
        foreach ((string name, long offset, long length) in layout)
        {
            SafetensorsTensor source = tensors[name];
            byte[] stored = new byte[source.Length];
            using (var file = File.OpenRead(source.File))
            {
                file.Position = source.Offset;
                file.ReadExactly(stored);
            }
            var expected = new byte[length];
            WeightConversion.Convert(stored, source.WeightType!.Value, expected, type);
            Assert.That(data.AsSpan((int)offset, (int)length).SequenceEqual(expected), $"tensor {name}");
        }
    }
}
