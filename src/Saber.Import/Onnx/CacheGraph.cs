using System.Globalization;
using Google.Protobuf;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx.Protobuf;
using static Saber.Import.Onnx.OnnxGraphBuilder;
using DataType = Saber.Import.Onnx.Protobuf.TensorProto.Types.DataType;

namespace Saber.Import.Onnx;

/// <summary>
/// Builds a model's KV-cache graph (<c>model.cache.onnx</c>): the forward pass of <see cref="TransformerGraph"/> on a set of
/// query positions only, attending to cached keys and values for every other position (approximate caching as in
/// Fast-dLLM's prefix and dual caches). Making every position a query gives a full pass, whatever the cache holds.
/// </summary>
/// <remarks>
/// Inputs: <c>input_ids</c> int64 [batch, queries] (the tokens at the query positions); <c>query_positions</c> int64
/// [batch, queries] (each query's canvas index, also its rotary position: canvases start at key slot 0, padding only on
/// the right); <c>attention_mask</c> int64 [batch, keys] (1 = canvas position, 0 = padding); <c>past_key_{i}</c> and
/// <c>past_value_{i}</c> float32 [batch, kv_heads, keys, head_dim] per layer i (keys after rotary; the entries at the
/// query positions are ignored: the queries' fresh keys and values are scattered over them before attention);
/// <c>logits_index</c> int64 [batch, rows] (flat indices b × queries + q of the rows whose logits are output).
/// Outputs: <c>logits</c> float32 [batch, rows, V]; <c>present_key_{i}</c>, <c>present_value_{i}</c> float32
/// [batch, kv_heads, queries, head_dim], the keys (after rotary) and values of the queries, in query order.
/// </remarks>
public static class CacheGraph
{
    /// <summary>The cache graph's file name in a model folder, beside <c>model.onnx</c>.</summary>
    public const string FileName = "model.cache.onnx";

    public const string InputIdsName = TransformerGraph.InputIdsName;
    public const string QueryPositionsName = "query_positions";
    public const string AttentionMaskName = TransformerGraph.AttentionMaskName;
    public const string LogitsIndexName = TransformerGraph.LogitsIndexName;
    public const string LogitsName = TransformerGraph.LogitsName;

    /// <summary>The metadata key that marks a cache graph (value <c>1</c>).</summary>
    public const string MarkerKey = "cache_graph";

    /// <summary>The cached keys of layer <paramref name="layer"/> (input).</summary>
    public static string PastKeyName(int layer) => $"past_key_{layer}";

    /// <summary>The cached values of layer <paramref name="layer"/> (input).</summary>
    public static string PastValueName(int layer) => $"past_value_{layer}";

    /// <summary>The queries' keys of layer <paramref name="layer"/> (output).</summary>
    public static string PresentKeyName(int layer) => $"present_key_{layer}";

    /// <summary>The queries' values of layer <paramref name="layer"/> (output).</summary>
    public static string PresentValueName(int layer) => $"present_value_{layer}";

