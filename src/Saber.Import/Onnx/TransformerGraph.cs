using Google.Protobuf;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx.Protobuf;
using static Saber.Import.Onnx.OnnxGraphBuilder;
using DataType = Saber.Import.Onnx.Protobuf.TensorProto.Types.DataType;

namespace Saber.Import.Onnx;

/// <summary>
/// A weight whose bytes live in the external data file beside the graph (ONNX external data: location, offset, length).
/// </summary>
/// <param name="Name">The checkpoint's tensor name (also the ONNX initializer's name).</param>
/// <param name="Type">Element type as written to the data file (the import's <c>--dtype</c>).</param>
/// <param name="Shape">Shape as the checkpoint stores it.</param>
/// <param name="Location">Data file name, relative to the graph file.</param>
/// <param name="Offset">Byte offset in that file.</param>
/// <param name="Length">Byte length.</param>
public sealed record ExternalTensor(string Name, WeightType Type, long[] Shape, string Location, long Offset, long Length);

/// <summary>Builds the ONNX graph of a LLaDA or Dream checkpoint straight from its architecture and weights (no tracing).</summary>
/// <remarks>
/// The forward pass is the published modeling code's (<c>modeling_llada.py</c>'s LLaDALlamaBlock, <c>modeling_dream.py</c>),
/// in float32 with plain opset-17 operators that ONNX Runtime's optimiser fuses (RMSNorm, Gemm with a prepacked weight).
/// Each block, on the hidden states <c>x</c> [tokens, hidden] of every row flattened:
/// <code>
/// h = x + AttentionOut(Attention(RMSNorm_attn(x)))
/// x = h + Down(SiLU(Gate(RMSNorm_mlp(h))) * Up(RMSNorm_mlp(h)))
/// </code>
/// Attention is bidirectional; padded keys get float.MinValue added to their scores (as LLaDA's mask does), and every
/// row's rotary positions count its tokens only (<c>cumsum(attention_mask) − 1</c>, clamped at 0), so a padded row's
/// logits are its logits alone wherever the padding sits. Only the rows named by <c>logits_index</c> go through the
/// final norm and the output head.
/// </remarks>
public static class TransformerGraph
{
    /// <summary>The ONNX operator set the graph uses (ONNX Runtime's CPU provider implements all of its operators used here).</summary>
    public const int Opset = 17;

    /// <summary>The IR version matching <see cref="Opset"/>.</summary>
    public const int IrVersion = 8;

    public const string InputIdsName = "input_ids";
    public const string AttentionMaskName = "attention_mask";
    public const string LogitsIndexName = "logits_index";
    public const string LogitsName = "logits";

    /// <summary>
    /// Writes the ONNX model (graph and metadata; every weight an external initializer) to <paramref name="output"/>.
    /// Inputs: <c>input_ids</c> int64 [batch, sequence], <c>attention_mask</c> int64 [batch, sequence] (1 = token,
    /// 0 = padding, anywhere in the row), <c>logits_index</c> int64 [batch, rows] (flat indices b × sequence + position
    /// of the hidden states whose logits are output). Output: <c>logits</c> float32 [batch, rows, Vocabulary].
    /// </summary>
    /// <exception cref="ArgumentException">The spec is inconsistent, or a weight is missing or has the wrong shape or byte length.</exception>
    public static void Write(Stream output, ArchitectureSpec spec, IReadOnlyDictionary<string, ExternalTensor> weights,
        IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(metadata);
        CheckSpec(spec);

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "Saber.Import",
            Graph = new Forward(spec, weights).Build(),
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        foreach ((string key, string value) in metadata)
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        model.WriteTo(output);
    }

    private static void CheckSpec(ArchitectureSpec spec)
    {
        if (spec.Layers <= 0 || spec.HiddenSize <= 0 || spec.Heads <= 0 || spec.KvHeads <= 0 || spec.IntermediateSize <= 0 || spec.Vocabulary <= 0)
            throw new ArgumentException($"Every size of the architecture must be positive: {spec}.", nameof(spec));
        if (spec.HiddenSize % spec.Heads != 0 || spec.HeadDim % 2 != 0)
            throw new ArgumentException(
                $"The hidden size {spec.HiddenSize} must split into {spec.Heads} heads of an even width (rotary embeddings rotate pairs).", nameof(spec));
        if (spec.Heads % spec.KvHeads != 0)
            throw new ArgumentException($"The {spec.Heads} query heads must split evenly over the {spec.KvHeads} key/value heads.", nameof(spec));
    }

    /// <summary>The forward pass of one checkpoint, emitted node by node: one method per part of a block.</summary>
    private sealed class Forward
    {
        private readonly ArchitectureSpec spec;
        private readonly IReadOnlyDictionary<string, ExternalTensor> weights;
        private readonly OnnxGraphBuilder g = new();
        private readonly Dictionary<string, string> declared = [];
        private readonly Dictionary<string, string> asFloat = [];

