using System.Text;
using System.Text.Json.Nodes;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;
using static Saber.Import.Tests.TestCheckpoints;

namespace Saber.Import.Tests;

/// <summary>Reading checkpoints: safetensors headers, shards, config.json and the expected tensors, and each malformed case's error.</summary>
public sealed class CheckpointTests
{
    private string root = "";

    [SetUp]
    public void CreateFolder() => root = Directory.CreateTempSubdirectory("saber-checkpoint-tests-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(root, recursive: true);

    private string Checkpoint(FixtureOptions options, string name = "checkpoint") => Write(Path.Combine(root, name), options);

    private string File(string name) => Path.Combine(root, name);

    private static InvalidDataException Malformed(TestDelegate action) => Assert.Throws<InvalidDataException>(action)!;

    // ---- safetensors files ----

    [Test]
    public void AFixtureFileReadsWithEveryTensorInOffsetOrderTilingTheData()
    {
        string directory = Checkpoint(new FixtureOptions());
        var file = SafetensorsFile.Read(Path.Combine(directory, "model.safetensors"));
        Assert.That(file.Tensors.Select(t => t.Name), Is.EquivalentTo(CheckpointFixture.Tensors(new FixtureOptions()).Select(t => t.Name)));
        Assert.That(file.Tensors[0].Offset, Is.EqualTo(file.DataStart));
        for (int i = 1; i < file.Tensors.Count; i++)
            Assert.That(file.Tensors[i].Offset, Is.EqualTo(file.Tensors[i - 1].Offset + file.Tensors[i - 1].Length));
        Assert.That(file.Tensors[^1].Offset + file.Tensors[^1].Length, Is.EqualTo(file.Length));
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(file.Tensors.All(t => t.WeightType == WeightType.Float32));
    }

    [Test]
    public void AHeaderLengthPastTheEndOfTheFileIsAnError()
    {
        string path = File("short.safetensors");
        WriteRaw(path, "{}", []);
        byte[] bytes = System.IO.File.ReadAllBytes(path);
        bytes[0] = 200;   // claims a 200-byte header in a 10-byte file
        System.IO.File.WriteAllBytes(path, bytes);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain(path).And.Contain("header of 200 bytes").And.Contain("truncated"));
    }

