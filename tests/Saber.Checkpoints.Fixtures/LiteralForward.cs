using System.Text.Json;

namespace Saber.Checkpoints.Fixtures;

/// <summary>
/// An independent, literal forward pass of LLaDA and Dream in double precision: the reference the imported ONNX
/// graphs are compared with. It reads config.json and the safetensors from disk itself (so it checks the files, not
/// the writer's memory) and follows the published modeling code step by step, in plain loops:
/// <list type="bullet">
/// <item>LLaDA, <c>modeling_llada.py</c> (<c>LLaDALlamaBlock</c>): <c>x = wte[ids]</c> (× √d_model if
/// <c>input_emb_norm</c>); per block <c>h = attn_norm(x)</c>, q/k/v projections, RoPE on q and k, bidirectional
/// attention (grouped heads by <c>repeat_interleave</c>), <c>x += attn_out(att)</c>; <c>h = ff_norm(x)</c>,
/// <c>x += ff_out(silu(ff_proj(h)) × up_proj(h))</c>; then <c>ln_f</c> and the head (<c>wte</c> when
/// <c>weight_tying</c>, else <c>transformer.ff_out</c>), × 1/√d_model if <c>scale_logits</c>.</item>
/// <item>Dream, <c>modeling_dream.py</c> (Qwen2 layout): the same shape of block with <c>input_layernorm</c>,
/// <c>self_attn.{q,k,v,o}_proj</c> (q/k/v biased), <c>post_attention_layernorm</c>,
/// <c>down_proj(silu(gate_proj(h)) × up_proj(h))</c>, <c>model.norm</c>, <c>lm_head</c> (the embedding when tied).</item>
/// </list>
/// RMSNorm is <c>x · 1/√(mean(x²) + eps) · w</c>; RoPE the rotate-half form with <c>inv_freq_i = 1/θ^(2i/d)</c> and
/// positions 0..L−1; attention scale 1/√head_dim with no mask (one unpadded sequence).
/// </summary>
public sealed class LiteralForward
{
    private readonly Family _family;
    private readonly int _layers, _hidden, _heads, _kvHeads, _headDim, _intermediate, _vocabulary;
    private readonly double _eps, _theta;
    private readonly bool _scaleEmbeddings, _scaleLogits;
    private readonly IReadOnlyDictionary<string, StoredTensor> _weights;

