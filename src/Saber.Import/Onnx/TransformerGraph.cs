using Saber.Import.Checkpoints;

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
public static class TransformerGraph
{
    /// <summary>
    /// Writes the ONNX model (graph and metadata; every weight an external initializer) to <paramref name="output"/>.
    /// Inputs: <c>input_ids</c> int64 [batch, sequence], <c>attention_mask</c> int64 [batch, sequence] (1 = token,
    /// 0 = padding, anywhere in the row), <c>logits_index</c> int64 [batch, rows] (flat indices b × sequence + position
    /// of the hidden states whose logits are output). Output: <c>logits</c> float32 [batch, rows, Vocabulary].
    /// </summary>
    public static void Write(Stream output, ArchitectureSpec spec, IReadOnlyDictionary<string, ExternalTensor> weights,
        IReadOnlyDictionary<string, string> metadata) =>
        throw new NotImplementedException("TransformerGraph.Write is being written (issue 22).");
}