    [Test]
    public void AnAbsurdHeaderLengthIsRefusedBeforeAnythingIsRead()
    {
        string path = File("huge.safetensors");
        byte[] bytes = new byte[16];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), 1L << 40);
        System.IO.File.WriteAllBytes(path, bytes);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain(path).And.Contain("more than the 100000000 accepted"));
    }

    [Test]
    public void AFileShorterThanTheLengthPrefixIsAnError()
    {
        string path = File("tiny.safetensors");
        System.IO.File.WriteAllBytes(path, [1, 2, 3]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain(path).And.Contain("3 bytes"));
    }

    [Test]
    public void AHeaderThatIsNotJsonIsAnError()
    {
        string path = File("bad.safetensors");
        WriteRaw(path, "{\"a\": [1, 2", []);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain(path).And.Contain("not valid JSON"));
    }

    [Test]
    public void AnUnknownDtypeNamesTheTensorAndTheDtype()
    {
        string path = File("dtype.safetensors");
        WriteRaw(path, """{"w":{"dtype":"F12","shape":[2],"data_offsets":[0,4]}}""", new byte[4]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain(path).And.Contain("tensor 'w'").And.Contain("unknown dtype 'F12'"));
    }

    [Test]
    public void OverlappingOffsetsNameBothTensors()
    {
        string path = File("overlap.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain(path).And.Contain("tensor 'b'").And.Contain("overlap tensor 'a'"));
    }

    [Test]
    public void AGapBetweenTensorsIsAnError()
    {
        string path = File("gap.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", new byte[12]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain("tensor 'b'").And.Contain("gap"));
    }

    [Test]
    public void OffsetsOutOfOrderInTheHeaderAreFineWhenTheyTileTheData()
    {
        string path = File("order.safetensors");
        WriteRaw(path, """{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[8]);
        Assert.That(SafetensorsFile.Read(path).Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b" }));
    }

    [Test]
    public void DecreasingOffsetsAreAnError()
    {
        string path = File("backwards.safetensors");
        WriteRaw(path, """{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", new byte[8]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain("tensor 'a'").And.Contain("0 <= begin <= end"));
    }

    [Test]
    public void ATruncatedFixtureFileNamesTheTensorPastTheEnd()
    {
        string directory = Checkpoint(new FixtureOptions());
        string path = Path.Combine(directory, "model.safetensors");
        var whole = SafetensorsFile.Read(path);
        using (var stream = new FileStream(path, FileMode.Open)) stream.SetLength(whole.Length - 10);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain(path).And.Contain($"tensor '{whole.Tensors[^1].Name}'").And.Contain("truncated"));
    }

    [Test]
    public void BytesAfterTheLastTensorAreAnError()
    {
        string directory = Checkpoint(new FixtureOptions());
        string path = Path.Combine(directory, "model.safetensors");
        using (var stream = new FileStream(path, FileMode.Append)) stream.Write(new byte[3]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain(path).And.Contain("3 bytes after its last tensor"));
    }

    [Test]
    public void AByteLengthThatDoesNotMatchTheShapeNamesBoth()
    {
        string path = File("length.safetensors");
        WriteRaw(path, """{"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,10]}}""", new byte[10]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message,
            Does.Contain("tensor 'w'").And.Contain("span 10 bytes").And.Contain("BF16 [3, 2] takes 12"));
    }

    [TestCase("[-1,2]", "not a non-negative integer")]
    [TestCase("[2.5]", "not a non-negative integer")]
    [TestCase("[4294967296,4294967296,4294967296]", "more elements than a file can hold")]
    [TestCase("[576460752303423488,4]", "more bytes than a file can hold")]
    public void NegativeOrOverflowingShapesAreErrors(string shape, string expected)
    {
        string path = File("shape.safetensors");
        WriteRaw(path, $$$"""{"w":{"dtype":"F32","shape":{{{shape}}},"data_offsets":[0,4]}}""", new byte[4]);
        Assert.That(Malformed(() => SafetensorsFile.Read(path)).Message, Does.Contain("tensor 'w'").And.Contain(expected));
    }

    [Test]
    public void AScalarAndAnEmptyTensorAreValid()
    {
        string path = File("scalar.safetensors");
        WriteRaw(path, """{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]}}""", new byte[4]);
        Assert.That(SafetensorsFile.Read(path).Tensors.Select(t => t.Length), Is.EquivalentTo(new long[] { 4, 0 }));
    }

    // ---- sharded checkpoints ----

    [Test]
    public void AShardedFixtureReadsAsTheSameTensorsAsASingleFile()
    {
        var single = SafetensorsCheckpoint.Open(Checkpoint(new FixtureOptions(), "single"));
        var sharded = SafetensorsCheckpoint.Open(Checkpoint(new FixtureOptions { Shards = 3 }, "sharded"));
        Assert.That(sharded.Files, Has.Count.EqualTo(3));
        Assert.That(sharded.IndexPath, Does.EndWith("model.safetensors.index.json"));
        Assert.That(sharded.Tensors.Keys, Is.EquivalentTo(single.Tensors.Keys));
        foreach (SafetensorsTensor tensor in single.Tensors.Values)
            Assert.That(sharded.Tensors[tensor.Name].Shape, Is.EqualTo(tensor.Shape));
    }

    [Test]
    public void AnIndexNamingAMissingShardIsAnError()
    {
        string directory = Checkpoint(new FixtureOptions { Shards = 2 });
        System.IO.File.Delete(Path.Combine(directory, CheckpointFixture.ShardFileName(2, 2)));
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(directory)).Message,
            Does.Contain("model.safetensors.index.json").And.Contain("model-00002-of-00002.safetensors").And.Contain("does not exist"));
    }

    [Test]
    public void ATensorInTwoShardsIsAnError()
    {
        string directory = Path.Combine(root, "two");
        Directory.CreateDirectory(directory);
        byte[] data = new byte[8];
        WriteSafetensors(Path.Combine(directory, "a.safetensors"), [new RawTensor("x", "F32", [2], data), new RawTensor("y", "F32", [2], data)]);
        WriteSafetensors(Path.Combine(directory, "b.safetensors"), [new RawTensor("y", "F32", [2], data)]);
        WriteIndex(directory, ("x", "a.safetensors"), ("y", "b.safetensors"));
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(directory)).Message,
            Does.Contain("Tensor 'y' is in two shards").And.Contain("a.safetensors").And.Contain("b.safetensors"));
    }

    [Test]
    public void AShardTensorMissingFromTheWeightMapIsAnError()
    {
        string directory = Path.Combine(root, "unmapped");
        Directory.CreateDirectory(directory);
        WriteSafetensors(Path.Combine(directory, "a.safetensors"), [new RawTensor("x", "F32", [1], new byte[4]), new RawTensor("z", "F32", [1], new byte[4])]);
        WriteIndex(directory, ("x", "a.safetensors"));
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(directory)).Message,
            Does.Contain("a.safetensors").And.Contain("tensor 'z'").And.Contain("not in the weight_map"));
    }

    [Test]
    public void AWeightMapEntryNoShardHoldsIsAnError()
    {
        string directory = Path.Combine(root, "phantom");
        Directory.CreateDirectory(directory);
        WriteSafetensors(Path.Combine(directory, "a.safetensors"), [new RawTensor("x", "F32", [1], new byte[4])]);
        WriteIndex(directory, ("x", "a.safetensors"), ("ghost", "a.safetensors"));
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(directory)).Message,
            Does.Contain("maps tensor 'ghost' to 'a.safetensors', which does not hold it"));
    }

    [Test]
    public void AShardPathOutsideTheFolderIsRefused()
    {
        string directory = Path.Combine(root, "escape");
        Directory.CreateDirectory(directory);
        WriteIndex(directory, ("x", "../a.safetensors"));
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(directory)).Message, Does.Contain("not a file name in the checkpoint folder"));
    }

    [Test]
    public void AFolderWithoutWeightsIsAnError()
    {
        Assert.That(Malformed(() => SafetensorsCheckpoint.Open(root)).Message,
            Does.Contain("neither model.safetensors nor model.safetensors.index.json"));
    }

    private static void WriteIndex(string directory, params (string Tensor, string File)[] map)
    {
        var weightMap = new JsonObject();
        foreach ((string tensor, string file) in map) weightMap[tensor] = file;
        System.IO.File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"),
            new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = weightMap }.ToJsonString());
    }

    // ---- config.json ----

    [Test]
    public void ALLaDAConfigReadsAsTheFixtureDescribesIt()
    {
        var options = new FixtureOptions { Family = Family.LLaDA };
        ArchitectureSpec spec = CheckpointConfig.Read(Checkpoint(options));
        Assert.That(spec, Is.EqualTo(spec with
        {
            Family = CheckpointFamily.LLaDA, Layers = 2, HiddenSize = 64, Heads = 4, KvHeads = 4, IntermediateSize = 128,
            Vocabulary = FixtureVocabulary.LLaDA.EmbeddingSize, TokenizerVocabulary = FixtureVocabulary.LLaDA.VocabSize,
            RopeTheta = 500000, RmsNormEps = 1e-5, QkvBias = false, LinearBias = false, TiedEmbeddings = false,
            MaxPositions = 512, MaskId = FixtureVocabulary.LLaDA.Mask, ShiftedLogits = false,
        }));
        Assert.That(spec.EosIds, Is.EqualTo(new[] { FixtureVocabulary.LLaDA.Eos }));
    }

    [Test]
    public void ADreamConfigReadsWithQkvBiasShiftedLogitsAndGroupedHeads()
    {
        ArchitectureSpec spec = CheckpointConfig.Read(Checkpoint(new FixtureOptions { Family = Family.Dream, TiedEmbeddings = true }));
        Assert.That((spec.Family, spec.Heads, spec.KvHeads, spec.IntermediateSize, spec.Vocabulary, spec.TokenizerVocabulary),
            Is.EqualTo((CheckpointFamily.Dream, 4, 2, 96, FixtureVocabulary.Dream.VocabSize, FixtureVocabulary.Dream.VocabSize)));
        Assert.That((spec.QkvBias, spec.LinearBias, spec.ShiftedLogits, spec.TiedEmbeddings, spec.RmsNormEps, spec.RopeTheta),
            Is.EqualTo((true, false, true, true, 1e-6, 1e6)));
        Assert.That(spec.MaskId, Is.EqualTo(FixtureVocabulary.Dream.Mask));
        // config.json and generation_config.json both say <|endoftext|>: listed once.
        Assert.That(spec.EosIds, Is.EqualTo(new[] { FixtureVocabulary.Dream.EndOfText }));
    }

    [Test]
    public void GenerationConfigAddsItsEosIdsAfterTheConfigs()
    {
        string directory = Checkpoint(new FixtureOptions());
        System.IO.File.WriteAllText(Path.Combine(directory, "generation_config.json"),
            $$"""{"eos_token_id": [{{FixtureVocabulary.LLaDA.Eos}}, {{FixtureVocabulary.LLaDA.Eot}}]}""");
        Assert.That(CheckpointConfig.Read(directory).EosIds, Is.EqualTo(new[] { FixtureVocabulary.LLaDA.Eos, FixtureVocabulary.LLaDA.Eot }));
    }

    [Test]
    public void LLaDABiasSwitchesSetTheSpecsBiases()
    {
        ArchitectureSpec all = CheckpointConfig.Read(Checkpoint(new FixtureOptions { IncludeBias = true }, "all"));
        ArchitectureSpec qkv = CheckpointConfig.Read(Checkpoint(new FixtureOptions { QkvBias = true }, "qkv"));
        Assert.That((all.QkvBias, all.LinearBias, qkv.QkvBias, qkv.LinearBias), Is.EqualTo((true, true, true, false)));
    }

    [Test]
    public void NullKvHeadsMeanPlainMultiHeadAttentionAndMultiQueryMeansOne()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("n_kv_heads", null));
        Assert.That(CheckpointConfig.Read(directory).KvHeads, Is.EqualTo(4));
        EditConfig(directory, ("multi_query_attention", true));
        Assert.That(CheckpointConfig.Read(directory).KvHeads, Is.EqualTo(1));
    }

    [Test]
    public void NoMlpHiddenSizeMeansRatioTimesWidth()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("mlp_hidden_size", null), ("mlp_ratio", 3));
        Assert.That(CheckpointConfig.Read(directory).IntermediateSize, Is.EqualTo(3 * 64));
    }

    [Test]
    public void MaxPositionsOverridesTheConfigAndMustBePositive()
    {
        string directory = Checkpoint(new FixtureOptions());
        Assert.That(CheckpointConfig.Read(directory, maxPositions: 77).MaxPositions, Is.EqualTo(77));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointConfig.Read(directory, maxPositions: 0));
    }

    [TestCase(Family.LLaDA, FixtureVocabulary.LLaDA.Mask)]
    [TestCase(Family.Dream, FixtureVocabulary.Dream.Mask)]
    public void WithoutMaskTokenIdTheFixtureTokenizerGivesIt(Family family, int mask)
    {
        string directory = Checkpoint(new FixtureOptions { Family = family });
        EditConfig(directory, ("mask_token_id", null));
        Assert.That(CheckpointConfig.Read(directory).MaskId, Is.EqualTo(mask));
    }

    [TestCase(Family.LLaDA, "<|mdm_mask|>")]
    [TestCase(Family.Dream, "<|mask|>")]
    public void WithoutMaskTokenIdTheTokenizersMaskTokenGivesIt(Family family, string token)
    {
        string directory = Checkpoint(new FixtureOptions { Family = family });
        EditConfig(directory, ("mask_token_id", null));
        WriteStubTokenizer(directory, family, 42);
        Assert.That(CheckpointConfig.Read(directory).MaskId, Is.EqualTo(42));
        System.IO.File.WriteAllText(Path.Combine(directory, "tokenizer.json"), """{"added_tokens":[]}""");
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message,
            Does.Contain("no mask_token_id").And.Contain($"no added token '{token}'"));
    }

    /// <summary>Each setting the graph does not implement, with the value the error must show.</summary>
    private static IEnumerable<TestCaseData> UnsupportedSettings()
    {
        TestCaseData Case(Family family, string key, JsonNode value, string shown) =>
            new TestCaseData(family, key, value.ToJsonString(), shown).SetName($"Unsupported {family} {key} {value.ToJsonString()}");
        yield return Case(Family.LLaDA, "alibi", true, "alibi true");
        yield return Case(Family.LLaDA, "rope", false, "rope false");
        yield return Case(Family.LLaDA, "layer_norm_type", "default", "layer_norm_type 'default'");
        yield return Case(Family.LLaDA, "layer_norm_type", "gemma_rms", "layer_norm_type 'gemma_rms'");
        yield return Case(Family.LLaDA, "attention_layer_norm", true, "attention_layer_norm true");
        yield return Case(Family.LLaDA, "activation_type", "gelu", "activation_type 'gelu'");
        yield return Case(Family.LLaDA, "activation_type", "swiglu", "activation_type 'swiglu'");
        yield return Case(Family.LLaDA, "block_type", "sequential", "block_type 'sequential'");
        yield return Case(Family.LLaDA, "clip_qkv", 8.0, "clip_qkv 8");
        yield return Case(Family.LLaDA, "scale_logits", true, "scale_logits true");
        yield return Case(Family.LLaDA, "input_emb_norm", true, "input_emb_norm true");
        yield return Case(Family.LLaDA, "layer_norm_with_affine", false, "layer_norm_with_affine false");
        yield return Case(Family.LLaDA, "bias_for_layer_norm", true, "bias_for_layer_norm true");
        yield return Case(Family.LLaDA, "block_group_size", 2, "block_group_size 2");
        yield return Case(Family.LLaDA, "rope_scaling", new JsonObject { ["type"] = "linear", ["factor"] = 2 }, "rope_scaling {\"type\":\"linear\",\"factor\":2}");
        yield return Case(Family.Dream, "hidden_act", "gelu", "hidden_act 'gelu'");
        yield return Case(Family.Dream, "use_sliding_window", true, "use_sliding_window true");
        yield return Case(Family.Dream, "rope_scaling", new JsonObject { ["type"] = "yarn" }, "rope_scaling {\"type\":\"yarn\"}");
        yield return Case(Family.Dream, "head_dim", 8, "head_dim 8");
    }

    [TestCaseSource(nameof(UnsupportedSettings))]
    public void SettingsTheGraphDoesNotImplementAreRefusedNamingKeyAndValue(Family family, string key, string json, string shown)
    {
        string directory = Checkpoint(new FixtureOptions { Family = family });
        EditConfig(directory, (key, JsonNode.Parse(json)));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message,
            Does.Contain("config.json").And.Contain(shown).And.Contain("not supported"));
    }

    [Test]
    public void AnAbsentRopeKeyIsRefusedAsThePublishedDefaultSaysOff()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("rope", null));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message, Does.Contain("rope false (the default when absent)"));
    }

    [Test]
    public void AnUnknownFamilyIsRefusedNamingArchitecturesAndModelType()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("architectures", new JsonArray("LlamaForCausalLM")), ("model_type", "llama"));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message,
            Does.Contain("LlamaForCausalLM").And.Contain("'llama'").And.Contain("neither LLaDA"));
    }

    [Test]
    public void WrongTypesAndImpossibleSizesNameTheKey()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("d_model", "64"));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message, Does.Contain("d_model must be an integer"));
        EditConfig(directory, ("d_model", 64), ("n_heads", 3));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message, Does.Contain("n_heads 3").And.Contain("must divide d_model 64"));
        EditConfig(directory, ("n_heads", 4), ("n_kv_heads", 3));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message, Does.Contain("n_kv_heads 3"));
        EditConfig(directory, ("n_kv_heads", 4), ("mask_token_id", 100000));
        Assert.That(Malformed(() => CheckpointConfig.Read(directory)).Message, Does.Contain("mask id 100000 is outside the vocabulary"));
    }

    [Test]
    public void AMissingOrBrokenConfigIsAnError()
    {
        Assert.That(Malformed(() => CheckpointConfig.Read(root)).Message, Does.Contain("config.json").And.Contain("does not exist"));
        System.IO.File.WriteAllText(File("config.json"), "{ nope");
        Assert.That(Malformed(() => CheckpointConfig.Read(root)).Message, Does.Contain("config.json").And.Contain("not valid JSON"));
    }

    // ---- the expected tensors ----

    [TestCase(Family.LLaDA, false, false, false)]
    [TestCase(Family.LLaDA, true, false, false)]
    [TestCase(Family.LLaDA, false, true, false)]
    [TestCase(Family.LLaDA, false, false, true)]
    [TestCase(Family.Dream, false, false, false)]
    [TestCase(Family.Dream, true, false, false)]
    public void TheExpectedTensorsAreExactlyTheFixtures(Family family, bool tied, bool bias, bool qkvBias)
    {
        var options = new FixtureOptions { Family = family, TiedEmbeddings = tied, IncludeBias = bias, QkvBias = qkvBias };
        string directory = Checkpoint(options);
        IReadOnlyList<TensorShape> shapes = ExpectedTensors.Check(CheckpointConfig.Read(directory), SafetensorsCheckpoint.Open(directory));
        Assert.That(shapes.Select(s => (s.Name, string.Join(",", s.Shape))),
            Is.EqualTo(CheckpointFixture.Tensors(options).Select(t => (t.Name, string.Join(",", t.Shape)))));
    }

    [Test]
    public void AMissingTensorIsNamedWithItsExpectedShape()
    {
        string directory = RewrittenFixture(tensors => tensors.RemoveAll(t => t.Name == "model.transformer.blocks.1.k_proj.weight"));
        Assert.That(Malformed(() => Check(directory)).Message,
            Does.Contain("model.safetensors").And.Contain("tensor 'model.transformer.blocks.1.k_proj.weight' is missing").And.Contain("[64, 64]"));
    }

    [Test]
    public void AnExtraTensorIsNamed()
    {
        string directory = RewrittenFixture(tensors => tensors.Add(new RawTensor("model.transformer.rotary.inv_freq", "F32", [8], new byte[32])));
        Assert.That(Malformed(() => Check(directory)).Message,
            Does.Contain("model.safetensors").And.Contain("tensor 'model.transformer.rotary.inv_freq' (shape [8])").And.Contain("not a tensor of a LLaDA checkpoint"));
    }

    [Test]
    public void AHeadBesideTiedEmbeddingsIsAnExtraTensor()
    {
        string directory = Checkpoint(new FixtureOptions());
        EditConfig(directory, ("weight_tying", true));
        Assert.That(Malformed(() => Check(directory)).Message,
            Does.Contain("tensor 'model.transformer.ff_out.weight'").And.Contain("ties the output head"));
    }

    [Test]
    public void AWrongShapeNamesFileTensorActualAndExpected()
    {
        string directory = RewrittenFixture(tensors =>
        {
            int i = tensors.FindIndex(t => t.Name == "model.transformer.blocks.0.ff_proj.weight");
            tensors[i] = tensors[i] with { Shape = [64, 128] };
        });
        Assert.That(Malformed(() => Check(directory)).Message,
            Does.Contain("model.safetensors").And.Contain("tensor 'model.transformer.blocks.0.ff_proj.weight'")
                .And.Contain("shape [64, 128], expected [128, 64]"));
    }

    [Test]
    public void ANonFloatTensorIsNamedWithItsDtype()
    {
        string directory = RewrittenFixture(tensors =>
        {
            int i = tensors.FindIndex(t => t.Name == "model.transformer.ln_f.weight");
            tensors[i] = tensors[i] with { DType = "I32" };
        });
        Assert.That(Malformed(() => Check(directory)).Message,
            Does.Contain("tensor 'model.transformer.ln_f.weight': dtype I32, expected a float weight"));
    }

    private static IReadOnlyList<TensorShape> Check(string directory) =>
        ExpectedTensors.Check(CheckpointConfig.Read(directory), SafetensorsCheckpoint.Open(directory));

    /// <summary>The default LLaDA fixture with its weights rewritten by our writer after <paramref name="change"/>.</summary>
    private string RewrittenFixture(Action<List<RawTensor>> change)
    {
        var options = new FixtureOptions();
        string directory = Checkpoint(options);
        List<RawTensor> tensors = FixtureTensors(options);
        change(tensors);
        WriteSafetensors(Path.Combine(directory, "model.safetensors"), tensors);
        return directory;
    }
}
