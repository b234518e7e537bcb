using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Saber.Checkpoints.Fixtures;
// An alias, not the bare name: branch i22-graph has a test-internal Saber.Import.Tests.LiteralForward (over an
// ArchitectureSpec), which would shadow the fixtures' one inside this namespace once the branches merge.
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// The fixture checkpoints themselves: valid safetensors (checked by a parser written here, not the fixture's), the
/// families' names, shapes and config keys, sharding, 16-bit rounding, and the literal forward pass's sanity.
/// </summary>
[TestFixture]
public sealed class FixtureTests
{
    private string _root = "";

    [OneTimeSetUp]
    public void CreateRoot() => _root = Directory.CreateTempSubdirectory("saber-fixture-tests-").FullName;

    [OneTimeTearDown]
    public void DeleteRoot() => Directory.Delete(_root, recursive: true);

    private string Write(FixtureOptions options, string name)
    {
        string directory = Path.Combine(_root, name);
        CheckpointFixture.Write(directory, options);
        return directory;
    }

    // ---- safetensors validity ------------------------------------------------------------------------------------

    [TestCase(Family.LLaDA, FixtureDType.F32, 1)]
    [TestCase(Family.LLaDA, FixtureDType.BF16, 3)]
    [TestCase(Family.Dream, FixtureDType.F16, 1)]
    [TestCase(Family.Dream, FixtureDType.BF16, 4)]
    public void FilesAreValidSafetensorsWithTheExpectedTensors(Family family, FixtureDType dtype, int shards)
    {
        var options = new FixtureOptions { Family = family, DType = dtype, Shards = shards };
        string directory = Write(options, $"valid-{family}-{dtype}-{shards}");
        string[] files = shards == 1
            ? [CheckpointFixture.SingleFileName]
            : Enumerable.Range(1, shards).Select(i => $"model-{i:D5}-of-{shards:D5}.safetensors").ToArray();

        var names = new List<string>();
        foreach (string file in files)
        {
            MinimalSafetensors parsed = MinimalSafetensors.Parse(Path.Combine(directory, file));
            Assert.That(parsed.Tensors, Is.Not.Empty, $"{file} holds no tensor");
            Assert.That(parsed.Tensors.Select(t => t.DType).Distinct(), Is.EqualTo(new[] { dtype.ToString() }));
            names.AddRange(parsed.Tensors.Select(t => t.Name));
        }
        Assert.That(names, Is.EquivalentTo(CheckpointFixture.Tensors(options).Select(t => t.Name)));
        Assert.That(File.Exists(Path.Combine(directory, CheckpointFixture.IndexFileName)), Is.EqualTo(shards > 1));
        Assert.That(Directory.GetFiles(directory, "*.safetensors").Select(Path.GetFileName), Is.EquivalentTo(files));
    }

    [Test]
    public void ShardedAndSingleFileHoldTheSameTensorsBitForBit()
    {
        foreach (Family family in new[] { Family.LLaDA, Family.Dream })
        {
            var single = new FixtureOptions { Family = family, DType = FixtureDType.BF16, Seed = 7 };
            Dictionary<string, byte[]> one = AllTensorBytes(Write(single, $"bits-{family}-1"));
            Dictionary<string, byte[]> four = AllTensorBytes(Write(single with { Shards = 4 }, $"bits-{family}-4"));
            Assert.That(four.Keys, Is.EquivalentTo(one.Keys));
            foreach (string name in one.Keys)
                Assert.That(four[name], Is.EqualTo(one[name]), name);

            // Another seed gives other weights (the seed reaches the draws).
            Dictionary<string, byte[]> reseeded = AllTensorBytes(Write(single with { Seed = 8 }, $"bits-{family}-seed8"));
            Assert.That(reseeded[one.Keys.First(k => k.Contains("q_proj.weight"))], Is.Not.EqualTo(one[one.Keys.First(k => k.Contains("q_proj.weight"))]));
        }
    }

