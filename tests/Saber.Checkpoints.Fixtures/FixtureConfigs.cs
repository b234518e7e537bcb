namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// config.json and generation_config.json with the keys of the real repositories (GSAI-ML/LLaDA-8B-Instruct,
/// Dream-org/Dream-v0-Instruct-7B), only the sizes and token ids changed to the fixture's. Keys the importer has no
/// use for are kept too: a real config has them, and the importer must not choke on them.
/// </summary>
internal static class FixtureConfigs
{
    public static Dictionary<string, object?> Config(FixtureOptions options) =>
        options.Family == Family.LLaDA ? LLaDAConfig(options) : DreamConfig(options);

    private static Dictionary<string, object?> LLaDAConfig(FixtureOptions o) => new()
    {
        ["activation_type"] = "silu",
        ["alibi"] = false,
        ["alibi_bias_max"] = 8.0,
        ["architectures"] = new[] { "LLaDAModelLM" },
        ["attention_dropout"] = 0.0,
        ["attention_layer_norm"] = false,
        ["attention_layer_norm_with_affine"] = true,
        ["auto_map"] = new Dictionary<string, object?>
        {
            ["AutoConfig"] = "configuration_llada.LLaDAConfig",
            ["AutoModel"] = "modeling_llada.LLaDAModelLM",
            ["AutoModelForCausalLM"] = "modeling_llada.LLaDAModelLM",
        },
        ["bias_for_layer_norm"] = false,
        ["block_group_size"] = 1,
        ["block_type"] = "llama",
        ["d_model"] = o.HiddenSize,
        ["embedding_dropout"] = 0.0,
        ["embedding_size"] = o.ResolvedLogitsWidth,
        ["eos_token_id"] = o.ResolvedEosTokenId,
        ["flash_attention"] = false,
        ["include_bias"] = o.IncludeBias,
        ["include_qkv_bias"] = o.QkvBias,
        ["init_cutoff_factor"] = null,
        ["init_device"] = "meta",
        ["init_fn"] = "mitchell",
        ["init_std"] = 0.02,
        ["input_emb_norm"] = false,
        ["layer_norm_type"] = "rms",
        ["layer_norm_with_affine"] = true,
        ["mask_token_id"] = o.ResolvedMaskTokenId,
        ["max_sequence_length"] = o.MaxPositions,
        ["mlp_hidden_size"] = o.ResolvedIntermediateSize,
        // LLaDA-8B says mlp_ratio 4 beside mlp_hidden_size 12288 (= 3 × 4096): mlp_hidden_size wins in the modeling
        // code, so the fixture keeps a ratio that disagrees with it, as the real config does.
        ["mlp_ratio"] = 4,
        ["model_type"] = "llada",
        ["multi_query_attention"] = null,
        ["n_heads"] = o.Heads,
        ["n_kv_heads"] = o.ResolvedKvHeads,
        ["n_layers"] = o.Layers,
        ["pad_token_id"] = o.ResolvedEosTokenId,
        ["precision"] = "amp_bf16",
        ["residual_dropout"] = 0.0,
        ["rms_norm_eps"] = 1e-05,
        ["rope"] = true,
        ["rope_full_precision"] = true,
        ["rope_theta"] = 500000.0,
        ["scale_logits"] = false,
        ["transformers_version"] = "4.46.3",
        ["use_cache"] = false,
        ["vocab_size"] = o.ResolvedVocabSize,
        ["weight_tying"] = o.TiedEmbeddings,
    };

    private static Dictionary<string, object?> DreamConfig(FixtureOptions o) => new()
    {
        ["architectures"] = new[] { "DreamModel" },
        ["attention_dropout"] = 0.0,
        ["auto_map"] = new Dictionary<string, object?>
        {
            ["AutoConfig"] = "configuration_dream.DreamConfig",
            ["AutoModel"] = "modeling_dream.DreamModel",
        },
        ["bos_token_id"] = o.ResolvedEosTokenId,
        ["eos_token_id"] = o.ResolvedEosTokenId,
        ["hidden_act"] = "silu",
        ["hidden_size"] = o.HiddenSize,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = o.ResolvedIntermediateSize,
        ["mask_token_id"] = o.ResolvedMaskTokenId,
        ["max_position_embeddings"] = o.MaxPositions,
        ["max_window_layers"] = o.Layers,
        ["model_type"] = "Dream",
        ["num_attention_heads"] = o.Heads,
        ["num_hidden_layers"] = o.Layers,
        ["num_key_value_heads"] = o.ResolvedKvHeads,
        ["pad_token_id"] = o.ResolvedEosTokenId,
        ["rms_norm_eps"] = 1e-06,
        ["rope_scaling"] = null,
        ["rope_theta"] = 1000000.0,
        ["sliding_window"] = null,
        ["tie_word_embeddings"] = o.TiedEmbeddings,
        ["torch_dtype"] = FloatFormats.TorchName(o.DType),
        ["transformers_version"] = "4.46.2",
        ["use_cache"] = true,
        ["use_sliding_window"] = false,
        ["vocab_size"] = o.ResolvedVocabSize,
    };

    /// <summary>
    /// Dream-v0-Instruct-7B's generation_config.json (its DreamGenerationConfig defaults, mask_token_id null as
    /// there); for LLaDA, only on request, with the config's ids.
    /// </summary>
    public static Dictionary<string, object?> GenerationConfig(FixtureOptions o) => o.Family == Family.Dream
        ? new()
        {
            ["_from_model_config"] = true,
            ["alg"] = "origin",
            ["alg_temp"] = null,
            ["bos_token_id"] = o.ResolvedEosTokenId,
            ["eos_token_id"] = o.ResolvedEosTokenId,
            ["eps"] = 0.001,
            ["mask_token_id"] = null,
            ["output_history"] = false,
            ["pad_token_id"] = o.ResolvedEosTokenId,
            ["steps"] = 512,
            ["temperature"] = 0.0,
            ["top_k"] = null,
            ["top_p"] = null,
            ["transformers_version"] = "4.46.2",
        }
        : new()
        {
            ["_from_model_config"] = true,
            ["eos_token_id"] = o.ResolvedEosTokenId,
            ["pad_token_id"] = o.ResolvedEosTokenId,
            ["transformers_version"] = "4.46.3",
        };
}
