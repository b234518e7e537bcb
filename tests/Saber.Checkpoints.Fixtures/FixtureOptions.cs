namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// What <see cref="CheckpointFixture.Write"/> writes. The defaults are the tiny fixture: 2 layers, width 64, 4 heads
/// (Dream: 2 key/value heads), SwiGLU width 128 (Dream 96), the token ids of <see cref="FixtureVocabulary"/>, F32,
/// one file, untied head. The full-size presets (<see cref="Preset"/>) use the real models' sizes and token ids.
/// </summary>
public sealed record FixtureOptions
{
    /// <summary>The family whose Hugging Face layout and config keys are written.</summary>
    public Family Family { get; init; } = Family.LLaDA;

    /// <summary>Element type of every tensor.</summary>
    public FixtureDType DType { get; init; } = FixtureDType.F32;

    /// <summary>1: one <c>model.safetensors</c>; n &gt; 1: <c>model-0000i-of-0000n.safetensors</c> and <c>model.safetensors.index.json</c>.</summary>
    public int Shards { get; init; } = 1;

    /// <summary>Seed of the weights: the same options and seed give the same bytes.</summary>
    public ulong Seed { get; init; } = 22;

    /// <summary>How the weights are drawn; <see cref="WeightFill.FastPattern"/> for the full-size benchmark checkpoints.</summary>
    public WeightFill Fill { get; init; } = WeightFill.Gaussian;

    /// <summary>The output head is the embedding (LLaDA <c>weight_tying</c>, Dream <c>tie_word_embeddings</c>): no head tensor is written.</summary>
    public bool TiedEmbeddings { get; init; }

    /// <summary>
    /// LLaDA <c>include_bias</c>: every linear layer (q/k/v, attn_out, ff_proj, up_proj, ff_out, the head) carries a bias.
    /// Dream has no such switch (its q/k/v biases are always there, nothing else has one): true is refused for Dream.
    /// </summary>
    public bool IncludeBias { get; init; }

    /// <summary>LLaDA <c>include_qkv_bias</c>: q/k/v carry a bias even without <see cref="IncludeBias"/>. Refused for Dream.</summary>
    public bool QkvBias { get; init; }

    /// <summary>Transformer blocks.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Model width.</summary>
    public int HiddenSize { get; init; } = 64;

    /// <summary>Query heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads; null: LLaDA <see cref="Heads"/> (as LLaDA-8B), Dream half of them (grouped-query as Dream-7B).</summary>
    public int? KvHeads { get; init; }

    /// <summary>SwiGLU width; null: LLaDA 2 × <see cref="HiddenSize"/>, Dream 1.5 × <see cref="HiddenSize"/>.</summary>
    public int? IntermediateSize { get; init; }

    /// <summary>LLaDA <c>max_sequence_length</c>, Dream <c>max_position_embeddings</c>.</summary>
    public int MaxPositions { get; init; } = 512;

    /// <summary>config.json <c>vocab_size</c>; null: <see cref="FixtureVocabulary"/>'s.</summary>
    public int? VocabSize { get; init; }

    /// <summary>LLaDA <c>embedding_size</c> (the logits width, at least <see cref="VocabSize"/>); null: <see cref="FixtureVocabulary"/>'s. Ignored for Dream.</summary>
    public int? EmbeddingSize { get; init; }

    /// <summary><c>mask_token_id</c>; null: <see cref="FixtureVocabulary"/>'s.</summary>
    public int? MaskTokenId { get; init; }

    /// <summary><c>eos_token_id</c> (and <c>pad_token_id</c>, as both families' configs have it; Dream's <c>bos_token_id</c> too); null: <see cref="FixtureVocabulary"/>'s.</summary>
    public int? EosTokenId { get; init; }

    /// <summary>Write <c>generation_config.json</c>; null: where the family's real repository has one (Dream).</summary>
    public bool? GenerationConfig { get; init; }

    /// <summary>Write the fixture tokenizer's files (<c>tokenizer.json</c>, <c>tokenizer_config.json</c>) beside the weights.</summary>
    public bool Tokenizer { get; init; } = true;

    /// <summary>Key/value heads after defaults.</summary>
    public int ResolvedKvHeads => KvHeads ?? (Family == Family.Dream ? Math.Max(1, Heads / 2) : Heads);

    /// <summary>SwiGLU width after defaults.</summary>
    public int ResolvedIntermediateSize => IntermediateSize ?? (Family == Family.Dream ? HiddenSize * 3 / 2 : HiddenSize * 2);

    /// <summary>config.json <c>vocab_size</c> after defaults.</summary>
    public int ResolvedVocabSize => VocabSize ?? (Family == Family.Dream ? FixtureVocabulary.Dream.VocabSize : FixtureVocabulary.LLaDA.VocabSize);