    private LiteralForward(string directory)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "config.json")));
        JsonElement config = document.RootElement;
        _weights = SafetensorsReader.ReadCheckpoint(directory);
        string modelType = config.GetProperty("model_type").GetString() ?? "";
        if (modelType == "llada")
        {
            _family = Family.LLaDA;
            Require(config, "block_type", "llama");
            Require(config, "layer_norm_type", "rms");
            Require(config, "activation_type", "silu");
            if (!Bool(config, "rope", false) || Bool(config, "alibi", false) || Bool(config, "attention_layer_norm", false))
                throw new NotSupportedException("the literal pass follows LLaDA's rope=true, alibi=false, attention_layer_norm=false");
            if (Int(config, "block_group_size", 1) != 1)
                throw new NotSupportedException("block_group_size other than 1 renames the blocks; not a layout LLaDA ships");
            _layers = Int(config, "n_layers");
            _hidden = Int(config, "d_model");
            _heads = Int(config, "n_heads");
            // configuration_llada.py effective_n_kv_heads: multi_query_attention → 1; n_kv_heads null → n_heads.
            _kvHeads = Bool(config, "multi_query_attention", false) ? 1 : Int(config, "n_kv_heads", _heads);
            _intermediate = config.TryGetProperty("mlp_hidden_size", out JsonElement mlp) && mlp.ValueKind == JsonValueKind.Number
                ? mlp.GetInt32()
                : Int(config, "mlp_ratio") * _hidden;
            _vocabulary = config.TryGetProperty("embedding_size", out JsonElement embedding) && embedding.ValueKind == JsonValueKind.Number
                ? embedding.GetInt32()
                : Int(config, "vocab_size");
            _eps = Double(config, "rms_norm_eps", 1e-5);
            _theta = Double(config, "rope_theta", 10000.0);
            _scaleEmbeddings = Bool(config, "input_emb_norm", false);
            _scaleLogits = Bool(config, "scale_logits", false);
        }
        else if (modelType == "Dream")
        {
            _family = Family.Dream;
            Require(config, "hidden_act", "silu");
            if (config.TryGetProperty("rope_scaling", out JsonElement scaling) && scaling.ValueKind != JsonValueKind.Null)
                throw new NotSupportedException("rope_scaling is not part of the literal pass (Dream-v0 has none)");
            _layers = Int(config, "num_hidden_layers");
            _hidden = Int(config, "hidden_size");
            _heads = Int(config, "num_attention_heads");
            _kvHeads = Int(config, "num_key_value_heads", _heads);
            _intermediate = Int(config, "intermediate_size");
            _vocabulary = Int(config, "vocab_size");
            _eps = Double(config, "rms_norm_eps", 1e-6);
            _theta = Double(config, "rope_theta", 10000.0);
        }
        else
        {
            throw new NotSupportedException($"model_type '{modelType}' is neither 'llada' nor 'Dream'");
        }
        _headDim = _hidden / _heads;
        if (_headDim * _heads != _hidden || _heads % _kvHeads != 0)
            throw new InvalidDataException($"{_hidden} wide with {_heads} heads and {_kvHeads} key/value heads does not divide");
        TiedEmbeddings = _family == Family.LLaDA ? Bool(config, "weight_tying", false) : Bool(config, "tie_word_embeddings", false);
    }

    /// <summary>The family the config names.</summary>
    public Family Family => _family;

    /// <summary>Logits width V (LLaDA <c>embedding_size</c>, Dream <c>vocab_size</c>).</summary>
    public int Vocabulary => _vocabulary;

    /// <summary>Whether the head is the embedding.</summary>
    public bool TiedEmbeddings { get; }

    /// <summary>Reads the checkpoint in <paramref name="checkpointDirectory"/> once, for several <see cref="Run"/>s.</summary>
    public static LiteralForward Load(string checkpointDirectory) => new(checkpointDirectory);

    /// <summary>
    /// Raw logits <c>[L, V]</c> of one unpadded sequence, as the model's forward returns them (row i: the output at
    /// position i; for Dream, the prediction for position i + 1 — see <see cref="ShiftForDream{T}"/>).
    /// </summary>
    public static float[,] Logits(string checkpointDirectory, IReadOnlyList<int> tokens) => ToSingle(Load(checkpointDirectory).Run(tokens));

    /// <summary>
    /// The logits a decoder reads for position i at row i: LLaDA's raw logits, Dream's shifted by
    /// <see cref="ShiftForDream{T}"/> as its generation code does.
    /// </summary>
    public static float[,] PredictionLogits(string checkpointDirectory, IReadOnlyList<int> tokens)
    {
        LiteralForward model = Load(checkpointDirectory);
        double[,] logits = model.Run(tokens);
        return ToSingle(model.Family == Family.Dream ? ShiftForDream(logits) : logits);
    }

    /// <summary>
    /// Dream's shift, <c>torch.cat([logits[:, :1], logits[:, :-1]], 1)</c> (generation_utils.py): row 0 stays, row i
    /// becomes input row i − 1. Returns a new array.
    /// </summary>
    public static T[,] ShiftForDream<T>(T[,] logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        int rows = logits.GetLength(0), columns = logits.GetLength(1);
        var shifted = new T[rows, columns];
        for (int row = 0; row < rows; row++)
        {
            int source = Math.Max(row - 1, 0);
            for (int column = 0; column < columns; column++)
                shifted[row, column] = logits[source, column];
        }
        return shifted;
    }

    /// <summary>Raw logits <c>[L, V]</c> in double precision.</summary>
    public double[,] Run(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Count == 0)
            throw new ArgumentException("at least one token");
        int length = tokens.Count;
        bool llada = _family == Family.LLaDA;

        // Embedding lookup.
        StoredTensor embedding = Weight(llada ? "model.transformer.wte.weight" : "model.embed_tokens.weight", _vocabulary, _hidden);
        var x = new double[length, _hidden];
        for (int t = 0; t < length; t++)
        {
            int id = tokens[t];
            if (id < 0 || id >= _vocabulary)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {id} outside 0..{_vocabulary - 1}");
            for (int j = 0; j < _hidden; j++)
                x[t, j] = embedding.Values[(long)id * _hidden + j] * (_scaleEmbeddings ? Math.Sqrt(_hidden) : 1.0);
        }

        int kvWidth = _kvHeads * _headDim;
        for (int layer = 0; layer < _layers; layer++)
        {
            string block = llada ? $"model.transformer.blocks.{layer}." : $"model.layers.{layer}.";
            string attentionNorm = block + (llada ? "attn_norm" : "input_layernorm");
            string mlpNorm = block + (llada ? "ff_norm" : "post_attention_layernorm");
            string attention = llada ? block : block + "self_attn.";
            string mlp = llada ? block : block + "mlp.";

            double[,] h = RmsNorm(x, attentionNorm);
            double[,] q = Linear(h, attention + "q_proj", _hidden, _hidden);
            double[,] k = Linear(h, attention + "k_proj", kvWidth, _hidden);
            double[,] v = Linear(h, attention + "v_proj", kvWidth, _hidden);
            ApplyRotary(q, _heads, _headDim, _theta);
            ApplyRotary(k, _kvHeads, _headDim, _theta);
            double[,] attended = Attention(q, k, v);
            AddInPlace(x, Linear(attended, attention + (llada ? "attn_out" : "o_proj"), _hidden, _hidden));

            h = RmsNorm(x, mlpNorm);
            // LLaDA activates ff_proj and multiplies by up_proj (x, x_up = ff_proj(x), up_proj(x); x = act(x) * x_up);
            // Dream activates gate_proj and multiplies by up_proj. Both then project down (ff_out / down_proj).
            double[,] gate = Linear(h, mlp + (llada ? "ff_proj" : "gate_proj"), _intermediate, _hidden);
            double[,] up = Linear(h, mlp + "up_proj", _intermediate, _hidden);
            for (int t = 0; t < length; t++)
                for (int j = 0; j < _intermediate; j++)
                    gate[t, j] = Silu(gate[t, j]) * up[t, j];
            AddInPlace(x, Linear(gate, mlp + (llada ? "ff_out" : "down_proj"), _hidden, _intermediate));
        }

        double[,] final = RmsNorm(x, llada ? "model.transformer.ln_f" : "model.norm");
        string head = TiedEmbeddings
            ? (llada ? "model.transformer.wte" : "model.embed_tokens")
            : (llada ? "model.transformer.ff_out" : "lm_head");
        double[,] logits = Linear(final, head, _vocabulary, _hidden);
        if (_scaleLogits)
        {
            double scale = 1.0 / Math.Sqrt(_hidden);
            for (int t = 0; t < length; t++)
                for (int j = 0; j < _vocabulary; j++)
                    logits[t, j] *= scale;
        }
        return logits;
    }

    /// <summary><c>x · 1/√(mean(x²) + eps) · w (+ b)</c> per row; a bias only where the checkpoint has one (LLaDA bias_for_layer_norm).</summary>
    private double[,] RmsNorm(double[,] x, string prefix)
    {
        StoredTensor weight = Weight(prefix + ".weight", _hidden);
        StoredTensor? bias = _weights.GetValueOrDefault(prefix + ".bias");
        int rows = x.GetLength(0);
        var result = new double[rows, _hidden];
        for (int t = 0; t < rows; t++)
        {
            double sumOfSquares = 0;
            for (int j = 0; j < _hidden; j++)
                sumOfSquares += x[t, j] * x[t, j];
            double inverseRms = 1.0 / Math.Sqrt(sumOfSquares / _hidden + _eps);
            for (int j = 0; j < _hidden; j++)
                result[t, j] = x[t, j] * inverseRms * weight.Values[j] + (bias?.Values[j] ?? 0.0);
        }
        return result;
    }

    /// <summary><c>nn.Linear</c>: <c>y = x Wᵀ + b</c> with W stored <c>[out, in]</c>; the bias is used when the checkpoint has it.</summary>
    private double[,] Linear(double[,] x, string prefix, int outputs, int inputs)
    {
        StoredTensor weight = Weight(prefix + ".weight", outputs, inputs);
        StoredTensor? bias = _weights.GetValueOrDefault(prefix + ".bias");
        if (bias is not null && (bias.Shape.Length != 1 || bias.Shape[0] != outputs))
            throw new InvalidDataException($"{bias.Name} has shape [{string.Join(", ", bias.Shape)}], expected [{outputs}]");
        int rows = x.GetLength(0);
        var y = new double[rows, outputs];
        for (int t = 0; t < rows; t++)
        {
            for (int o = 0; o < outputs; o++)
            {
                double sum = bias?.Values[o] ?? 0.0;
                long row = (long)o * inputs;
                for (int i = 0; i < inputs; i++)
                    sum += x[t, i] * weight.Values[row + i];
                y[t, o] = sum;
            }
        }
        return y;
    }

    /// <summary>
    /// Rotary embedding, rotate-half form, in place on each head of <paramref name="x"/> ([L, heads × d]): for
    /// i &lt; d/2, angle = p / θ^(2i/d), (a, b) = (x_i, x_{i+d/2}) becomes (a cos − b sin, b cos + a sin).
    /// </summary>
    internal static void ApplyRotary(double[,] x, int heads, int headDim, double theta)
    {
        int half = headDim / 2;
        for (int position = 0; position < x.GetLength(0); position++)
        {
            for (int i = 0; i < half; i++)
            {
                double inverseFrequency = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
                double angle = position * inverseFrequency;
                double cos = Math.Cos(angle), sin = Math.Sin(angle);
                for (int head = 0; head < heads; head++)
                {
                    int first = head * headDim + i, second = first + half;
                    double a = x[position, first], b = x[position, second];
                    x[position, first] = a * cos - b * sin;
                    x[position, second] = b * cos + a * sin;
                }
            }
        }
    }

    /// <summary>
    /// Bidirectional scaled dot-product attention: query head h reads key/value head h / (heads / kvHeads), as
    /// <c>repeat_kv</c> / <c>repeat_interleave</c> arrange them; softmax over every position, no mask.
    /// </summary>
    private double[,] Attention(double[,] q, double[,] k, double[,] v)
    {
        int length = q.GetLength(0);
        int group = _heads / _kvHeads;
        double scale = 1.0 / Math.Sqrt(_headDim);
        var output = new double[length, _hidden];
        var scores = new double[length];
        for (int head = 0; head < _heads; head++)
        {
            int queryOffset = head * _headDim;
            int kvOffset = (head / group) * _headDim;
            for (int i = 0; i < length; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < length; j++)
                {
                    double dot = 0;
                    for (int d = 0; d < _headDim; d++)
                        dot += q[i, queryOffset + d] * k[j, kvOffset + d];
                    scores[j] = dot * scale;
                    max = Math.Max(max, scores[j]);
                }
                double total = 0;
                for (int j = 0; j < length; j++)
                {
                    scores[j] = Math.Exp(scores[j] - max);
                    total += scores[j];
                }
                for (int j = 0; j < length; j++)
                {
                    double p = scores[j] / total;
                    for (int d = 0; d < _headDim; d++)
                        output[i, queryOffset + d] += p * v[j, kvOffset + d];
                }
            }
        }
        return output;
    }

    private StoredTensor Weight(string name, params long[] shape)
    {
        if (!_weights.TryGetValue(name, out StoredTensor? tensor))
            throw new InvalidDataException($"the checkpoint has no tensor {name}");
        if (!tensor.Shape.SequenceEqual(shape))
            throw new InvalidDataException($"{name} has shape [{string.Join(", ", tensor.Shape)}], expected [{string.Join(", ", shape)}]");
        return tensor;
    }

    private static double Silu(double value) => value / (1.0 + Math.Exp(-value));

    private static void AddInPlace(double[,] x, double[,] delta)
    {
        for (int t = 0; t < x.GetLength(0); t++)
            for (int j = 0; j < x.GetLength(1); j++)
                x[t, j] += delta[t, j];
    }

    private static float[,] ToSingle(double[,] values)
    {
        var result = new float[values.GetLength(0), values.GetLength(1)];
        for (int i = 0; i < values.GetLength(0); i++)
            for (int j = 0; j < values.GetLength(1); j++)
                result[i, j] = (float)values[i, j];
        return result;
    }

    private static void Require(JsonElement config, string key, string expected)
    {
        string? actual = config.TryGetProperty(key, out JsonElement value) ? value.GetString() : null;
        if (actual != expected)
            throw new NotSupportedException($"config {key} is '{actual}'; the literal pass follows '{expected}'");
    }

    private static int Int(JsonElement config, string key, int? fallback = null) =>
        config.TryGetProperty(key, out JsonElement value) && value.ValueKind == JsonValueKind.Number ? value.GetInt32()
        : fallback ?? throw new InvalidDataException($"config.json has no {key}");

    private static double Double(JsonElement config, string key, double fallback) =>
        config.TryGetProperty(key, out JsonElement value) && value.ValueKind == JsonValueKind.Number ? value.GetDouble() : fallback;

    private static bool Bool(JsonElement config, string key, bool fallback) =>
        config.TryGetProperty(key, out JsonElement value) && value.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? value.GetBoolean()
            : fallback;
}