    [Test]
    public void IndexWeightMapAndTotalSizeDescribeTheShards()
    {
        var options = new FixtureOptions { Family = Family.LLaDA, DType = FixtureDType.F16, Shards = 3, IncludeBias = true };
        string directory = Write(options, "index");
        using JsonDocument index = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, CheckpointFixture.IndexFileName)));
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);

        long dataBytes = 0;
        var held = new Dictionary<string, string>();
        for (int i = 1; i <= 3; i++)
        {
            string file = $"model-{i:D5}-of-00003.safetensors";
            MinimalSafetensors parsed = MinimalSafetensors.Parse(Path.Combine(directory, file));
            dataBytes += parsed.DataBytes;
            foreach (var tensor in parsed.Tensors)
                held.Add(tensor.Name, file);
        }
        Assert.That(weightMap, Is.EquivalentTo(held), "weight_map names each tensor's file");
        long expectedBytes = CheckpointFixture.Tensors(options).Sum(t => t.Elements * 2);
        Assert.That(index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64(), Is.EqualTo(expectedBytes));
        Assert.That(dataBytes, Is.EqualTo(expectedBytes));
        // Hugging Face writes the map's keys sorted.
        Assert.That(weightMap.Keys, Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal));
    }

    // ---- the families' layouts --------------------------------------------------------------------------------------

    [Test]
    public void LLaDANamesShapesAndConfigAreLLaDA8BsWithTheFixtureSizes()
    {
        var options = new FixtureOptions { Family = Family.LLaDA };
        string directory = Write(options, "llada-layout");
        var tensors = MinimalSafetensors.Parse(Path.Combine(directory, CheckpointFixture.SingleFileName)).Tensors.ToDictionary(t => t.Name, t => t.Shape);
        int v = FixtureVocabulary.LLaDA.EmbeddingSize;
        Assert.Multiple(() =>
        {
            Assert.That(tensors["model.transformer.wte.weight"], Is.EqualTo(new long[] { v, 64 }));
            Assert.That(tensors["model.transformer.ff_out.weight"], Is.EqualTo(new long[] { v, 64 }));
            Assert.That(tensors["model.transformer.ln_f.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors["model.transformer.blocks.1.q_proj.weight"], Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(tensors["model.transformer.blocks.1.k_proj.weight"], Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(tensors["model.transformer.blocks.1.attn_out.weight"], Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(tensors["model.transformer.blocks.1.ff_proj.weight"], Is.EqualTo(new long[] { 128, 64 }));
            Assert.That(tensors["model.transformer.blocks.1.up_proj.weight"], Is.EqualTo(new long[] { 128, 64 }));
            Assert.That(tensors["model.transformer.blocks.1.ff_out.weight"], Is.EqualTo(new long[] { 64, 128 }));
            Assert.That(tensors["model.transformer.blocks.0.attn_norm.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors["model.transformer.blocks.0.ff_norm.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors.Keys.Where(n => n.EndsWith(".bias", StringComparison.Ordinal)), Is.Empty);
            Assert.That(tensors, Has.Count.EqualTo(1 + 2 * 9 + 2));
        });

        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "config.json")));
        JsonElement c = config.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(c.GetProperty("architectures")[0].GetString(), Is.EqualTo("LLaDAModelLM"));
            Assert.That(c.GetProperty("model_type").GetString(), Is.EqualTo("llada"));
            Assert.That(c.GetProperty("block_type").GetString(), Is.EqualTo("llama"));
            Assert.That(c.GetProperty("layer_norm_type").GetString(), Is.EqualTo("rms"));
            Assert.That(c.GetProperty("activation_type").GetString(), Is.EqualTo("silu"));
            Assert.That(c.GetProperty("d_model").GetInt32(), Is.EqualTo(64));
            Assert.That(c.GetProperty("n_layers").GetInt32(), Is.EqualTo(2));
            Assert.That(c.GetProperty("n_heads").GetInt32(), Is.EqualTo(4));
            Assert.That(c.GetProperty("n_kv_heads").GetInt32(), Is.EqualTo(4));
            Assert.That(c.GetProperty("mlp_hidden_size").GetInt32(), Is.EqualTo(128));
            Assert.That(c.GetProperty("vocab_size").GetInt32(), Is.EqualTo(FixtureVocabulary.LLaDA.VocabSize));
            Assert.That(c.GetProperty("embedding_size").GetInt32(), Is.EqualTo(FixtureVocabulary.LLaDA.EmbeddingSize));
            Assert.That(c.GetProperty("mask_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.LLaDA.Mask));
            Assert.That(c.GetProperty("eos_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.LLaDA.Eos));
            Assert.That(c.GetProperty("pad_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.LLaDA.Eos));
            Assert.That(c.GetProperty("weight_tying").GetBoolean(), Is.False);
            Assert.That(c.GetProperty("include_bias").GetBoolean(), Is.False);
            Assert.That(c.GetProperty("alibi").GetBoolean(), Is.False);
            Assert.That(c.GetProperty("rope").GetBoolean(), Is.True);
            Assert.That(c.GetProperty("rope_theta").GetDouble(), Is.EqualTo(500000.0));
            Assert.That(c.GetProperty("rms_norm_eps").GetDouble(), Is.EqualTo(1e-5));
            Assert.That(File.Exists(Path.Combine(directory, "generation_config.json")), Is.False, "LLaDA's repository is copied without one");
        });
        // Python's float spelling, as Hugging Face writes it.
        string text = File.ReadAllText(Path.Combine(directory, "config.json"));
        Assert.That(text, Does.Contain("\"rope_theta\": 500000.0,").And.Contain("\"rms_norm_eps\": 1e-05,"));
    }

    [Test]
    public void LLaDABiasesAndTyingFollowTheConfigSwitches()
    {
        var names = CheckpointFixture.Tensors(new FixtureOptions { Family = Family.LLaDA, IncludeBias = true, TiedEmbeddings = true }).Select(t => t.Name).ToList();
        Assert.That(names, Does.Contain("model.transformer.blocks.0.q_proj.bias").And.Contain("model.transformer.blocks.0.ff_out.bias")
            .And.Contain("model.transformer.blocks.1.attn_out.bias").And.Contain("model.transformer.blocks.1.up_proj.bias"));
        Assert.That(names, Has.None.StartsWith("model.transformer.ff_out"), "tied: no head tensor");
        Assert.That(names, Has.None.EndsWith("norm.bias"), "bias_for_layer_norm is false");

        var qkvOnly = CheckpointFixture.Tensors(new FixtureOptions { Family = Family.LLaDA, QkvBias = true }).Select(t => t.Name).Where(n => n.EndsWith(".bias", StringComparison.Ordinal));
        Assert.That(qkvOnly, Has.All.Match("(q|k|v)_proj\\.bias$"));
        Assert.That(qkvOnly.Count(), Is.EqualTo(6), "q, k, v in each of 2 blocks");
    }

    [Test]
    public void DreamNamesShapesAndConfigAreDream7BsWithTheFixtureSizes()
    {
        var options = new FixtureOptions { Family = Family.Dream, Shards = 2 };
        string directory = Write(options, "dream-layout");
        var tensors = new Dictionary<string, long[]>();
        foreach (string file in new[] { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" })
            foreach (var tensor in MinimalSafetensors.Parse(Path.Combine(directory, file)).Tensors)
                tensors.Add(tensor.Name, tensor.Shape);
        int v = FixtureVocabulary.Dream.VocabSize;
        Assert.Multiple(() =>
        {
            Assert.That(tensors["model.embed_tokens.weight"], Is.EqualTo(new long[] { v, 64 }));
            Assert.That(tensors["lm_head.weight"], Is.EqualTo(new long[] { v, 64 }));
            Assert.That(tensors["model.norm.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors["model.layers.0.self_attn.q_proj.weight"], Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(tensors["model.layers.0.self_attn.q_proj.bias"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors["model.layers.0.self_attn.k_proj.weight"], Is.EqualTo(new long[] { 32, 64 }), "2 kv heads of 16");
            Assert.That(tensors["model.layers.0.self_attn.k_proj.bias"], Is.EqualTo(new long[] { 32 }));
            Assert.That(tensors["model.layers.0.self_attn.v_proj.bias"], Is.EqualTo(new long[] { 32 }));
            Assert.That(tensors["model.layers.1.self_attn.o_proj.weight"], Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(tensors["model.layers.1.mlp.gate_proj.weight"], Is.EqualTo(new long[] { 96, 64 }));
            Assert.That(tensors["model.layers.1.mlp.up_proj.weight"], Is.EqualTo(new long[] { 96, 64 }));
            Assert.That(tensors["model.layers.1.mlp.down_proj.weight"], Is.EqualTo(new long[] { 64, 96 }));
            Assert.That(tensors["model.layers.1.input_layernorm.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors["model.layers.1.post_attention_layernorm.weight"], Is.EqualTo(new long[] { 64 }));
            Assert.That(tensors.Keys.Where(n => n.EndsWith(".bias", StringComparison.Ordinal)), Has.All.Match("self_attn\\.(q|k|v)_proj\\.bias$"));
            Assert.That(tensors, Has.Count.EqualTo(1 + 2 * 12 + 2));
        });

        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "config.json")));
        JsonElement c = config.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(c.GetProperty("architectures")[0].GetString(), Is.EqualTo("DreamModel"));
            Assert.That(c.GetProperty("model_type").GetString(), Is.EqualTo("Dream"));
            Assert.That(c.GetProperty("hidden_size").GetInt32(), Is.EqualTo(64));
            Assert.That(c.GetProperty("num_hidden_layers").GetInt32(), Is.EqualTo(2));
            Assert.That(c.GetProperty("num_attention_heads").GetInt32(), Is.EqualTo(4));
            Assert.That(c.GetProperty("num_key_value_heads").GetInt32(), Is.EqualTo(2));
            Assert.That(c.GetProperty("intermediate_size").GetInt32(), Is.EqualTo(96));
            Assert.That(c.GetProperty("vocab_size").GetInt32(), Is.EqualTo(v));
            Assert.That(c.GetProperty("mask_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.Dream.Mask));
            Assert.That(c.GetProperty("eos_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.Dream.EndOfText));
            Assert.That(c.GetProperty("tie_word_embeddings").GetBoolean(), Is.False);
            Assert.That(c.GetProperty("rope_theta").GetDouble(), Is.EqualTo(1e6));
            Assert.That(c.GetProperty("rms_norm_eps").GetDouble(), Is.EqualTo(1e-6));
            Assert.That(c.GetProperty("hidden_act").GetString(), Is.EqualTo("silu"));
        });
        using JsonDocument generation = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "generation_config.json")));
        Assert.That(generation.RootElement.GetProperty("eos_token_id").GetInt32(), Is.EqualTo(FixtureVocabulary.Dream.EndOfText));

        var tied = CheckpointFixture.Tensors(options with { TiedEmbeddings = true }).Select(t => t.Name);
        Assert.That(tied, Has.None.EqualTo("lm_head.weight"));
        Assert.Throws<ArgumentException>(() => CheckpointFixture.Tensors(options with { IncludeBias = true }), "Dream has no include_bias");
    }

    // ---- 16-bit rounding ------------------------------------------------------------------------------------------

    [TestCase(1.0f, (ushort)0x3F80)]
    [TestCase(1.00390625f, (ushort)0x3F80)]          // 1 + 2^-8: a tie between 1 and 1 + 2^-7, to the even 1
    [TestCase(1.01171875f, (ushort)0x3F82)]          // 1 + 3·2^-8: a tie between 1 + 2^-7 and 1 + 2^-6, to the even one
    [TestCase(1.0039072f, (ushort)0x3F81)]           // just above the first tie: up
    [TestCase(-1.00390625f, (ushort)0xBF80)]
    [TestCase(3.4028235e38f, (ushort)0x7F80)]        // the largest single rounds up to infinity
    [TestCase(1e-45f, (ushort)0x0000)]               // the smallest subnormal rounds to zero
    [TestCase(0.1f, (ushort)0x3DCD)]
    public void BFloat16RoundsToNearestEven(float value, ushort expected)
    {
        Assert.That(FloatFormats.ToBFloat16(value), Is.EqualTo(expected), $"0x{FloatFormats.ToBFloat16(value):X4}");
        Assert.That(FloatFormats.ToBFloat16(value), Is.EqualTo(ReferenceBFloat16(value)));
    }

    [TestCase(1.0f, (ushort)0x3C00)]
    [TestCase(1.00048828125f, (ushort)0x3C00)]       // 1 + 2^-11: a tie, to the even 1
    [TestCase(1.00146484375f, (ushort)0x3C02)]       // 1 + 3·2^-11: a tie, to the even neighbour
    [TestCase(65519f, (ushort)0x7BFF)]               // below the tie at 65520: the largest half, 65504
    [TestCase(65520f, (ushort)0x7C00)]               // the tie between 65504 and 65536 rounds to even: infinity
    [TestCase(5.9604645e-8f, (ushort)0x0001)]        // 2^-24, the smallest subnormal
    [TestCase(2.9802322e-8f, (ushort)0x0000)]        // 2^-25: a tie between 0 and 2^-24, to zero
    [TestCase(8.940697e-8f, (ushort)0x0002)]         // 3·2^-25: a tie between 1 and 2 subnormal units, to 2
    [TestCase(6.1005354e-5f, (ushort)0x0400)]        // 2^-14 − 2^-25: a tie between the largest subnormal and the smallest normal, to the even normal
    [TestCase(-2.0f, (ushort)0xC000)]
    public void HalfRoundsToNearestEven(float value, ushort expected)
    {
        Assert.That(FloatFormats.ToHalf(value), Is.EqualTo(expected), $"0x{FloatFormats.ToHalf(value):X4}");
        Assert.That(FloatFormats.ToHalf(value), Is.EqualTo(BitConverter.HalfToUInt16Bits((Half)value)), "the runtime's IEEE conversion agrees");
    }

    [Test]
    public void SixteenBitFilesHoldTheSingleDrawsRoundedToNearestEven()
    {
        // Same seed, same draws: every BF16/F16 element must be the F32 file's element rounded, checked against
        // references written independently of the fixture's conversions.
        var options = new FixtureOptions { Family = Family.Dream, Seed = 3 };
        var singles = MinimalSafetensors.Parse(Path.Combine(Write(options, "round-f32"), CheckpointFixture.SingleFileName));
        var bf16 = MinimalSafetensors.Parse(Path.Combine(Write(options with { DType = FixtureDType.BF16 }, "round-bf16"), CheckpointFixture.SingleFileName));
        var f16 = MinimalSafetensors.Parse(Path.Combine(Write(options with { DType = FixtureDType.F16 }, "round-f16"), CheckpointFixture.SingleFileName));
        int compared = 0;
        foreach (var tensor in singles.Tensors)
        {
            byte[] single = singles.Bytes(tensor.Name), brain = bf16.Bytes(tensor.Name), half = f16.Bytes(tensor.Name);
            for (int i = 0; i < single.Length / 4; i++)
            {
                float value = BinaryPrimitives.ReadSingleLittleEndian(single.AsSpan(i * 4));
                Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(brain.AsSpan(i * 2)), Is.EqualTo(ReferenceBFloat16(value)), tensor.Name);
                Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(half.AsSpan(i * 2)), Is.EqualTo(BitConverter.HalfToUInt16Bits((Half)value)), tensor.Name);
                compared++;
            }
        }
        Assert.That(compared, Is.GreaterThan(50_000));
    }

    [TestCase(FixtureDType.BF16, 64, 4, null)]
    [TestCase(FixtureDType.F16, 64, 4, null)]
    [TestCase(FixtureDType.F32, 64, 4, null)]
    [TestCase(FixtureDType.F16, 2, 1, 3)] // [3, 2] F16 matrices: 12 bytes, ending mid-word
    public void FastFillGivesSmallFiniteMatricesAndGaussianVectors(FixtureDType dtype, int hidden, int heads, int? intermediate)
    {
        var options = new FixtureOptions
        {
            Family = Family.Dream, DType = dtype, Fill = WeightFill.FastPattern,
            HiddenSize = hidden, Heads = heads, KvHeads = 1, IntermediateSize = intermediate,
        };
        var parsed = MinimalSafetensors.Parse(Path.Combine(Write(options, $"fast-{dtype}-{hidden}"), CheckpointFixture.SingleFileName));
        foreach (var tensor in parsed.Tensors)
        {
            byte[] bytes = parsed.Bytes(tensor.Name);
            float[] values = dtype switch
            {
                FixtureDType.F32 => Enumerable.Range(0, bytes.Length / 4).Select(i => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4))).ToArray(),
                FixtureDType.F16 => Enumerable.Range(0, bytes.Length / 2).Select(i => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)))).ToArray(),
                _ => Enumerable.Range(0, bytes.Length / 2).Select(i => BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)) << 16)).ToArray(),
            };
            if (tensor.Shape.Length == 2)
            {
                Assert.That(values.Select(Math.Abs), Has.All.InRange(1.0f / 128, 1.0f / 32), tensor.Name);
                if (values.Length >= 64)
                    Assert.That(values.Count(v => v < 0), Is.InRange(values.Length / 4, values.Length * 3 / 4), $"{tensor.Name}: random signs");
            }
            else if (tensor.Name.EndsWith("norm.weight", StringComparison.Ordinal))
                Assert.That(values.Average(), Is.EqualTo(1.0).Within(0.2), $"{tensor.Name}: norms stay near one");
        }
    }

    // ---- the literal forward pass ---------------------------------------------------------------------------------

    private static readonly int[] Sequence = [5, 17, 300, 42, 7, 99, 250, 1];

    [TestCase(Family.LLaDA, FixtureDType.F32)]
    [TestCase(Family.LLaDA, FixtureDType.BF16)]
    [TestCase(Family.Dream, FixtureDType.F32)]
    [TestCase(Family.Dream, FixtureDType.F16)]
    public void LiteralLogitsHaveTheShapeAndAreFiniteAndVaried(Family family, FixtureDType dtype)
    {
        string directory = Write(new FixtureOptions { Family = family, DType = dtype }, $"literal-{family}-{dtype}");
        float[,] logits = ReferenceForward.Logits(directory, Sequence);
        int width = family == Family.LLaDA ? FixtureVocabulary.LLaDA.EmbeddingSize : FixtureVocabulary.Dream.VocabSize;
        Assert.That(logits.GetLength(0), Is.EqualTo(Sequence.Length));
        Assert.That(logits.GetLength(1), Is.EqualTo(width));
        float[] all = logits.Cast<float>().ToArray();
        Assert.That(all, Has.All.Matches<float>(float.IsFinite));
        double mean = all.Average(v => (double)v), spread = Math.Sqrt(all.Average(v => (v - mean) * (v - mean)));
        Assert.That(spread, Is.InRange(0.1, 20.0), "weights scaled so the logits are O(1), neither flat nor exploding");
        Assert.That(Row(logits, 0), Is.Not.EqualTo(Row(logits, 1)));
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public void AttentionIsBidirectionalAndPositionAware(Family family)
    {
        string directory = Write(new FixtureOptions { Family = family, KvHeads = family == Family.LLaDA ? 2 : null }, $"bidirectional-{family}");
        ReferenceForward model = ReferenceForward.Load(directory);
        double[,] original = model.Run(Sequence);

        int[] lastChanged = (int[])Sequence.Clone();
        lastChanged[^1] = 123;
        double[,] changed = model.Run(lastChanged);
        Assert.That(MaxDifference(original, changed, row: 0), Is.GreaterThan(1e-6), "the first position sees the last: no causal mask");

        // Swapping two tokens is not just a permutation of the rows: RoPE makes positions matter.
        int[] swapped = (int[])Sequence.Clone();
        (swapped[1], swapped[2]) = (swapped[2], swapped[1]);
        double[,] swappedLogits = model.Run(swapped);
        Assert.That(Math.Max(MaxDifferenceRows(original, 1, swappedLogits, 2), MaxDifferenceRows(original, 2, swappedLogits, 1)), Is.GreaterThan(1e-6));
    }

    [Test]
    public void LiteralPassReadsWhatIsOnDisk()
    {
        var options = new FixtureOptions { Family = Family.Dream, Seed = 11 };
        double[,] single = ReferenceForward.Load(Write(options, "disk-single")).Run(Sequence);
        double[,] sharded = ReferenceForward.Load(Write(options with { Shards = 3 }, "disk-sharded")).Run(Sequence);
        double[,] bf16 = ReferenceForward.Load(Write(options with { DType = FixtureDType.BF16 }, "disk-bf16")).Run(Sequence);
        Assert.That(MaxDifference(single, sharded), Is.Zero, "same bits, same logits");
        double rounding = MaxDifference(single, bf16);
        Assert.That(rounding, Is.GreaterThan(0), "BF16 weights are read as stored, not as drawn");
        Assert.That(rounding, Is.LessThan(0.5), "and stay close to the F32 ones");

        string tiedDirectory = Write(new FixtureOptions { Family = Family.LLaDA, TiedEmbeddings = true, IncludeBias = true }, "disk-tied");
        Assert.That(ReferenceForward.Load(tiedDirectory).TiedEmbeddings, Is.True);
        Assert.That(ReferenceForward.Logits(tiedDirectory, Sequence).Cast<float>(), Has.All.Matches<float>(float.IsFinite));
    }

    [Test]
    public void DreamShiftMovesEachRowDownOneAndKeepsRowZero()
    {
        int[,] logits = { { 1, 2 }, { 3, 4 }, { 5, 6 } };
        int[,] shifted = ReferenceForward.ShiftForDream(logits);
        Assert.That(shifted, Is.EqualTo(new[,] { { 1, 2 }, { 1, 2 }, { 3, 4 } }));
        Assert.That(logits, Is.EqualTo(new[,] { { 1, 2 }, { 3, 4 }, { 5, 6 } }), "the input is left alone");
        Assert.That(ReferenceForward.ShiftForDream(new int[,] { { 9 } }), Is.EqualTo(new[,] { { 9 } }));
    }

    [Test]
    public void PredictionLogitsShiftDreamOnly()
    {
        string dream = Write(new FixtureOptions { Family = Family.Dream }, "prediction-dream");
        Assert.That(ReferenceForward.PredictionLogits(dream, Sequence), Is.EqualTo(ReferenceForward.ShiftForDream(ReferenceForward.Logits(dream, Sequence))));
        string llada = Write(new FixtureOptions { Family = Family.LLaDA }, "prediction-llada");
        Assert.That(ReferenceForward.PredictionLogits(llada, Sequence), Is.EqualTo(ReferenceForward.Logits(llada, Sequence)));
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public void GroupedQueryAttentionEqualsMultiHeadWithRepeatedKeyValueHeads(Family family)
    {
        // repeat_kv / repeat_interleave: query head h reads key/value head h / (heads / kvHeads). Rewriting the
        // checkpoint with each key/value head's rows repeated that way must give multi-head attention and the
        // same logits: checks the literal pass's head grouping against the weights' own arrangement.
        string grouped = Write(new FixtureOptions { Family = family, KvHeads = 2, DType = FixtureDType.F32 }, $"gqa-{family}");
        Dictionary<string, (long[] Shape, float[] Values)> tensors = ReadF32(grouped);
        const int headDim = 16, heads = 4, group = 2;
        foreach (string name in tensors.Keys.Where(n => n.Contains("k_proj") || n.Contains("v_proj")).ToList())
        {
            (long[] shape, float[] values) = tensors[name];
            int columns = shape.Length == 2 ? (int)shape[1] : 1;
            var repeated = new float[heads * headDim * columns];
            for (int row = 0; row < heads * headDim; row++)
            {
                int sourceRow = (row / headDim / group) * headDim + row % headDim;
                Array.Copy(values, sourceRow * columns, repeated, row * columns, columns);
            }
            tensors[name] = (shape.Length == 2 ? [heads * headDim, columns] : [heads * headDim], repeated);
        }
        string multiHead = CopyWithConfig(grouped, "gqa-as-mha-" + family, tensors,
            family == Family.LLaDA ? "n_kv_heads" : "num_key_value_heads", JsonValueKind.Number, 4);

        Assert.That(MaxDifference(ReferenceForward.Load(grouped).Run(Sequence), ReferenceForward.Load(multiHead).Run(Sequence)), Is.LessThan(1e-9));
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public void TiedHeadEqualsAnUntiedHeadHoldingTheEmbedding(Family family)
    {
        string tied = Write(new FixtureOptions { Family = family, TiedEmbeddings = true }, $"tied-{family}");
        Dictionary<string, (long[] Shape, float[] Values)> tensors = ReadF32(tied);
        string embedding = family == Family.LLaDA ? "model.transformer.wte.weight" : "model.embed_tokens.weight";
        string head = family == Family.LLaDA ? "model.transformer.ff_out.weight" : "lm_head.weight";
        Assert.That(tensors.ContainsKey(head), Is.False);
        tensors[head] = tensors[embedding];
        string untied = CopyWithConfig(tied, "untied-" + family, tensors,
            family == Family.LLaDA ? "weight_tying" : "tie_word_embeddings", JsonValueKind.False, 0);

        Assert.That(ReferenceForward.Load(untied).TiedEmbeddings, Is.False);
        Assert.That(MaxDifference(ReferenceForward.Load(tied).Run(Sequence), ReferenceForward.Load(untied).Run(Sequence)), Is.Zero);
    }

    [Test]
    public void LLaDAAndDreamPathsAgreeOnTheSameWeights()
    {
        // The two families' blocks compute the same thing under different names (LLaDA's ff_proj is Dream's
        // gate_proj, both activated; q/k/v biases with include_qkv_bias). A Dream checkpoint renamed to LLaDA's
        // names, with LLaDA's config given Dream's eps and theta, must give the same raw logits.
        string dream = Write(new FixtureOptions { Family = Family.Dream }, "cross-dream");
        string llada = Write(new FixtureOptions { Family = Family.LLaDA, QkvBias = true, KvHeads = 2, IntermediateSize = 96, VocabSize = FixtureVocabulary.Dream.VocabSize, EmbeddingSize = FixtureVocabulary.Dream.VocabSize, MaskTokenId = FixtureVocabulary.Dream.Mask, EosTokenId = FixtureVocabulary.Dream.EndOfText }, "cross-llada");
        var renamed = new Dictionary<string, (long[] Shape, float[] Values)>();
        foreach (var (name, tensor) in ReadF32(dream))
        {
            string target = name
                .Replace("model.embed_tokens.weight", "model.transformer.wte.weight")
                .Replace("lm_head.weight", "model.transformer.ff_out.weight")
                .Replace("model.norm.weight", "model.transformer.ln_f.weight")
                .Replace("model.layers.", "model.transformer.blocks.")
                .Replace("self_attn.o_proj", "attn_out").Replace("self_attn.", "")
                .Replace("input_layernorm", "attn_norm").Replace("post_attention_layernorm", "ff_norm")
                .Replace("mlp.gate_proj", "ff_proj").Replace("mlp.up_proj", "up_proj").Replace("mlp.down_proj", "ff_out");
            renamed.Add(target, tensor);
        }
        Assert.That(renamed.Keys, Is.EquivalentTo(ReadF32(llada).Keys), "the renaming covers LLaDA's names exactly");
        string converted = CopyWithConfig(llada, "cross-converted", renamed, "rms_norm_eps", JsonValueKind.Number, 1e-6);
        converted = CopyWithConfig(converted, "cross-converted-2", renamed, "rope_theta", JsonValueKind.Number, 1e6);

        Assert.That(MaxDifference(ReferenceForward.Load(dream).Run(Sequence), ReferenceForward.Load(converted).Run(Sequence)), Is.LessThan(1e-9));
    }

    [Test]
    public void RotaryStepIsRotateHalfWithInverseFrequenciesOfTheta()
    {
        // Head width 4, θ = 10000: inv_freq = [1, 1/100]; x = [x1, x2] with halves x1 = [1, 2], x2 = [3, 4] becomes
        // x·cos + [−x2, x1]·sin, the first half's element i paired with the second half's element i.
        double[,] x = new double[3, 8];
        for (int position = 0; position < 3; position++)
            for (int j = 0; j < 8; j++)
                x[position, j] = j % 4 + 1 + (j >= 4 ? 10 : 0); // head 0: [1, 2, 3, 4]; head 1: [11, 12, 13, 14]
        ReferenceForward.ApplyRotary(x, heads: 2, headDim: 4, theta: 10000.0);
        for (int position = 0; position < 3; position++)
        {
            double c0 = Math.Cos(position), s0 = Math.Sin(position), c1 = Math.Cos(position / 100.0), s1 = Math.Sin(position / 100.0);
            double[] expected =
            [
                1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1,
                11 * c0 - 13 * s0, 12 * c1 - 14 * s1, 13 * c0 + 11 * s0, 14 * c1 + 12 * s1,
            ];
            for (int j = 0; j < 8; j++)
                Assert.That(x[position, j], Is.EqualTo(expected[j]).Within(1e-12), $"position {position}, element {j}");
        }
    }

    [TestCase(Family.LLaDA, "<|mdm_mask|>")]
    [TestCase(Family.Dream, "<|mask|>")]
    public void TokenizerFilesAgreeWithTheConfigsSpecialIds(Family family, string maskText)
    {
        string directory = Write(new FixtureOptions { Family = family }, $"tokenizer-{family}");
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "config.json")));
        using JsonDocument tokenizer = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "tokenizer.json")));
        var added = tokenizer.RootElement.GetProperty("added_tokens").EnumerateArray()
            .ToDictionary(t => t.GetProperty("content").GetString()!, t => t.GetProperty("id").GetInt32());
        Assert.That(added[maskText], Is.EqualTo(config.RootElement.GetProperty("mask_token_id").GetInt32()));
        Assert.That(added["<|endoftext|>"], Is.EqualTo(config.RootElement.GetProperty("eos_token_id").GetInt32()));
        Assert.That(added.Values.Max(), Is.LessThan(config.RootElement.GetProperty("vocab_size").GetInt32()));
        using JsonDocument tokenizerConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "tokenizer_config.json")));
        Assert.That(tokenizerConfig.RootElement.GetProperty("chat_template").GetString(), Is.Not.Empty);

        string without = Write(new FixtureOptions { Family = family, Tokenizer = false }, $"tokenizer-{family}-none");
        Assert.That(File.Exists(Path.Combine(without, "tokenizer.json")), Is.False);
    }

    [Test]
    public void CommandLineWritesAFixtureAndExplainsBadUsage()
    {
        string directory = Path.Combine(_root, "cli-dream");
        (int code, string output) = RunFixtureTool("write", "--family", "dream", "--dtype", "bf16", "--shards", "2", "--seed", "5", "--out", directory);
        Assert.That(code, Is.Zero, output);
        Assert.That(File.Exists(Path.Combine(directory, "model-00002-of-00002.safetensors")), Is.True, output);
        Assert.That(AllTensorBytes(directory), Is.EquivalentTo(AllTensorBytes(Write(new FixtureOptions { Family = Family.Dream, DType = FixtureDType.BF16, Shards = 2, Seed = 5 }, "cli-dream-api"))));

        (code, output) = RunFixtureTool("write", "--family", "dream", "--out", directory, "--wide");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("unknown option '--wide'").And.Contain("usage:"));
        (code, output) = RunFixtureTool("write", "--family", "dream", "--preset", "llada-8b", "--out", directory);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("use --family llada"));
        (code, output) = RunFixtureTool("write", "--out", directory);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--family is required"));
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    /// <summary>Round-to-nearest-even to bfloat16 by comparing the two neighbours' distances in double: no bit tricks shared with the fixture.</summary>
    private static ushort ReferenceBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint down = bits & 0xFFFF0000u, up = down + 0x10000u;
        double below = BitConverter.UInt32BitsToSingle(down), above = BitConverter.UInt32BitsToSingle(up);
        if (float.IsInfinity(BitConverter.UInt32BitsToSingle(up)) && !float.IsInfinity(value))
            above = Math.ScaleB(1.0, 128) * Math.Sign(value); // the next step past the largest finite is 2^128
        double distanceBelow = Math.Abs(value - below), distanceAbove = Math.Abs(above - value);
        if (distanceBelow < distanceAbove) return (ushort)(down >> 16);
        if (distanceAbove < distanceBelow) return (ushort)(up >> 16);
        return (ushort)(((down >> 16) & 1) == 0 ? down >> 16 : up >> 16);
    }

    private static double[] Row(float[,] values, int row) =>
        Enumerable.Range(0, values.GetLength(1)).Select(j => (double)values[row, j]).ToArray();

    private static double MaxDifference(double[,] a, double[,] b, int? row = null)
    {
        double max = 0;
        for (int i = 0; i < a.GetLength(0); i++)
            if (row is null || row == i)
                for (int j = 0; j < a.GetLength(1); j++)
                    max = Math.Max(max, Math.Abs(a[i, j] - b[i, j]));
        return max;
    }

    private static double MaxDifferenceRows(double[,] a, int rowA, double[,] b, int rowB)
    {
        double max = 0;
        for (int j = 0; j < a.GetLength(1); j++)
            max = Math.Max(max, Math.Abs(a[rowA, j] - b[rowB, j]));
        return max;
    }

    /// <summary>Every tensor of an F32 checkpoint (single file or shards) as floats, through the test's own parser.</summary>
    private static Dictionary<string, (long[] Shape, float[] Values)> ReadF32(string directory)
    {
        var result = new Dictionary<string, (long[] Shape, float[] Values)>();
        foreach (string file in Directory.GetFiles(directory, "*.safetensors"))
        {
            MinimalSafetensors parsed = MinimalSafetensors.Parse(file);
            foreach (var tensor in parsed.Tensors)
            {
                Assert.That(tensor.DType, Is.EqualTo("F32"));
                byte[] bytes = parsed.Bytes(tensor.Name);
                float[] values = new float[bytes.Length / 4];
                for (int i = 0; i < values.Length; i++)
                    values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
                result.Add(tensor.Name, (tensor.Shape, values));
            }
        }
        return result;
    }

    /// <summary>
    /// A new checkpoint directory: <paramref name="source"/>'s config.json with one key changed, and
    /// <paramref name="tensors"/> in one F32 model.safetensors written here (header, space padding, data).
    /// </summary>
    private string CopyWithConfig(string source, string name, Dictionary<string, (long[] Shape, float[] Values)> tensors, string key, JsonValueKind kind, double number)
    {
        string directory = Path.Combine(_root, name);
        Directory.CreateDirectory(directory);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        config[key] = kind switch
        {
            JsonValueKind.Number => System.Text.Json.Nodes.JsonValue.Create(number),
            _ => System.Text.Json.Nodes.JsonValue.Create(kind == JsonValueKind.True),
        };
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());

        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        foreach (var (tensorName, (shape, values)) in tensors)
        {
            header.Append($",\"{tensorName}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + values.Length * 4L}]}}");
            offset += values.Length * 4L;
        }
        header.Append('}');
        header.Append(' ', (8 - header.Length % 8) % 8);
        using var file = File.Create(Path.Combine(directory, "model.safetensors"));
        byte[] length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        file.Write(length);
        file.Write(Encoding.ASCII.GetBytes(header.ToString()));
        byte[] element = new byte[4];
        foreach (var (_, (_, values)) in tensors)
        {
            foreach (float value in values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(element, value);
                file.Write(element);
            }
        }
        return directory;
    }

    /// <summary>Runs saber-fixture (copied beside the tests) through the dotnet host; returns its exit code and stdout + stderr.</summary>
    private static (int Code, string Output) RunFixtureTool(params string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "saber-fixture.dll"));
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        using var process = System.Diagnostics.Process.Start(start)!;
        Task<string> error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + error.Result);
    }

    private static Dictionary<string, byte[]> AllTensorBytes(string directory)
    {
        var result = new Dictionary<string, byte[]>();
        foreach (string file in Directory.GetFiles(directory, "*.safetensors"))
        {
            MinimalSafetensors parsed = MinimalSafetensors.Parse(file);
            foreach (var tensor in parsed.Tensors)
                result.Add(tensor.Name, parsed.Bytes(tensor.Name));
        }
        return result;
    }

    /// <summary>
    /// A minimal safetensors parser independent of the fixture's reader, strict about what the reference writer
    /// guarantees: header length little-endian, header padded with spaces so the data starts 8-byte aligned,
    /// <c>__metadata__</c> {"format": "pt"}, offsets tiling the data section to the end of the file.
    /// </summary>
    private sealed class MinimalSafetensors
    {
        private readonly byte[] _file;
        private readonly int _dataStart;

        public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

        public List<Entry> Tensors { get; } = [];

        public long DataBytes => _file.Length - _dataStart;

        private MinimalSafetensors(byte[] file, int dataStart)
        {
            _file = file;
            _dataStart = dataStart;
        }

        public byte[] Bytes(string name)
        {
            Entry entry = Tensors.Single(t => t.Name == name);
            return _file.AsSpan(_dataStart + (int)entry.Begin, (int)(entry.End - entry.Begin)).ToArray();
        }

        public static MinimalSafetensors Parse(string path)
        {
            byte[] file = File.ReadAllBytes(path);
            long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
            Assert.That(headerLength, Is.LessThanOrEqualTo(file.Length - 8), path);
            Assert.That((8 + headerLength) % 8, Is.Zero, $"{path}: data not 8-byte aligned");
            string header = Encoding.UTF8.GetString(file, 8, (int)headerLength);
            string trimmed = header.TrimEnd(' ');
            Assert.That(trimmed, Does.StartWith("{").And.EndWith("}"), $"{path}: header padded with anything but trailing spaces");
            Assert.That(header.Length - trimmed.Length, Is.LessThan(8), $"{path}: more padding than alignment needs");

            var parsed = new MinimalSafetensors(file, 8 + (int)headerLength);
            using JsonDocument document = JsonDocument.Parse(trimmed);
            bool sawMetadata = false;
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    sawMetadata = true;
                    Assert.That(property.Value.GetProperty("format").GetString(), Is.EqualTo("pt"));
                    continue;
                }
                long[] shape = property.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                long[] offsets = property.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                string dtype = property.Value.GetProperty("dtype").GetString()!;
                Assert.That(offsets, Has.Length.EqualTo(2));
                long size = dtype == "F32" ? 4 : 2;
                Assert.That(offsets[1] - offsets[0], Is.EqualTo(shape.Aggregate(1L, (a, b) => a * b) * size), property.Name);
                parsed.Tensors.Add(new Entry(property.Name, dtype, shape, offsets[0], offsets[1]));
            }
            Assert.That(sawMetadata, Is.True, $"{path}: no __metadata__");
            long end = 0;
            foreach (Entry entry in parsed.Tensors.OrderBy(e => e.Begin))
            {
                Assert.That(entry.Begin, Is.EqualTo(end), $"{path}: {entry.Name} leaves a gap or overlaps");
                end = entry.End;
            }
            Assert.That(end, Is.EqualTo(parsed.DataBytes), $"{path}: data section and offsets disagree");
            return parsed;
        }
    }
}