    /// <summary>Rows of the embedding and the head: LLaDA <c>embedding_size</c>, Dream <c>vocab_size</c>.</summary>
    public int ResolvedLogitsWidth => Family == Family.Dream
        ? ResolvedVocabSize
        : EmbeddingSize ?? (VocabSize is null ? FixtureVocabulary.LLaDA.EmbeddingSize : ResolvedVocabSize);

    /// <summary><c>mask_token_id</c> after defaults.</summary>
    public int ResolvedMaskTokenId => MaskTokenId ?? (Family == Family.Dream ? FixtureVocabulary.Dream.Mask : FixtureVocabulary.LLaDA.Mask);

    /// <summary><c>eos_token_id</c> after defaults.</summary>
    public int ResolvedEosTokenId => EosTokenId ?? (Family == Family.Dream ? FixtureVocabulary.Dream.EndOfText : FixtureVocabulary.LLaDA.Eos);

    /// <summary>Head width (<see cref="HiddenSize"/> / <see cref="Heads"/>).</summary>
    public int HeadDim => HiddenSize / Heads;

    /// <summary>The names <see cref="Preset"/> knows.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "llada-8b", "dream-7b"];

    /// <summary>
    /// Named sizes: <c>tiny</c> (the defaults, either family), <c>llada-8b</c> (LLaDA-8B-Instruct: d_model 4096, 32 layers,
    /// 32 heads, mlp 12288, vocab = embedding 126464, mask 126336, eos 126081, untied, BF16, fast fill; about 16 GB)
    /// and <c>dream-7b</c> (Dream-v0-Instruct-7B: 3584, 28 layers, 28/4 heads, 18944, vocab 152064, mask 151666,
    /// eos 151643, untied, BF16, fast fill; about 15 GB).
    /// </summary>
    public static FixtureOptions Preset(string name, Family family)
    {
        switch (name)
        {
            case "tiny":
                return new FixtureOptions { Family = family };
            case "llada-8b":
                if (family != Family.LLaDA)
                    throw new ArgumentException("preset llada-8b is an LLaDA checkpoint: use --family llada");
                return new FixtureOptions
                {
                    Family = Family.LLaDA, DType = FixtureDType.BF16, Fill = WeightFill.FastPattern,
                    Layers = 32, HiddenSize = 4096, Heads = 32, KvHeads = 32, IntermediateSize = 12288,
                    MaxPositions = 4096, VocabSize = 126464, EmbeddingSize = 126464, MaskTokenId = 126336, EosTokenId = 126081,
                };
            case "dream-7b":
                if (family != Family.Dream)
                    throw new ArgumentException("preset dream-7b is a Dream checkpoint: use --family dream");
                return new FixtureOptions
                {
                    Family = Family.Dream, DType = FixtureDType.BF16, Fill = WeightFill.FastPattern,
                    Layers = 28, HiddenSize = 3584, Heads = 28, KvHeads = 4, IntermediateSize = 18944,
                    MaxPositions = 131072, VocabSize = 152064, MaskTokenId = 151666, EosTokenId = 151643,
                };
            default:
                throw new ArgumentException($"unknown preset '{name}' (known: {string.Join(", ", PresetNames)})");
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> on options no real checkpoint of the family could have.</summary>
    public void Validate()
    {
        if (Shards < 1) throw new ArgumentException("shards must be at least 1");
        if (Layers < 1 || HiddenSize < 1 || Heads < 1) throw new ArgumentException("layers, hidden size and heads must be positive");
        if (HiddenSize % Heads != 0) throw new ArgumentException($"hidden size {HiddenSize} is not a multiple of {Heads} heads");
        if (HeadDim % 2 != 0) throw new ArgumentException($"head width {HeadDim} must be even for rotary embeddings");
        if (ResolvedKvHeads < 1 || Heads % ResolvedKvHeads != 0)
            throw new ArgumentException($"{Heads} heads are not a multiple of {ResolvedKvHeads} key/value heads");
        if (ResolvedIntermediateSize < 1) throw new ArgumentException("intermediate size must be positive");
        if (MaxPositions < 1) throw new ArgumentException("max positions must be positive");
        if (Family == Family.Dream && (IncludeBias || QkvBias))
            throw new ArgumentException("Dream has no bias switches: its q/k/v biases are always written and nothing else has one");
        if (ResolvedLogitsWidth < ResolvedVocabSize)
            throw new ArgumentException("embedding size must be at least the vocabulary size");
        if (ResolvedMaskTokenId >= ResolvedVocabSize || ResolvedEosTokenId >= ResolvedVocabSize)
            throw new ArgumentException("mask and eos ids must lie inside the vocabulary");
    }
}
