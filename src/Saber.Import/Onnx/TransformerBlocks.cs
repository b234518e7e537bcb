using Saber.Import.Checkpoints;
using Saber.Import.Onnx.Protobuf;
using static Saber.Import.Onnx.OnnxGraphBuilder;
using DataType = Saber.Import.Onnx.Protobuf.TensorProto.Types.DataType;

namespace Saber.Import.Onnx;

/// <summary>How a graph multiplies by its linear weights.</summary>
internal enum LinearLayout
{
    /// <summary>[out, in] as checkpoints store them: Gemm with transB, which ORT prepacks.</summary>
    OutputsByInputs,

    /// <summary>[in, out] as the shipped models store them: MatMul, as their own graphs do.</summary>
    InputsByOutputs,
}

/// <summary>Where a graph's weights come from, and how each becomes an initializer.</summary>
internal abstract class WeightSource
{
    /// <summary>The weight's element type and shape, or false when the source lacks it.</summary>
    public abstract bool TryFind(string name, out WeightType type, out long[] shape);

    /// <summary>Adds the weight (shape already checked) to the graph as an initializer named <paramref name="name"/>.</summary>
    public abstract void Declare(OnnxGraphBuilder g, string name, long[] shape);
}

/// <summary>Weights in an external data file (imported checkpoints): the graph holds their location only.</summary>
internal sealed class ExternalWeights(IReadOnlyDictionary<string, ExternalTensor> weights) : WeightSource
{
    public override bool TryFind(string name, out WeightType type, out long[] shape)
    {
        bool found = weights.TryGetValue(name, out ExternalTensor? weight);
        (type, shape) = found ? (weight!.Type, weight.Shape) : (default, []);
        return found;
    }

    public override void Declare(OnnxGraphBuilder g, string name, long[] shape)
    {
        ExternalTensor weight = weights[name];
        long bytes = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(weight.Type);
        if (weight.Length != bytes || weight.Offset < 0)
            throw new ArgumentException(
                $"Weight '{name}' ({weight.Type}) must take {bytes} bytes at an offset ≥ 0; its external data says {weight.Length} bytes at {weight.Offset}.",
                "weights");
        g.External(weight);
    }
}

/// <summary>float32 weights embedded in the graph (the shipped models), each tensor's bytes in raw_data.</summary>
internal sealed class EmbeddedWeights(IReadOnlyDictionary<string, TensorProto> weights) : WeightSource
{
    public override bool TryFind(string name, out WeightType type, out long[] shape)
    {
        bool found = weights.TryGetValue(name, out TensorProto? tensor);
        (type, shape) = (WeightType.Float32, found ? [.. tensor!.Dims] : []);
        return found;
    }

    public override void Declare(OnnxGraphBuilder g, string name, long[] shape) => g.Graph.Initializer.Add(weights[name].Clone());
}

/// <summary>What differs between the graphs of imported checkpoints and of the shipped models; the forward pass is the same.</summary>
/// <param name="Weights">The weights, by their <see cref="WeightNames"/> (LLaDA's for the shipped models).</param>
/// <param name="Layout">How linear weights are stored.</param>
/// <param name="RotaryTables">
/// cos and sin are rows of the weights <see cref="TransformerBlocks.RotaryCosName"/> and <see cref="TransformerBlocks.RotarySinName"/>
/// [max positions, head_dim] (the shipped models' own tables, computed in double precision), instead of computed in float32.
/// </param>
/// <param name="PaddedKeyBias">Added to padded keys' scores: float.MinValue (LLaDA's mask), the shipped graphs' −1e9.</param>
/// <param name="SquareByMul">
/// RMSNorm squares by x·x (the shipped graphs' form, which ONNX Runtime leaves unfused) instead of Pow(x, 2) (which it fuses
/// into SimplifiedLayerNormalization): each graph's cache graph squares as its plain graph does, so that ORT computes both
/// alike and a full pass of the cache graph equals the plain graph bit for bit.
/// </param>
internal sealed record GraphOptions(WeightSource Weights, LinearLayout Layout, bool RotaryTables, float PaddedKeyBias, bool SquareByMul = false)
{
    /// <summary>An imported checkpoint's: external weights [out, in], rotary computed, float.MinValue bias.</summary>
    public static GraphOptions Imported(IReadOnlyDictionary<string, ExternalTensor> weights) =>
        new(new ExternalWeights(weights), LinearLayout.OutputsByInputs, RotaryTables: false, float.MinValue);
}

