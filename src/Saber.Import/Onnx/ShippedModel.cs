using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx.Protobuf;
using DataType = Saber.Import.Onnx.Protobuf.TensorProto.Types.DataType;

namespace Saber.Import.Onnx;

/// <summary>
/// Reads a model written by <c>tools/make_tiny_model.py</c> (the shipped <c>models/tiny</c> and <c>models/addition</c>):
/// its weights, embedded as float32 initializers, renamed to LLaDA's tensor names; its architecture from their shapes and
/// the graph's constants (<c>heads_shape</c>, <c>epsilon</c>, <c>masked_bias</c>, the rotary tables); its metadata.
/// </summary>
/// <remarks>
/// The linear weights stay [in, out] as stored and the cache graph multiplies them by MatMul, as the plain graph does:
/// the same bytes and the same kernel as <c>model.onnx</c>, so a full pass of the cache graph gives its logits bit for bit.
/// The rotary tables are the file's own (computed in double precision by the script, rounded to float32), and RMSNorm
/// squares by x·x as the script's graph does, for the same reason.
/// </remarks>
internal static class ShippedModel
{
    /// <summary>The script's facts the file does not state: rotary base (its tables hold the result) and no biases.</summary>
    private const double RopeTheta = 10000.0;

    public sealed record Contents(ArchitectureSpec Spec, GraphOptions Options, IReadOnlyList<KeyValuePair<string, string>> Metadata);

    /// <summary>Reads the model; <paramref name="path"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not a model of that script (a weight, a constant or the attention mask is missing or misshapen).</exception>
    public static Contents Read(ModelProto model, string path)
    {
        Dictionary<string, TensorProto> initializers = [];
        foreach (TensorProto tensor in model.Graph?.Initializer ?? [])
            initializers[tensor.Name] = tensor;
        TensorProto Need(string name) => initializers.TryGetValue(name, out TensorProto? t) ? t
            : throw new InvalidDataException($"'{path}' has no initializer '{name}': it is not a model tools/make_tiny_model.py wrote (with the attention mask).");

        long[] embed = [.. Need("embed").Dims];
        long[] gate = [.. Need("layer0.w_gate").Dims];
        long[] heads = Int64s(Need("heads_shape"), path);
        long[] rope = [.. Need("rope_cos").Dims];
        int layers = 0;
        while (initializers.ContainsKey($"layer{layers}.attn_norm")) layers++;
        if (embed.Length != 2 || gate.Length != 2 || heads.Length != 4 || rope.Length != 2 || layers == 0)
            throw new InvalidDataException($"'{path}': unexpected shapes of embed, layer0.w_gate, heads_shape or rope_cos.");
        Dictionary<string, string> metadata = model.MetadataProps.ToDictionary(e => e.Key, e => e.Value);
        int MetadataInt(string key) => metadata.TryGetValue(key, out string? text) && int.TryParse(text, CultureInfo.InvariantCulture, out int value) ? value
            : throw new InvalidDataException($"'{path}' lacks the integer metadata '{key}'.");

        int vocabulary = (int)embed[0];
        var spec = new ArchitectureSpec(CheckpointFamily.LLaDA, layers, HiddenSize: (int)embed[1], Heads: (int)heads[2], KvHeads: (int)heads[2],
            IntermediateSize: (int)gate[1], vocabulary, TokenizerVocabulary: vocabulary, RopeTheta, RmsNormEps: Float(Need("epsilon"), path),
            QkvBias: false, LinearBias: false, TiedEmbeddings: false, MaxPositions: (int)rope[0], MaskId: MetadataInt("mask_id"), EosIds: [],
            ShiftedLogits: false);
        if (spec.HeadDim != heads[3] || rope[1] != spec.HeadDim || MetadataInt("max_positions") != spec.MaxPositions)
            throw new InvalidDataException($"'{path}': heads_shape, rope_cos and max_positions disagree on the head width or the positions.");

        var weights = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        void Map(string from, string to) => weights.Add(to, Float32(Need(from), to, path));
        Map("embed", WeightNames.Embedding(spec.Family));
        for (int layer = 0; layer < layers; layer++)
        {
            BlockNames names = WeightNames.Block(spec.Family, layer);
            string p = $"layer{layer}.";
            Map(p + "attn_norm", names.AttentionNorm);
            Map(p + "wq", names.Query + ".weight");
            Map(p + "wk", names.Key + ".weight");
            Map(p + "wv", names.Value + ".weight");
            Map(p + "wo", names.AttentionOut + ".weight");
            Map(p + "ffn_norm", names.MlpNorm);
            Map(p + "w_gate", names.Gate + ".weight");
            Map(p + "w_up", names.Up + ".weight");
            Map(p + "w_down", names.Down + ".weight");
        }
        Map("final_norm", WeightNames.FinalNorm(spec.Family));
        Map("lm_head", WeightNames.OutputHead(spec.Family) + ".weight");
        Map("rope_cos", TransformerBlocks.RotaryCosName);
        Map("rope_sin", TransformerBlocks.RotarySinName);
        var options = new GraphOptions(new EmbeddedWeights(weights), LinearLayout.InputsByOutputs, RotaryTables: true,
            Float(Need("masked_bias"), path), SquareByMul: true);
        return new Contents(spec, options, [.. model.MetadataProps.Select(e => KeyValuePair.Create(e.Key, e.Value))]);
    }

    /// <summary>A float32 tensor renamed, its values in raw_data (the script writes raw_data; float_data is read too).</summary>
    private static TensorProto Float32(TensorProto tensor, string name, string path)
    {
        if (tensor.DataType != (int)DataType.Float)
            throw new InvalidDataException($"'{path}': initializer '{tensor.Name}' is not float32.");
        ByteString bytes = tensor.RawData.IsEmpty
            ? ByteString.CopyFrom(MemoryMarshal.AsBytes(tensor.FloatData.ToArray().AsSpan()))
            : tensor.RawData;
        if (bytes.Length != tensor.Dims.Aggregate(1L, (a, b) => a * b) * sizeof(float))
            throw new InvalidDataException($"'{path}': initializer '{tensor.Name}' holds {bytes.Length} bytes for dims [{string.Join(", ", tensor.Dims)}].");
        var renamed = new TensorProto { Name = name, DataType = (int)DataType.Float, RawData = bytes };
        renamed.Dims.AddRange(tensor.Dims);
        return renamed;
    }

    private static float Float(TensorProto tensor, string path)
    {
        TensorProto value = Float32(tensor, tensor.Name, path);
        return value.RawData.Length == sizeof(float) ? BitConverter.ToSingle(value.RawData.Span)
            : throw new InvalidDataException($"'{path}': '{tensor.Name}' should be one float.");
    }

    private static long[] Int64s(TensorProto tensor, string path) => tensor.DataType == (int)DataType.Int64
        ? (tensor.RawData.IsEmpty ? [.. tensor.Int64Data] : MemoryMarshal.Cast<byte, long>(tensor.RawData.Span).ToArray())
        : throw new InvalidDataException($"'{path}': '{tensor.Name}' should be int64.");
}
