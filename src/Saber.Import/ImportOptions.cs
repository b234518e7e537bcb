using Saber.Import.Checkpoints;

namespace Saber.Import;

/// <summary>Settings of one <see cref="ModelImporter.Import"/>.</summary>
public sealed record ImportOptions
{
    /// <summary>The names of the element types as <c>--dtype</c> and the manifest spell them.</summary>
    public static IReadOnlyDictionary<string, WeightType> DTypeNames { get; } = new Dictionary<string, WeightType>(StringComparer.Ordinal)
    {
        ["fp32"] = WeightType.Float32,
        ["fp16"] = WeightType.Float16,
        ["bf16"] = WeightType.BFloat16,
    };

    /// <summary>The name of <paramref name="type"/> in <see cref="DTypeNames"/>.</summary>
    public static string DTypeName(WeightType type) => DTypeNames.First(pair => pair.Value == type).Key;

    /// <summary>The element type written to <c>model.onnx.data</c>; null keeps the checkpoint's own (which must then be one type throughout).</summary>
    public WeightType? DType { get; init; }

    /// <summary>Overrides the config's longest canvas (at least 1); null keeps the config's.</summary>
    public int? MaxPositions { get; init; }

    /// <summary>
    /// Bytes read per chunk while copying weights. Memory stays this plus the converted chunk (at most twice as large),
    /// whatever the model's size: a 1 GB embedding is copied in chunks like any other tensor.
    /// </summary>
    public int ChunkBytes { get; init; } = 4 << 20;
}
