using Saber.Import.Checkpoints;

namespace Saber.Import;

/// <summary>What an import wrote.</summary>
/// <param name="ModelDirectory">The finished model folder (full path).</param>
/// <param name="Spec">The architecture read from the checkpoint, as written to the graph and manifest.</param>
/// <param name="DType">The element type of the written weights.</param>
/// <param name="Tensors">Weights written.</param>
/// <param name="SourceBytes">Tensor bytes read from the checkpoint.</param>
/// <param name="DataBytes">Size of <c>model.onnx.data</c> (converted tensors plus alignment padding).</param>
/// <param name="Elapsed">Wall time of the whole import.</param>
public sealed record ImportResult(
    string ModelDirectory, ArchitectureSpec Spec, WeightType DType, int Tensors, long SourceBytes, long DataBytes, TimeSpan Elapsed);