        // Shared by every block: the attention's head shapes [batch, sequence, kv_heads, queries_per_kv or 1, head_dim],
        // the rotary cos and sin [batch, sequence, 1, 1, head_dim], the padded-key bias [batch, 1, 1, 1, sequence].
        private readonly string queryShape, keyValueShape, cos, sin, keyBias;

        public Forward(ArchitectureSpec spec, IReadOnlyDictionary<string, ExternalTensor> weights)
        {
            this.spec = spec;
            this.weights = weights;
            GraphProto graph = g.Graph;
            graph.Name = $"saber-{spec.Family.ToString().ToLowerInvariant()}";
            graph.Input.Add(Tensor(InputIdsName, DataType.Int64, "batch", "sequence"));
            graph.Input.Add(Tensor(AttentionMaskName, DataType.Int64, "batch", "sequence"));
            graph.Input.Add(Tensor(LogitsIndexName, DataType.Int64, "batch", "rows"));
            graph.Output.Add(Tensor(LogitsName, DataType.Float, "batch", "rows", spec.Vocabulary));

            string batchBySequence = g.Op("Shape", InputIdsName);
            queryShape = g.Op("Concat", [batchBySequence, g.Int64s([spec.KvHeads, spec.Heads / spec.KvHeads, spec.HeadDim])], [Int("axis", 0)]);
            keyValueShape = g.Op("Concat", [batchBySequence, g.Int64s([spec.KvHeads, 1, spec.HeadDim])], [Int("axis", 0)]);
            (cos, sin) = RotaryTables();
            keyBias = PaddedKeyBias();
        }

        public GraphProto Build()
        {
            string x = Embed();
            for (int layer = 0; layer < spec.Layers; layer++)
            {
                BlockNames names = WeightNames.Block(spec.Family, layer);
                x = g.Op("Add", x, Attention(x, names));
                x = g.Op("Add", x, Mlp(x, names));
            }
            OutputHead(x);
            return g.Graph;
        }

        /// <summary>Token embeddings [tokens, hidden] of the flattened rows. The lookup gathers stored rows and casts only those.</summary>
        private string Embed()
        {
            string table = Declare(WeightNames.Embedding(spec.Family), spec.Vocabulary, spec.HiddenSize);
            string flatIds = g.Op("Reshape", InputIdsName, g.Int64s([-1]));
            string rows = g.Op("Gather", [table, flatIds], [Int("axis", 0)]);
            return weights[table].Type == WeightType.Float32 ? rows : g.Op("Cast", [rows], [Int("to", (long)DataType.Float)]);
        }

        /// <summary>
        /// cos and sin of positions × inv_freq, the half-width frequencies concatenated twice (rotate-half form), where a
        /// row's positions count its tokens: cumsum(attention_mask) − 1, clamped at 0 for leading padding.
        /// </summary>
        private (string Cos, string Sin) RotaryTables()
        {
            string positions = g.Op("Max", g.Op("Sub", g.Op("CumSum", AttentionMaskName, g.Int64s([1], scalar: true)), g.Int64s([1], scalar: true)),
                g.Int64s([0], scalar: true));
            string floatPositions = g.Op("Unsqueeze", g.Op("Cast", [positions], [Int("to", (long)DataType.Float)]), g.Int64s([2]));
            string angles = g.Op("Mul", floatPositions, g.Floats(InverseFrequencies()));
            string doubled = g.Op("Concat", [angles, angles], [Int("axis", -1)]);
            string headAxes = g.Int64s([2, 3]);
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

        /// <summary>0 for a token's key, float.MinValue for a padded one (LLaDA's <c>(1 − mask) × finfo.min</c>).</summary>
        private string PaddedKeyBias()
        {
            string isToken = g.Op("Cast", [AttentionMaskName], [Int("to", (long)DataType.Bool)]);
            string bias = g.Op("Where", isToken, g.Float(0f), g.Float(float.MinValue));
            return g.Op("Unsqueeze", bias, g.Int64s([1, 2, 3]));
        }

        /// <summary>
        /// Bidirectional grouped-query attention, the heads laid out [batch, kv_heads, queries_per_kv, sequence, head_dim]
        /// so that each key/value head serves its consecutive query heads by broadcasting (as repeat_kv does), not copying.
        /// </summary>
        private string Attention(string x, BlockNames names)
        {
            string h = RmsNorm(x, names.AttentionNorm);
            int width = spec.Heads * spec.HeadDim;
            string q = g.Op("Reshape", Linear(h, names.Query, width, spec.HiddenSize, spec.QkvBias), queryShape);
            string k = g.Op("Reshape", Linear(h, names.Key, spec.KvWidth, spec.HiddenSize, spec.QkvBias), keyValueShape);
            string v = g.Op("Reshape", Linear(h, names.Value, spec.KvWidth, spec.HiddenSize, spec.QkvBias), keyValueShape);
            // [b, s, kv, group, d] → q, v: [b, kv, group, s, d]; k: [b, kv, 1, d, s] (already transposed for QKᵀ).
            q = g.Op("Transpose", [Rotate(q)], [Ints("perm", 0, 2, 3, 1, 4)]);
            k = g.Op("Transpose", [Rotate(k)], [Ints("perm", 0, 2, 3, 4, 1)]);
            v = g.Op("Transpose", [v], [Ints("perm", 0, 2, 3, 1, 4)]);
            string scores = g.Op("Mul", g.Op("MatMul", q, k), g.Float((float)(1.0 / Math.Sqrt(spec.HeadDim))));
            string probabilities = g.Op("Softmax", [g.Op("Add", scores, keyBias)], [Int("axis", -1)]);
            string heads = g.Op("Transpose", [g.Op("MatMul", probabilities, v)], [Ints("perm", 0, 3, 1, 2, 4)]);
            string merged = g.Op("Reshape", heads, g.Int64s([-1, width]));
            return Linear(merged, names.AttentionOut, spec.HiddenSize, width, spec.LinearBias);
        }

        /// <summary>t·cos + rotate_half(t)·sin on the last axis, rotate_half(t) = (−t₂, t₁).</summary>
        private string Rotate(string t)
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
            string rows = g.Op("Gather", [x, LogitsIndexName], [Int("axis", 0)]);
            string normed = g.Op("Reshape", RmsNorm(rows, WeightNames.FinalNorm(spec.Family)), g.Int64s([-1, spec.HiddenSize]));
            // modeling_llada.py's untied ff_out carries a bias with include_bias; Dream's lm_head never does (LinearBias is false).
            string projected = spec.TiedEmbeddings
                ? Gemm(normed, AsFloat(WeightNames.Embedding(spec.Family)), bias: null)
                : Linear(normed, WeightNames.OutputHead(spec.Family), spec.Vocabulary, spec.HiddenSize, spec.LinearBias);
            string shape = g.Op("Concat", [g.Op("Shape", LogitsIndexName), g.Int64s([spec.Vocabulary])], [Int("axis", 0)]);
            g.Op("Reshape", [projected, shape], output: LogitsName);
        }

