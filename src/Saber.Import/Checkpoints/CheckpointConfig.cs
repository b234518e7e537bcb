using System.Text.Json;

namespace Saber.Import.Checkpoints;

/// <summary>
/// Reads a checkpoint's <c>config.json</c> (and <c>generation_config.json</c>, <c>tokenizer.json</c> where needed) into an
/// <see cref="ArchitectureSpec"/>. Keys the config leaves out take the defaults of the published configuration code
/// (LLaDA's <c>ModelConfig</c> in <c>configuration_llada.py</c>, Dream's <c>DreamConfig</c>), so a config reads as the
/// modeling code would read it; any setting the graph does not implement is refused with the key and its value.
/// </summary>
public static class CheckpointConfig
{
    public const string ConfigFileName = "config.json";
    public const string GenerationConfigFileName = "generation_config.json";
    public const string TokenizerFileName = "tokenizer.json";

    /// <summary>The mask token's text in each family's tokenizer, looked up when the config states no <c>mask_token_id</c>.</summary>
    public static string MaskToken(CheckpointFamily family) => family == CheckpointFamily.LLaDA ? "<|mdm_mask|>" : "<|mask|>";

    /// <summary>Reads the architecture of the checkpoint in <paramref name="directory"/>.</summary>
    /// <param name="maxPositions">Overrides the config's longest canvas (<c>--max-positions</c>); at least 1.</param>
    /// <exception cref="InvalidDataException">A missing or malformed config, an unknown family, or a setting the graph does not implement.</exception>
    public static ArchitectureSpec Read(string directory, int? maxPositions = null)
    {
        if (maxPositions is < 1)
            throw new ArgumentOutOfRangeException(nameof(maxPositions), maxPositions, $"Max positions must be at least 1; got {maxPositions}.");
        var config = JsonConfig.Load(Path.Combine(directory, ConfigFileName));
        CheckpointFamily family = DetectFamily(config);
        ArchitectureSpec spec = family == CheckpointFamily.LLaDA ? ReadLLaDA(config, directory) : ReadDream(config, directory);
        spec = spec with { EosIds = [.. spec.EosIds.Concat(GenerationEosIds(directory)).Distinct()] };
        if (maxPositions is { } positions) spec = spec with { MaxPositions = positions };
        Check(config, spec);
        return spec;
    }

    private static CheckpointFamily DetectFamily(JsonConfig config)
    {
        string[] architectures = config.StringList("architectures");
        string? modelType = config.OptionalString("model_type");
        bool llada = architectures.Contains("LLaDAModelLM") || modelType == "llada";
        bool dream = architectures.Contains("DreamModel") || modelType == "Dream";
        if (llada == dream)
            throw new InvalidDataException(
                $"'{config.Path}': architectures [{string.Join(", ", architectures)}], model_type '{modelType}' name " +
                (llada ? "both LLaDA and Dream" : "neither LLaDA (LLaDAModelLM, llada) nor Dream (DreamModel, Dream)") + ".");
        return llada ? CheckpointFamily.LLaDA : CheckpointFamily.Dream;
    }

