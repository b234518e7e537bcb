using System.Text.Json;
using System.Text.Json.Serialization;

namespace Saber.Json;

/// <summary>
/// Source-generated System.Text.Json metadata for the options and results of a decode, for trimmed and
/// native-AOT services: <see cref="DecodeOptions"/>, the three strategies, <see cref="DecodeResult"/> and
/// <see cref="DecodeStepUpdate"/> (and everything they hold). Add it to a resolver chain
/// (<c>options.TypeInfoResolverChain.Insert(0, SaberJsonContext.Default)</c>) or use <see cref="SaberJson.Options"/>.
/// </summary>
/// <remarks>
/// The JSON shape is fixed by attributes on the types (property names, the strategy's <c>"type"</c>, enum names,
/// <c>"Infinity"</c> for non-finite floats), so reflection-based serialization writes the same JSON. These options
/// only make reading stricter: <c>"type"</c> may come anywhere, a <c>null</c> where the type does not allow one and a
/// missing constructor parameter are errors.
/// </remarks>
[JsonSourceGenerationOptions(
    AllowOutOfOrderMetadataProperties = true,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(DecodeOptions))]
[JsonSerializable(typeof(DecodingStrategy))]
[JsonSerializable(typeof(SaberStrategy))]
[JsonSerializable(typeof(LowConfidenceStrategy))]
[JsonSerializable(typeof(ThresholdStrategy))]
[JsonSerializable(typeof(FactorStrategy))]
[JsonSerializable(typeof(SaberVariant))]
[JsonSerializable(typeof(ConfidenceMetric))]
[JsonSerializable(typeof(CacheOptions))]
[JsonSerializable(typeof(CachePolicy))]
[JsonSerializable(typeof(RemaskRefresh))]
[JsonSerializable(typeof(CacheStatistics))]
[JsonSerializable(typeof(RemaskStatistics))]
[JsonSerializable(typeof(DecodeResult))]
[JsonSerializable(typeof(SequenceResult))]
[JsonSerializable(typeof(StepTrace))]
[JsonSerializable(typeof(CommittedToken))]
[JsonSerializable(typeof(RemaskedToken))]
[JsonSerializable(typeof(DecodeStepUpdate))]
[JsonSerializable(typeof(SequenceStep))]
public sealed partial class SaberJsonContext : JsonSerializerContext;

/// <summary>The JSON form of Saber's options and results (see <see cref="SaberJsonContext"/>).</summary>
public static class SaberJson
{
    /// <summary>
    /// Options whose <see cref="JsonSerializerOptions.TypeInfoResolver"/> is <see cref="SaberJsonContext.Default"/>
    /// (read-only; copy with <c>new JsonSerializerOptions(SaberJson.Options)</c> to change them).
    /// </summary>
    public static JsonSerializerOptions Options => SaberJsonContext.Default.Options;
}