/// <summary>
/// The forward pass shared by <see cref="TransformerGraph"/> (every position) and <see cref="CacheGraph"/> (query positions
/// against cached keys and values), emitted node by node: one method per part of a block. Subclasses declare the graph's
/// inputs and outputs and say where a block's keys and values come from (<see cref="KeysAndValues"/>).
/// </summary>
internal abstract class TransformerBlocks
{
    /// <summary>Name of the shipped models' rotary cos table among the weights.</summary>
    public const string RotaryCosName = "rotary.cos";

    /// <summary>Name of the shipped models' rotary sin table among the weights.</summary>
    public const string RotarySinName = "rotary.sin";

    protected readonly ArchitectureSpec spec;
    protected readonly OnnxGraphBuilder g = new();
    private readonly GraphOptions options;
    private readonly string inputIds, logitsIndex, logitsName;
    private readonly Dictionary<string, string> declared = [];
    private readonly Dictionary<string, string> asFloat = [];

    // Shared by every block: the attention's head shapes [batch, tokens, kv_heads, queries_per_kv or 1, head_dim],
    // the rotary cos and sin [batch, tokens, 1, 1, head_dim], the padded-key bias [batch, 1, 1, 1, keys].
    private readonly string queryShape, keyValueShape, cos, sin, keyBias;

    /// <param name="positions">The tokens' rotary positions int64 [batch, tokens]; null: counted from the attention mask.</param>
    protected TransformerBlocks(ArchitectureSpec spec, GraphOptions options, string graphName, string inputIds, string attentionMask,
        string? positions, string logitsIndex, string logitsName)
    {
        this.spec = spec;
        this.options = options;
        this.inputIds = inputIds;
        this.logitsIndex = logitsIndex;
        this.logitsName = logitsName;
        g.Graph.Name = graphName;
        string batchByTokens = g.Op("Shape", inputIds);
        queryShape = g.Op("Concat", [batchByTokens, g.Int64s([spec.KvHeads, spec.Heads / spec.KvHeads, spec.HeadDim])], [Int("axis", 0)]);
        keyValueShape = g.Op("Concat", [batchByTokens, g.Int64s([spec.KvHeads, 1, spec.HeadDim])], [Int("axis", 0)]);
        (cos, sin) = RotaryTables(positions ?? CountedPositions(attentionMask));
        keyBias = PaddedKeyBias(attentionMask);
    }

    public GraphProto Build()
    {
        string x = Embed();
        for (int layer = 0; layer < spec.Layers; layer++)
        {
            BlockNames names = WeightNames.Block(spec.Family, layer);
            x = g.Op("Add", x, Attention(x, names, layer));
            x = g.Op("Add", x, Mlp(x, names));
        }
        OutputHead(x);
        return g.Graph;
    }

    /// <summary>
    /// A block's keys, transposed for QKᵀ [batch, kv_heads, 1, head_dim, keys], and values [batch, kv_heads, 1, keys, head_dim],
    /// from its tokens' projections <paramref name="key"/> (not yet rotated) and <paramref name="value"/> [batch, tokens, kv_heads, 1, head_dim].
    /// </summary>
    protected abstract (string Keys, string Values) KeysAndValues(int layer, string key, string value);

    /// <summary>Token embeddings [tokens, hidden] of the flattened rows. The lookup gathers stored rows and casts only those.</summary>
    private string Embed()
    {
        string table = Declare(WeightNames.Embedding(spec.Family), spec.Vocabulary, spec.HiddenSize);
        string flatIds = g.Op("Reshape", inputIds, g.Int64s([-1]));
        string rows = g.Op("Gather", [table, flatIds], [Int("axis", 0)]);
        return TypeOf(table) == WeightType.Float32 ? rows : g.Op("Cast", [rows], [Int("to", (long)DataType.Float)]);
    }

    /// <summary>A row's positions counting its tokens only: cumsum(attention_mask) − 1, clamped at 0 for leading padding.</summary>
    private string CountedPositions(string attentionMask) =>
        g.Op("Max", g.Op("Sub", g.Op("CumSum", attentionMask, g.Int64s([1], scalar: true)), g.Int64s([1], scalar: true)),
            g.Int64s([0], scalar: true));

