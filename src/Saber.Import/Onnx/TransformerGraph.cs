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

    internal static void CheckSpec(ArchitectureSpec spec)
    {
        if (spec.Layers <= 0 || spec.HiddenSize <= 0 || spec.Heads <= 0 || spec.KvHeads <= 0 || spec.IntermediateSize <= 0 || spec.Vocabulary <= 0)
            throw new ArgumentException($"Every size of the architecture must be positive: {spec}.", nameof(spec));
        if (spec.HiddenSize % spec.Heads != 0 || spec.HeadDim % 2 != 0)
            throw new ArgumentException(
                $"The hidden size {spec.HiddenSize} must split into {spec.Heads} heads of an even width (rotary embeddings rotate pairs).", nameof(spec));
        if (spec.Heads % spec.KvHeads != 0)
            throw new ArgumentException($"The {spec.Heads} query heads must split evenly over the {spec.KvHeads} key/value heads.", nameof(spec));
    }

    /// <summary>Every position of every row, against the keys and values of its own row; rotary positions counted from the mask.</summary>
    private sealed class Forward : TransformerBlocks
    {
        public Forward(ArchitectureSpec spec, IReadOnlyDictionary<string, ExternalTensor> weights)
            : base(spec, GraphOptions.Imported(weights), $"saber-{spec.Family.ToString().ToLowerInvariant()}", InputIdsName, AttentionMaskName,
                positions: null, LogitsIndexName, LogitsName)
        {
            GraphProto graph = g.Graph;
            graph.Input.Add(Tensor(InputIdsName, DataType.Int64, "batch", "sequence"));
            graph.Input.Add(Tensor(AttentionMaskName, DataType.Int64, "batch", "sequence"));
            graph.Input.Add(Tensor(LogitsIndexName, DataType.Int64, "batch", "rows"));
            graph.Output.Add(Tensor(LogitsName, DataType.Float, "batch", "rows", spec.Vocabulary));
        }

        /// <summary>k: [b, s, kv, 1, d] → [b, kv, 1, d, s] (already transposed for QKᵀ); v: → [b, kv, 1, s, d].</summary>
        protected override (string Keys, string Values) KeysAndValues(int layer, string key, string value) =>
            (g.Op("Transpose", [Rotate(key)], [Ints("perm", 0, 2, 3, 4, 1)]), g.Op("Transpose", [value], [Ints("perm", 0, 2, 3, 1, 4)]));
    }
}
