namespace Saber.Checkpoints.Fixtures;

/// <summary>What a tensor is, which decides how its values are drawn.</summary>
public enum TensorRole
{
    /// <summary>The token embedding: N(0, 1), since the first norm rescales it anyway.</summary>
    Embedding,

    /// <summary>A linear layer's weight <c>[out, in]</c>: N(0, 1/in), so each output stays O(1).</summary>
    Linear,

    /// <summary>A linear layer's bias: N(0, 0.1²).</summary>
    Bias,

    /// <summary>An RMSNorm weight: 1 + N(0, 0.1²), near one but not exactly (a dropped weight would show).</summary>
    Norm,
}

/// <summary>One tensor of a fixture checkpoint, named and shaped as the family's Hugging Face checkpoint has it.</summary>
/// <param name="Name">The state-dict name, e.g. <c>model.transformer.blocks.0.q_proj.weight</c>.</param>
/// <param name="Shape">Row-major shape; linear weights are <c>[out, in]</c> as <c>nn.Linear</c> stores them.</param>
/// <param name="Role">What the tensor is.</param>
/// <param name="Scale">Standard deviation of the draws (around 1 for norms, around 0 otherwise).</param>
public sealed record FixtureTensor(string Name, long[] Shape, TensorRole Role, double Scale)
{
    /// <summary>Element count.</summary>
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Writes LLaDA and Dream checkpoints in their exact Hugging Face layouts (config.json with the real keys,
/// model.safetensors or shards with model.safetensors.index.json, generation_config.json where the real repository
/// has one) with seeded random weights. Independent of <c>Saber.Import</c> on purpose: the import tests compare the two.
/// </summary>
public static class CheckpointFixture
{
    /// <summary>The single-file weights' name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The shard index's name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>
    /// Writes the checkpoint <paramref name="options"/> describe into <paramref name="directory"/> (created if
    /// missing; files of the same names are replaced). Returns the files written, relative to the directory.
    /// </summary>
    public static IReadOnlyList<string> Write(string directory, FixtureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Directory.CreateDirectory(directory);
        var written = new List<string>();

        IReadOnlyList<FixtureTensor> tensors = Tensors(options);
        if (options.Shards == 1)
        {
            SafetensorsWriter.Write(Path.Combine(directory, SingleFileName), SortedByName(tensors), options.DType, options.Fill, options.Seed);
            written.Add(SingleFileName);
        }
        else
        {
            IReadOnlyList<IReadOnlyList<FixtureTensor>> shards = SplitIntoShards(tensors, options.Shards, options.DType);
            var weightMap = new SortedDictionary<string, object?>(StringComparer.Ordinal);
            long totalSize = 0;
            for (int i = 0; i < shards.Count; i++)
            {
                string name = ShardFileName(i + 1, shards.Count);
                totalSize += SafetensorsWriter.Write(Path.Combine(directory, name), SortedByName(shards[i]), options.DType, options.Fill, options.Seed);
                foreach (FixtureTensor tensor in shards[i])
                    weightMap[tensor.Name] = name;
                written.Add(name);
            }
            var index = new Dictionary<string, object?>
            {
                ["metadata"] = new Dictionary<string, object?> { ["total_size"] = totalSize },
                ["weight_map"] = weightMap,
            };
            File.WriteAllText(Path.Combine(directory, IndexFileName), PythonJson.Serialize(index));
            written.Add(IndexFileName);
        }

        File.WriteAllText(Path.Combine(directory, "config.json"), PythonJson.Serialize(FixtureConfigs.Config(options)));
        written.Add("config.json");
        if (options.GenerationConfig ?? options.Family == Family.Dream)
        {
            File.WriteAllText(Path.Combine(directory, "generation_config.json"), PythonJson.Serialize(FixtureConfigs.GenerationConfig(options)));
            written.Add("generation_config.json");
        }

        if (options.Tokenizer)
        {
            // The fixture tokenizer knows FixtureVocabulary's ids only: with a preset's real ids (mask 126336, ...)
            // its files still let an importer run, but the config's special ids lie outside its vocabulary.
            FixtureTokenizer.Write(options.Family, directory);
            written.Add("tokenizer.json");
            written.Add("tokenizer_config.json");
        }
        return written;
    }

    /// <summary>The shard file name Hugging Face uses: <c>model-00002-of-00004.safetensors</c>.</summary>
    public static string ShardFileName(int index, int count) => $"model-{index:D5}-of-{count:D5}.safetensors";

    /// <summary>Every tensor of the checkpoint in the model's order (embedding, blocks, final norm, head), before sharding.</summary>
    public static IReadOnlyList<FixtureTensor> Tensors(FixtureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int hidden = options.HiddenSize;
        int kvWidth = options.ResolvedKvHeads * options.HeadDim;
        int mlp = options.ResolvedIntermediateSize;
        int vocabulary = options.ResolvedLogitsWidth;
        var tensors = new List<FixtureTensor>();

        void Linear(string prefix, int outputs, int inputs, bool bias)
        {
            tensors.Add(new FixtureTensor(prefix + ".weight", [outputs, inputs], TensorRole.Linear, 1.0 / Math.Sqrt(inputs)));
            if (bias)
                tensors.Add(new FixtureTensor(prefix + ".bias", [outputs], TensorRole.Bias, 0.1));
        }
        void Norm(string name) => tensors.Add(new FixtureTensor(name, [hidden], TensorRole.Norm, 0.1));

        if (options.Family == Family.LLaDA)
        {
            // modeling_llada.py, LLaDALlamaBlock: q/k/v carry a bias with include_bias | include_qkv_bias, the other
            // linears with include_bias; norms carry none because config.json says bias_for_layer_norm: false.
            bool qkvBias = options.IncludeBias || options.QkvBias;
            tensors.Add(new FixtureTensor("model.transformer.wte.weight", [vocabulary, hidden], TensorRole.Embedding, 1.0));
            for (int layer = 0; layer < options.Layers; layer++)
            {
                string block = $"model.transformer.blocks.{layer}";
                Norm(block + ".attn_norm.weight");
                Linear(block + ".q_proj", hidden, hidden, qkvBias);
                Linear(block + ".k_proj", kvWidth, hidden, qkvBias);
                Linear(block + ".v_proj", kvWidth, hidden, qkvBias);
                Linear(block + ".attn_out", hidden, hidden, options.IncludeBias);
                Norm(block + ".ff_norm.weight");
                Linear(block + ".ff_proj", mlp, hidden, options.IncludeBias);
                Linear(block + ".up_proj", mlp, hidden, options.IncludeBias);
                Linear(block + ".ff_out", hidden, mlp, options.IncludeBias);
            }
            Norm("model.transformer.ln_f.weight");
            if (!options.TiedEmbeddings)
                Linear("model.transformer.ff_out", vocabulary, hidden, options.IncludeBias);
        }
        else
        {
            // modeling_dream.py: q/k/v with bias=True, o_proj and the MLP without, lm_head without.
            tensors.Add(new FixtureTensor("model.embed_tokens.weight", [vocabulary, hidden], TensorRole.Embedding, 1.0));
            for (int layer = 0; layer < options.Layers; layer++)
            {
                string block = $"model.layers.{layer}";
                Norm(block + ".input_layernorm.weight");
                Linear(block + ".self_attn.q_proj", hidden, hidden, bias: true);
                Linear(block + ".self_attn.k_proj", kvWidth, hidden, bias: true);
                Linear(block + ".self_attn.v_proj", kvWidth, hidden, bias: true);
                Linear(block + ".self_attn.o_proj", hidden, hidden, bias: false);
                Norm(block + ".post_attention_layernorm.weight");
                Linear(block + ".mlp.gate_proj", mlp, hidden, bias: false);
                Linear(block + ".mlp.up_proj", mlp, hidden, bias: false);
                Linear(block + ".mlp.down_proj", hidden, mlp, bias: false);
            }
            Norm("model.norm.weight");
            if (!options.TiedEmbeddings)
                Linear("lm_head", vocabulary, hidden, bias: false);
        }
        return tensors;
    }

    /// <summary>
    /// Splits the tensors, in model order, into <paramref name="count"/> contiguous non-empty runs of about equal
    /// bytes (as Hugging Face's sharding fills one shard after another).
    /// </summary>
    private static IReadOnlyList<IReadOnlyList<FixtureTensor>> SplitIntoShards(IReadOnlyList<FixtureTensor> tensors, int count, FixtureDType type)
    {
        if (count > tensors.Count)
            throw new ArgumentException($"{count} shards for {tensors.Count} tensors: every shard needs at least one");
        long size(FixtureTensor t) => t.Elements * FloatFormats.Size(type);
        long total = tensors.Sum(size);
        var shards = new List<IReadOnlyList<FixtureTensor>>();
        int next = 0;
        long written = 0;
        for (int shard = 0; shard < count; shard++)
        {
            var run = new List<FixtureTensor>();
            long target = total * (shard + 1) / count;
            int mustLeave = count - shard - 1;
            // At least one tensor; then more while under this shard's share and enough remain for the shards after.
            do
            {
                written += size(tensors[next]);
                run.Add(tensors[next++]);
            }
            while (next < tensors.Count - mustLeave && (shard == count - 1 || written + size(tensors[next]) / 2 <= target));
            shards.Add(run);
        }
        return shards;
    }

    /// <summary>Data order within a file: by name, as the reference writer orders tensors of one dtype.</summary>
    private static List<FixtureTensor> SortedByName(IEnumerable<FixtureTensor> tensors) =>
        tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
}