    /// <summary>
    /// cos and sin of positions × inv_freq, the half-width frequencies concatenated twice (rotate-half form); or, with
    /// <see cref="GraphOptions.RotaryTables"/>, the tables' rows at the positions.
    /// </summary>
    private (string Cos, string Sin) RotaryTables(string positions)
    {
        string headAxes;
        if (options.RotaryTables)
        {
            string cosTable = Declare(RotaryCosName, spec.MaxPositions, spec.HeadDim), sinTable = Declare(RotarySinName, spec.MaxPositions, spec.HeadDim);
            headAxes = g.Int64s([2, 3]);
            return (g.Op("Unsqueeze", g.Op("Gather", [cosTable, positions], [Int("axis", 0)]), headAxes),
                g.Op("Unsqueeze", g.Op("Gather", [sinTable, positions], [Int("axis", 0)]), headAxes));
        }
        string floatPositions = g.Op("Unsqueeze", g.Op("Cast", [positions], [Int("to", (long)DataType.Float)]), g.Int64s([2]));
        string angles = g.Op("Mul", floatPositions, g.Floats(InverseFrequencies()));
        string doubled = g.Op("Concat", [angles, angles], [Int("axis", -1)]);
        headAxes = g.Int64s([2, 3]);
        return (g.Op("Unsqueeze", g.Op("Cos", doubled), headAxes), g.Op("Unsqueeze", g.Op("Sin", doubled), headAxes));
    }

    /// <summary>
    /// 1 / theta^(2i / d) for i &lt; d / 2, in float32 arithmetic as both modeling codes compute it
    /// (<c>arange(0, d, 2).float() / d</c>, then the power and the reciprocal in float32).
    /// </summary>
    private float[] InverseFrequencies()
    {
        int d = spec.HeadDim;
        float theta = (float)spec.RopeTheta;
        return Enumerable.Range(0, d / 2).Select(i => 1f / MathF.Pow(theta, 2 * i / (float)d)).ToArray();
    }

    /// <summary>0 for a token's key, <see cref="GraphOptions.PaddedKeyBias"/> for a padded one (LLaDA's <c>(1 − mask) × finfo.min</c>).</summary>
    private string PaddedKeyBias(string attentionMask)
    {
        string isToken = g.Op("Cast", [attentionMask], [Int("to", (long)DataType.Bool)]);
        string bias = g.Op("Where", isToken, g.Float(0f), g.Float(options.PaddedKeyBias));
        return g.Op("Unsqueeze", bias, g.Int64s([1, 2, 3]));
    }

    /// <summary>
    /// Bidirectional grouped-query attention, the heads laid out [batch, kv_heads, queries_per_kv, tokens, head_dim]
    /// so that each key/value head serves its consecutive query heads by broadcasting (as repeat_kv does), not copying.
    /// </summary>
    private string Attention(string x, BlockNames names, int layer)
    {
        string h = RmsNorm(x, names.AttentionNorm);
        int width = spec.Heads * spec.HeadDim;
        string q = g.Op("Reshape", Linear(h, names.Query, width, spec.HiddenSize, spec.QkvBias), queryShape);
        string k = g.Op("Reshape", Linear(h, names.Key, spec.KvWidth, spec.HiddenSize, spec.QkvBias), keyValueShape);
        string v = g.Op("Reshape", Linear(h, names.Value, spec.KvWidth, spec.HiddenSize, spec.QkvBias), keyValueShape);
        // [b, s, kv, group, d] → [b, kv, group, s, d].
        q = g.Op("Transpose", [Rotate(q)], [Ints("perm", 0, 2, 3, 1, 4)]);
        (string keys, string values) = KeysAndValues(layer, k, v);
        string scores = g.Op("Mul", g.Op("MatMul", q, keys), g.Float((float)(1.0 / Math.Sqrt(spec.HeadDim))));
        string probabilities = g.Op("Softmax", [g.Op("Add", scores, keyBias)], [Int("axis", -1)]);
        string heads = g.Op("Transpose", [g.Op("MatMul", probabilities, values)], [Ints("perm", 0, 3, 1, 2, 4)]);
        string merged = g.Op("Reshape", heads, g.Int64s([-1, width]));
        return Linear(merged, names.AttentionOut, spec.HiddenSize, width, spec.LinearBias);
    }

    /// <summary>t·cos + rotate_half(t)·sin on the last axis, rotate_half(t) = (−t₂, t₁).</summary>
    protected string Rotate(string t)
    {
        long half = spec.HeadDim / 2;
        string lastAxis = g.Int64s([-1]);
        string first = g.Op("Slice", t, g.Int64s([0]), g.Int64s([half]), lastAxis);
        string second = g.Op("Slice", t, g.Int64s([half]), g.Int64s([spec.HeadDim]), lastAxis);
        string rotated = g.Op("Concat", [g.Op("Neg", second), first], [Int("axis", -1)]);
        return g.Op("Add", g.Op("Mul", t, cos), g.Op("Mul", rotated, sin));
    }