    /// <summary>LLaDA: OLMo's keys, read as <c>LLaDALlamaBlock</c> and <c>LLaDAModel</c> use them.</summary>
    private static ArchitectureSpec ReadLLaDA(JsonConfig config, string directory)
    {
        config.Require("block_type", "sequential", "llama");
        // SiLU then the product with up_proj is the llama block's gate; "swiglu" there halves ff_proj's output (a second
        // gate) and no longer matches up_proj, so only silu makes a working LLaDA.
        config.Require("activation_type", "swiglu", "silu");
        config.Require("layer_norm_type", "default", "rms");
        config.RequireFlag("rope", false, true);
        config.RequireFlag("alibi", false, false);
        config.RequireFlag("attention_layer_norm", false, false);
        config.RequireFlag("input_emb_norm", false, false);
        config.RequireFlag("scale_logits", false, false);
        config.RequireFlag("layer_norm_with_affine", true, true);
        config.RequireNull("clip_qkv");
        config.RequireNull("rope_scaling");
        int blockGroupSize = config.Int("block_group_size", 1);
        if (blockGroupSize != 1)
            throw config.Unsupported("block_group_size", blockGroupSize.ToString(), "grouped blocks store their tensors under other names; 1 is supported");
        bool includeBias = config.Bool("include_bias", false);
        // RMSNorm gets a bias when bias_for_layer_norm is true, or null (the default) and include_bias is true.
        if (config.OptionalBool("bias_for_layer_norm") ?? includeBias)
            throw config.Unsupported("bias_for_layer_norm", config.Raw("bias_for_layer_norm"), "layer norms with a bias are not implemented");

        int hidden = config.PositiveInt("d_model", 768);
        int heads = config.PositiveInt("n_heads", 12);
        // effective_n_kv_heads: n_kv_heads, else 1 with multi_query_attention, else n_heads.
        bool? multiQuery = config.OptionalBool("multi_query_attention");
        int? kvHeadsStated = config.OptionalPositiveInt("n_kv_heads");
        if (kvHeadsStated is { } stated && multiQuery is { } mqa && stated != (mqa ? 1 : heads))
            throw config.Unsupported("multi_query_attention", mqa.ToString().ToLowerInvariant(), $"it contradicts n_kv_heads {stated}");
        int kvHeads = kvHeadsStated ?? (multiQuery == true ? 1 : heads);
        int vocabSize = config.PositiveInt("vocab_size", 50257);
        int embeddingSize = config.NullablePositiveInt("embedding_size", 50304) ?? vocabSize;
        if (embeddingSize < vocabSize)
            throw config.Unsupported("embedding_size", embeddingSize.ToString(), $"it must be at least vocab_size {vocabSize}");
        return new ArchitectureSpec(
            Family: CheckpointFamily.LLaDA,
            Layers: config.PositiveInt("n_layers", 12),
            HiddenSize: hidden,
            Heads: heads,
            KvHeads: kvHeads,
            IntermediateSize: config.OptionalPositiveInt("mlp_hidden_size") ?? checked(config.PositiveInt("mlp_ratio", 4) * hidden),
            Vocabulary: embeddingSize,
            TokenizerVocabulary: vocabSize,
            RopeTheta: config.PositiveDouble("rope_theta", 10000),
            RmsNormEps: config.PositiveDouble("rms_norm_eps", 1e-5),
            QkvBias: includeBias || config.Bool("include_qkv_bias", false),
            LinearBias: includeBias,
            TiedEmbeddings: config.Bool("weight_tying", true),
            MaxPositions: config.PositiveInt("max_sequence_length", 1024),
            MaskId: MaskId(config, directory, CheckpointFamily.LLaDA),
            EosIds: config.IdList("eos_token_id", [50256]),
            ShiftedLogits: false);
    }

    /// <summary>Dream: Qwen2's keys (<c>DreamConfig</c>); q/k/v always carry a bias, other linears never.</summary>
    private static ArchitectureSpec ReadDream(JsonConfig config, string directory)
    {
        config.Require("hidden_act", "silu", "silu");
        config.RequireFlag("use_sliding_window", false, false);
        config.RequireNull("rope_scaling");
        int hidden = config.PositiveInt("hidden_size", 4096);
        int heads = config.PositiveInt("num_attention_heads", 32);
        if (config.OptionalPositiveInt("head_dim") is { } headDim && headDim * heads != hidden)
            throw config.Unsupported("head_dim", headDim.ToString(), $"it must be hidden_size / num_attention_heads = {hidden / heads}");
        int vocabSize = config.PositiveInt("vocab_size", 151936);
        return new ArchitectureSpec(
            Family: CheckpointFamily.Dream,
            Layers: config.PositiveInt("num_hidden_layers", 32),
            HiddenSize: hidden,
            Heads: heads,
            KvHeads: config.OptionalPositiveInt("num_key_value_heads") ?? heads,
            IntermediateSize: config.PositiveInt("intermediate_size", 22016),
            Vocabulary: vocabSize,
            TokenizerVocabulary: vocabSize,
            RopeTheta: config.PositiveDouble("rope_theta", 10000),
            RmsNormEps: config.PositiveDouble("rms_norm_eps", 1e-6),
            QkvBias: true,
            LinearBias: false,
            TiedEmbeddings: config.Bool("tie_word_embeddings", false),
            MaxPositions: config.PositiveInt("max_position_embeddings", 32768),
            MaskId: MaskId(config, directory, CheckpointFamily.Dream),
            EosIds: config.IdList("eos_token_id", []),
            ShiftedLogits: true);
    }