        /// <summary>
        /// x / sqrt(mean(x²) + eps) × weight, over the last axis in float32; the Pow/ReduceMean/Add/Sqrt/Div/Mul pattern
        /// ORT fuses. (Norms with a bias, an OLMo option no LLaDA release uses, are refused by the config reader.)
        /// </summary>
        private string RmsNorm(string x, string weightName)
        {
            string meanSquare = g.Op("ReduceMean", [g.Op("Pow", x, g.Float(2f))], [Ints("axes", -1), Int("keepdims", 1)]);
            string normalized = g.Op("Div", x, g.Op("Sqrt", g.Op("Add", meanSquare, g.Float((float)spec.RmsNormEps))));
            Declare(weightName, spec.HiddenSize);
            return g.Op("Mul", normalized, AsFloat(weightName));
        }

        /// <summary>x Wᵀ (+ b) on [tokens, in]: the weight stays [out, in] as stored (Gemm transB, which ORT prepacks).</summary>
        private string Linear(string x, string prefix, int outputs, int inputs, bool hasBias)
        {
            Declare(prefix + ".weight", outputs, inputs);
            if (hasBias) Declare(prefix + ".bias", outputs);
            return Gemm(x, AsFloat(prefix + ".weight"), hasBias ? AsFloat(prefix + ".bias") : null);
        }

        private string Gemm(string x, string weight, string? bias) =>
            g.Op("Gemm", bias is null ? [x, weight] : [x, weight, bias], [Int("transB", 1)]);

        /// <summary>Checks a weight's presence, shape and byte length and declares it as an external initializer (once).</summary>
        private string Declare(string name, params long[] shape)
        {
            if (declared.TryGetValue(name, out string? known)) return known;
            if (!weights.TryGetValue(name, out ExternalTensor? weight))
                throw new ArgumentException($"The {spec.Family} graph needs the weight '{name}' [{string.Join(", ", shape)}], which is missing.", nameof(weights));
            if (!weight.Shape.SequenceEqual(shape))
                throw new ArgumentException(
                    $"Weight '{name}' must be [{string.Join(", ", shape)}] for this architecture; it is [{string.Join(", ", weight.Shape)}].", nameof(weights));
            long bytes = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(weight.Type);
            if (weight.Length != bytes || weight.Offset < 0)
                throw new ArgumentException(
                    $"Weight '{name}' ({weight.Type}) must take {bytes} bytes at an offset ≥ 0; its external data says {weight.Length} bytes at {weight.Offset}.",
                    nameof(weights));
            declared.Add(name, g.External(weight));
            return name;
        }

        /// <summary>The declared weight as float32: itself, or one Cast node shared by all its uses (ORT folds it at load).</summary>
        private string AsFloat(string name)
        {
            if (weights[name].Type == WeightType.Float32) return name;
            if (!asFloat.TryGetValue(name, out string? cast))
                asFloat.Add(name, cast = g.Op("Cast", [name], [Int("to", (long)DataType.Float)]));
            return cast;
        }
    }
}