    /// <summary>SwiGLU: Down(SiLU(Gate(h)) × Up(h)), h = RMSNorm_mlp(x).</summary>
    private string Mlp(string x, BlockNames names)
    {
        string h = RmsNorm(x, names.MlpNorm);
        string gate = Linear(h, names.Gate, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
        string up = Linear(h, names.Up, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
        string activated = g.Op("Mul", g.Op("Mul", gate, g.Op("Sigmoid", gate)), up);
        return Linear(activated, names.Down, spec.HiddenSize, spec.IntermediateSize, spec.LinearBias);
    }

    /// <summary>
    /// The final norm and the head on the hidden states <c>logits_index</c> names only: gathered [batch, rows, hidden],
    /// projected as [batch × rows, hidden], reshaped to [batch, rows, V].
    /// </summary>
    private void OutputHead(string x)
    {
        string rows = g.Op("Gather", [x, logitsIndex], [Int("axis", 0)]);
        string normed = g.Op("Reshape", RmsNorm(rows, WeightNames.FinalNorm(spec.Family)), g.Int64s([-1, spec.HiddenSize]));
        // modeling_llada.py's untied ff_out carries a bias with include_bias; Dream's lm_head never does (LinearBias is false).
        // A tied head is the embedding [V, hidden], so always transB, whatever the layout of the other weights.
        string projected = spec.TiedEmbeddings
            ? Gemm(normed, AsFloat(WeightNames.Embedding(spec.Family)), bias: null)
            : Linear(normed, WeightNames.OutputHead(spec.Family), spec.Vocabulary, spec.HiddenSize, spec.LinearBias);
        string shape = g.Op("Concat", [g.Op("Shape", logitsIndex), g.Int64s([spec.Vocabulary])], [Int("axis", 0)]);
        g.Op("Reshape", [projected, shape], output: logitsName);
    }

    /// <summary>
    /// x / sqrt(mean(x²) + eps) × weight, over the last axis in float32; the Pow/ReduceMean/Add/Sqrt/Div/Mul pattern
    /// ORT fuses. (Norms with a bias, an OLMo option no LLaDA release uses, are refused by the config reader.)
    /// </summary>
    private string RmsNorm(string x, string weightName)
    {
        string square = options.SquareByMul ? g.Op("Mul", x, x) : g.Op("Pow", x, g.Float(2f));
        string meanSquare = g.Op("ReduceMean", [square], [Ints("axes", -1), Int("keepdims", 1)]);
        string normalized = g.Op("Div", x, g.Op("Sqrt", g.Op("Add", meanSquare, g.Float((float)spec.RmsNormEps))));
        Declare(weightName, spec.HiddenSize);
        return g.Op("Mul", normalized, AsFloat(weightName));
    }

    /// <summary>x Wᵀ (+ b) on [tokens, in], the weight as stored: [out, in] by Gemm transB, [in, out] by MatMul.</summary>
    private string Linear(string x, string prefix, int outputs, int inputs, bool hasBias)
    {
        bool transposed = options.Layout == LinearLayout.OutputsByInputs;
        Declare(prefix + ".weight", transposed ? [outputs, inputs] : [inputs, outputs]);
        if (hasBias) Declare(prefix + ".bias", outputs);
        if (transposed) return Gemm(x, AsFloat(prefix + ".weight"), hasBias ? AsFloat(prefix + ".bias") : null);
        string product = g.Op("MatMul", x, AsFloat(prefix + ".weight"));
        return hasBias ? g.Op("Add", product, AsFloat(prefix + ".bias")) : product;
    }

    private string Gemm(string x, string weight, string? bias) =>
        g.Op("Gemm", bias is null ? [x, weight] : [x, weight, bias], [Int("transB", 1)]);

    /// <summary>Checks a weight's presence and shape and declares it as an initializer (once).</summary>
    private string Declare(string name, params long[] shape)
    {
        if (declared.TryGetValue(name, out string? known)) return known;
        if (!options.Weights.TryFind(name, out _, out long[] stored))
            throw new ArgumentException($"The {spec.Family} graph needs the weight '{name}' [{string.Join(", ", shape)}], which is missing.", "weights");
        if (!stored.SequenceEqual(shape))
            throw new ArgumentException(
                $"Weight '{name}' must be [{string.Join(", ", shape)}] for this architecture; it is [{string.Join(", ", stored)}].", "weights");
        options.Weights.Declare(g, name, shape);
        declared.Add(name, name);
        return name;
    }

    private WeightType TypeOf(string name) => options.Weights.TryFind(name, out WeightType type, out _) ? type : WeightType.Float32;

    /// <summary>The declared weight as float32: itself, or one Cast node shared by all its uses (ORT folds it at load).</summary>
    private string AsFloat(string name)
    {
        if (TypeOf(name) == WeightType.Float32) return name;
        if (!asFloat.TryGetValue(name, out string? cast))
            asFloat.Add(name, cast = g.Op("Cast", [name], [Int("to", (long)DataType.Float)]));
        return cast;
    }
}
