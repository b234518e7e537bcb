namespace Saber.Import.Checkpoints;

/// <summary>The model families <c>saber import</c> reads.</summary>
public enum CheckpointFamily
{
    /// <summary>LLaDA-8B-Base/Instruct, LLaDA-1.5: OLMo-style names and config keys (<c>modeling_llada.py</c>).</summary>
    LLaDA,

    /// <summary>Dream-v0-Base/Instruct-7B and DiffuCoder-7B: the Qwen2 layout (<c>modeling_dream.py</c>), shifted logits.</summary>
    Dream,
}

/// <summary>Element type of a stored tensor (safetensors' <c>F32</c>, <c>F16</c>, <c>BF16</c>).</summary>
public enum WeightType
{
    Float32,
    Float16,
    BFloat16,
}

/// <summary>
/// Everything the graph builder needs to know of a checkpoint's architecture, read from its <c>config.json</c>.
/// One record for both families: the names of the family's tensors come from <see cref="WeightNames"/>.
/// </summary>
/// <param name="Family">Which published modeling code defines the forward pass.</param>
/// <param name="Layers">Transformer blocks (LLaDA <c>n_layers</c>, Dream <c>num_hidden_layers</c>).</param>
/// <param name="HiddenSize">Model width (LLaDA <c>d_model</c>, Dream <c>hidden_size</c>).</param>
/// <param name="Heads">Query heads (<c>n_heads</c> / <c>num_attention_heads</c>).</param>
/// <param name="KvHeads">Key/value heads (<c>n_kv_heads</c> / <c>num_key_value_heads</c>; equal to Heads for plain multi-head attention).</param>
/// <param name="IntermediateSize">SwiGLU hidden width (LLaDA <c>mlp_hidden_size</c>, Dream <c>intermediate_size</c>).</param>
/// <param name="Vocabulary">
/// Logits width V: rows of the embedding and of the output head (LLaDA <c>embedding_size</c>, which may exceed
/// <c>vocab_size</c>; Dream <c>vocab_size</c>).
/// </param>
/// <param name="TokenizerVocabulary">The config's <c>vocab_size</c> (ids the tokenizer may produce), at most <see cref="Vocabulary"/>.</param>
/// <param name="RopeTheta">Rotary base (<c>rope_theta</c>).</param>
/// <param name="RmsNormEps">RMSNorm epsilon (<c>rms_norm_eps</c>).</param>
/// <param name="QkvBias">q/k/v projections carry a bias (Dream always; LLaDA with <c>include_bias</c> or <c>include_qkv_bias</c>).</param>
/// <param name="LinearBias">Every other linear layer (attention output, MLP) carries a bias (LLaDA <c>include_bias</c>; Dream never).</param>
/// <param name="TiedEmbeddings">The output head is the embedding matrix (LLaDA <c>weight_tying</c>, Dream <c>tie_word_embeddings</c>).</param>
/// <param name="MaxPositions">Longest canvas (LLaDA <c>max_sequence_length</c>, Dream <c>max_position_embeddings</c>, or <c>--max-positions</c>).</param>
/// <param name="MaskId">The [MASK] id (LLaDA <c>mask_token_id</c>, 126336 on LLaDA-8B; Dream <c>mask_token_id</c>).</param>
/// <param name="EosIds">End-of-text ids, in the order found (config, generation_config).</param>
/// <param name="ShiftedLogits">
/// The prediction for position i is output row i − 1 (row 0 for position 0), as Dream's generation takes it; false for LLaDA.
/// </param>
public sealed record ArchitectureSpec(
    CheckpointFamily Family,
    int Layers,
    int HiddenSize,
    int Heads,
    int KvHeads,
    int IntermediateSize,
    int Vocabulary,
    int TokenizerVocabulary,
    double RopeTheta,
    double RmsNormEps,
    bool QkvBias,
    bool LinearBias,
    bool TiedEmbeddings,
    int MaxPositions,
    int MaskId,
    IReadOnlyList<int> EosIds,
    bool ShiftedLogits)
{
    /// <summary>Width of one attention head: <c>HiddenSize / Heads</c>.</summary>
    public int HeadDim => HiddenSize / Heads;

    /// <summary>Width of the key and value projections: <c>KvHeads × HeadDim</c>.</summary>
    public int KvWidth => KvHeads * HeadDim;
}

/// <summary>A tensor as stored in a checkpoint: its name, element type and shape (row-major, as safetensors lists it).</summary>
public sealed record TensorShape(string Name, WeightType Type, long[] Shape)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// The Hugging Face tensor names of each family, the one place they are spelt. Linear weights are stored as PyTorch's
/// <c>nn.Linear</c> stores them, <c>[out, in]</c>; norms and biases are vectors.
/// </summary>
public static class WeightNames
{
    /// <summary>The token embedding, <c>[Vocabulary, HiddenSize]</c>.</summary>
    public static string Embedding(CheckpointFamily family) =>
        family == CheckpointFamily.LLaDA ? "model.transformer.wte.weight" : "model.embed_tokens.weight";

    /// <summary>The final norm's weight, <c>[HiddenSize]</c>.</summary>
    public static string FinalNorm(CheckpointFamily family) =>
        family == CheckpointFamily.LLaDA ? "model.transformer.ln_f.weight" : "model.norm.weight";

    /// <summary>
    /// The untied output head, a linear layer's prefix like <see cref="BlockNames"/>' (append <c>.weight</c>,
    /// <c>[Vocabulary, HiddenSize]</c>, or <c>.bias</c>); absent when the embeddings are tied.
    /// </summary>
    public static string OutputHead(CheckpointFamily family) =>
        family == CheckpointFamily.LLaDA ? "model.transformer.ff_out" : "lm_head";

    /// <summary>One block's tensors by role.</summary>
    public static BlockNames Block(CheckpointFamily family, int layer) => family == CheckpointFamily.LLaDA
        ? new BlockNames(
            $"model.transformer.blocks.{layer}.attn_norm.weight",
            $"model.transformer.blocks.{layer}.q_proj",
            $"model.transformer.blocks.{layer}.k_proj",
            $"model.transformer.blocks.{layer}.v_proj",
            $"model.transformer.blocks.{layer}.attn_out",
            $"model.transformer.blocks.{layer}.ff_norm.weight",
            $"model.transformer.blocks.{layer}.ff_proj",
            $"model.transformer.blocks.{layer}.up_proj",
            $"model.transformer.blocks.{layer}.ff_out")
        : new BlockNames(
            $"model.layers.{layer}.input_layernorm.weight",
            $"model.layers.{layer}.self_attn.q_proj",
            $"model.layers.{layer}.self_attn.k_proj",
            $"model.layers.{layer}.self_attn.v_proj",
            $"model.layers.{layer}.self_attn.o_proj",
            $"model.layers.{layer}.post_attention_layernorm.weight",
            $"model.layers.{layer}.mlp.gate_proj",
            $"model.layers.{layer}.mlp.up_proj",
            $"model.layers.{layer}.mlp.down_proj");
}

/// <summary>
/// One block's tensor names. Linear layers are prefixes: append <c>.weight</c> or <c>.bias</c>. The MLP is SwiGLU:
/// <c>Down(SiLU(Gate(x)) × Up(x))</c> (LLaDA: Gate = <c>ff_proj</c>, Up = <c>up_proj</c>, Down = <c>ff_out</c>).
/// </summary>
public sealed record BlockNames(
    string AttentionNorm,
    string Query,
    string Key,
    string Value,
    string AttentionOut,
    string MlpNorm,
    string Gate,
    string Up,
    string Down);