    /// <summary>
    /// The config's <c>mask_token_id</c>, else the id of the family's mask token among <c>tokenizer.json</c>'s added tokens
    /// (a checkpoint with only a slow tokenizer must state it in its config, as Dream's does).
    /// </summary>
    private static int MaskId(JsonConfig config, string directory, CheckpointFamily family)
    {
        if (config.OptionalNonNegativeInt("mask_token_id") is { } id) return id;
        string tokenizerPath = Path.Combine(directory, TokenizerFileName);
        string token = MaskToken(family);
        if (File.Exists(tokenizerPath))
        {
            var tokenizer = JsonConfig.Load(tokenizerPath);
            if (tokenizer.Root.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind == JsonValueKind.Array)
                foreach (JsonElement entry in added.EnumerateArray())
                    if (entry.ValueKind == JsonValueKind.Object
                        && entry.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String
                        && content.GetString() == token
                        && entry.TryGetProperty("id", out JsonElement idElement) && idElement.TryGetInt32(out int tokenId) && tokenId >= 0)
                        return tokenId;
        }
        throw new InvalidDataException(
            $"'{config.Path}' states no mask_token_id and '{tokenizerPath}' has no added token '{token}': the [MASK] id is unknown.");
    }

    /// <summary><c>generation_config.json</c>'s <c>eos_token_id</c> (an id or a list), when the file is there.</summary>
    private static int[] GenerationEosIds(string directory)
    {
        string path = Path.Combine(directory, GenerationConfigFileName);
        return File.Exists(path) ? JsonConfig.Load(path).IdList("eos_token_id", []) : [];
    }

    /// <summary>Checks the spec against itself: what the graph needs of the numbers read.</summary>
    private static void Check(JsonConfig config, ArchitectureSpec spec)
    {
        (string hiddenKey, string headsKey, string kvKey) = spec.Family == CheckpointFamily.LLaDA
            ? ("d_model", "n_heads", "n_kv_heads")
            : ("hidden_size", "num_attention_heads", "num_key_value_heads");
        if (spec.HiddenSize % spec.Heads != 0)
            throw config.Unsupported(headsKey, spec.Heads.ToString(), $"it must divide {hiddenKey} {spec.HiddenSize}");
        if (spec.HeadDim % 2 != 0)
            throw config.Unsupported(headsKey, spec.Heads.ToString(), $"the head width {spec.HeadDim} must be even for rotary embeddings");
        if (spec.Heads % spec.KvHeads != 0)
            throw config.Unsupported(kvKey, spec.KvHeads.ToString(), $"it must divide {headsKey} {spec.Heads}");
        if (spec.MaskId >= spec.Vocabulary)
            throw new InvalidDataException($"'{config.Path}': the mask id {spec.MaskId} is outside the vocabulary of {spec.Vocabulary}.");
        foreach (int id in spec.EosIds)
            if (id < 0 || id >= spec.Vocabulary)
                throw new InvalidDataException(
                    $"'{config.Path}' (or {GenerationConfigFileName}): eos id {id} is outside the vocabulary of {spec.Vocabulary}.");
    }
}
