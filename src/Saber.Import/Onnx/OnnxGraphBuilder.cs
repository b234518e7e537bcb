using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx.Protobuf;

namespace Saber.Import.Onnx;

/// <summary>
/// Appends nodes, small inline constants and external initializers to an ONNX graph, naming every intermediate
/// value uniquely (<c>{hint}_{n}</c>) so that the builder's code reads as the forward pass it emits.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private readonly Dictionary<string, string> constants = [];
    private int values;

    public GraphProto Graph { get; } = new();

    /// <summary>Emits one node of the default domain and returns the name of its (single) output.</summary>
    /// <param name="output">The output's name; null names it after <paramref name="opType"/>.</param>
    public string Op(string opType, IEnumerable<string> inputs, IEnumerable<AttributeProto>? attributes = null, string? output = null)
    {
        output ??= $"{opType}_{values++}";
        var node = new NodeProto { OpType = opType, Name = $"node_{Graph.Node.Count}_{opType}" };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        if (attributes is not null) node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return output;
    }

    public string Op(string opType, params string[] inputs) => Op(opType, inputs, null);

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    /// <summary>An int64 tensor constant (a shape, axes, indices), shared by every use of the same values.</summary>
    /// <param name="scalar">A 0-D tensor (one value) instead of a vector.</param>
    public string Int64s(long[] values, bool scalar = false) =>
        Inline(TensorProto.Types.DataType.Int64, scalar ? [] : [values.Length], MemoryMarshal.AsBytes(values.AsSpan()));

    /// <summary>A float32 tensor constant, shared by every use of the same values.</summary>
    /// <param name="scalar">A 0-D tensor (one value) instead of a vector.</param>
    public string Floats(float[] values, bool scalar = false) =>
        Inline(TensorProto.Types.DataType.Float, scalar ? [] : [values.Length], MemoryMarshal.AsBytes(values.AsSpan()));

    public string Float(float value) => Floats([value], scalar: true);

    private string Inline(TensorProto.Types.DataType type, long[] dims, ReadOnlySpan<byte> bytes)
    {
        string identity = $"{type}[{string.Join(',', dims)}]{Convert.ToHexString(bytes)}";
        if (constants.TryGetValue(identity, out string? name)) return name;
        name = $"const_{constants.Count}";
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        tensor.Dims.AddRange(dims);
        Graph.Initializer.Add(tensor);
        constants.Add(identity, name);
        return name;
    }

    /// <summary>Declares a weight whose bytes stay in the external data file (data_location EXTERNAL) and returns its name.</summary>
    public string External(ExternalTensor weight)
    {
        var tensor = new TensorProto
        {
            Name = weight.Name,
            DataType = (int)ElementType(weight.Type),
            DataLocation = TensorProto.Types.DataLocation.External,
        };
        tensor.Dims.AddRange(weight.Shape);
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = weight.Location });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = weight.Offset.ToString(CultureInfo.InvariantCulture) });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = weight.Length.ToString(CultureInfo.InvariantCulture) });
        Graph.Initializer.Add(tensor);
        return weight.Name;
    }

    /// <summary>Declares a graph input or output: a tensor whose dimensions are symbolic names (string) or fixed sizes (int).</summary>
    public static ValueInfoProto Tensor(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object dim in dims)
            shape.Dim.Add(dim switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                int size => new TensorShapeProto.Types.Dimension { DimValue = size },
                _ => throw new ArgumentException($"A dimension is a name or a size, not {dim.GetType().Name}.", nameof(dims)),
            });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    public static TensorProto.Types.DataType ElementType(WeightType type) => type switch
    {
        WeightType.Float32 => TensorProto.Types.DataType.Float,
        WeightType.Float16 => TensorProto.Types.DataType.Float16,
        WeightType.BFloat16 => TensorProto.Types.DataType.Bfloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Not a weight element type."),
    };

    /// <summary>Bytes per element of a stored weight.</summary>
    public static int ElementSize(WeightType type) => type == WeightType.Float32 ? 4 : 2;
}