    /// <summary>
    /// The cache graph's metadata: the plain graph's entries (in their order), then <c>cache_graph</c> = <c>1</c> and the
    /// sizes an engine needs for cache memory and FLOPs: <c>layers</c>, <c>hidden_size</c>, <c>heads</c>, <c>kv_heads</c>,
    /// <c>head_dim</c>, <c>intermediate_size</c>, <c>vocabulary</c> (decimal).
    /// </summary>
    public static Dictionary<string, string> Metadata(ArchitectureSpec spec, IEnumerable<KeyValuePair<string, string>> plainGraphMetadata)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(plainGraphMetadata);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach ((string key, string value) in plainGraphMetadata) metadata[key] = value;
        metadata[MarkerKey] = "1";
        foreach ((string key, int value) in new[]
                 {
                     ("layers", spec.Layers), ("hidden_size", spec.HiddenSize), ("heads", spec.Heads), ("kv_heads", spec.KvHeads),
                     ("head_dim", spec.HeadDim), ("intermediate_size", spec.IntermediateSize), ("vocabulary", spec.Vocabulary),
                 })
            metadata[key] = value.ToString(CultureInfo.InvariantCulture);
        return metadata;
    }

    /// <summary>
    /// Writes the cache graph of an imported checkpoint (every weight an external initializer, the same entries as its
    /// <c>model.onnx</c>'s, so that both read one <c>model.onnx.data</c>) to <paramref name="output"/>.
    /// </summary>
    /// <param name="metadata">Written as given; <see cref="Metadata"/> makes it from the plain graph's.</param>
    /// <exception cref="ArgumentException">The spec is inconsistent, or a weight is missing or has the wrong shape or byte length.</exception>
    public static void Write(Stream output, ArchitectureSpec spec, IReadOnlyDictionary<string, ExternalTensor> weights,
        IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(weights);
        Write(output, spec, GraphOptions.Imported(weights), metadata);
    }

    /// <summary>Writes the cache graph with the given weights and graph options.</summary>
    internal static void Write(Stream output, ArchitectureSpec spec, GraphOptions options, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(metadata);
        TransformerGraph.CheckSpec(spec);
        var model = new ModelProto
        {
            IrVersion = TransformerGraph.IrVersion,
            ProducerName = "Saber.Import",
            Graph = new Forward(spec, options).Build(),
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = TransformerGraph.Opset });
        foreach ((string key, string value) in metadata)
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        model.WriteTo(output);
    }

    /// <summary>The query positions against all key slots: fresh keys and values scattered over the cached ones.</summary>
    private sealed class Forward : TransformerBlocks
    {
        // query_positions broadcast to a present key's shape [batch, kv_heads, queries, head_dim]: ScatterElements' indices.
        private string? scatterIndices;

        public Forward(ArchitectureSpec spec, GraphOptions options)
            : base(spec, options, $"saber-{spec.Family.ToString().ToLowerInvariant()}-cache", InputIdsName, AttentionMaskName,
                QueryPositionsName, LogitsIndexName, LogitsName)
        {
            GraphProto graph = g.Graph;
            graph.Input.Add(Tensor(InputIdsName, DataType.Int64, "batch", "queries"));
            graph.Input.Add(Tensor(QueryPositionsName, DataType.Int64, "batch", "queries"));
            graph.Input.Add(Tensor(AttentionMaskName, DataType.Int64, "batch", "keys"));
            for (int layer = 0; layer < spec.Layers; layer++)
            {
                graph.Input.Add(Tensor(PastKeyName(layer), DataType.Float, "batch", spec.KvHeads, "keys", spec.HeadDim));
                graph.Input.Add(Tensor(PastValueName(layer), DataType.Float, "batch", spec.KvHeads, "keys", spec.HeadDim));
            }
            graph.Input.Add(Tensor(LogitsIndexName, DataType.Int64, "batch", "rows"));
            graph.Output.Add(Tensor(LogitsName, DataType.Float, "batch", "rows", spec.Vocabulary));
            for (int layer = 0; layer < spec.Layers; layer++)
            {
                graph.Output.Add(Tensor(PresentKeyName(layer), DataType.Float, "batch", spec.KvHeads, "queries", spec.HeadDim));
                graph.Output.Add(Tensor(PresentValueName(layer), DataType.Float, "batch", spec.KvHeads, "queries", spec.HeadDim));
            }
        }

        /// <summary>
        /// The queries' k (rotated) and v, [b, q, kv, 1, d] → present [b, kv, q, d], scattered over the past at the query
        /// positions (axis 2), then laid out as the plain graph's: keys [b, kv, 1, d, keys], values [b, kv, 1, keys, d].
        /// </summary>
        protected override (string Keys, string Values) KeysAndValues(int layer, string key, string value)
        {
            string headsFirst = g.Int64s([2]);
            string presentKey = g.Op("Squeeze", [g.Op("Transpose", [Rotate(key)], [Ints("perm", 0, 2, 3, 1, 4)]), headsFirst], output: PresentKeyName(layer));
            string presentValue = g.Op("Squeeze", [g.Op("Transpose", [value], [Ints("perm", 0, 2, 3, 1, 4)]), headsFirst], output: PresentValueName(layer));
            scatterIndices ??= g.Op("Expand", g.Op("Unsqueeze", QueryPositionsName, g.Int64s([1, 3])), g.Op("Shape", presentKey));
            string keys = g.Op("ScatterElements", [PastKeyName(layer), scatterIndices, presentKey], [Int("axis", 2)]);
            string values = g.Op("ScatterElements", [PastValueName(layer), scatterIndices, presentValue], [Int("axis", 2)]);
            return (g.Op("Transpose", [g.Op("Unsqueeze", keys, headsFirst)], [Ints("perm", 0, 1, 2, 4, 3)]), g.Op("Unsqueeze", values, headsFirst));
        }
    }
}
