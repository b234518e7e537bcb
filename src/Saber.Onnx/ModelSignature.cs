using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx;

/// <summary>
/// What a loaded model graph declares, checked once for every engine that runs it (<see cref="OnnxDenoiser"/> on the host,
/// the device engine of Saber.Onnx.Gpu): its inputs and logits, mask id, longest canvas and logits convention.
/// </summary>
/// <param name="Vocabulary">V, the logits' last dimension.</param>
/// <param name="ElementType">The logits' element type.</param>
/// <param name="AttentionMask">Whether the graph takes <c>attention_mask</c>.</param>
/// <param name="SelectsRows">Whether the graph takes <c>logits_index</c>.</param>
/// <param name="MaskId">The [MASK] id (the options' or metadata <c>mask_id</c>).</param>
/// <param name="MaxPositions">Metadata <c>max_positions</c>; null when the model does not say.</param>
/// <param name="Weights">Metadata <c>weights</c>; null when the model does not say.</param>
/// <param name="Shifted">Metadata <c>logits_shift</c> = 1: the output at i − 1 predicts position i (Dream).</param>
internal sealed record ModelSignature(int Vocabulary, LogitsElementType ElementType, bool AttentionMask, bool SelectsRows, int MaskId, int? MaxPositions,
    string? Weights, bool Shifted)
{
    /// <summary>
    /// Checks <paramref name="options"/>, opens a session on the model at <paramref name="path"/> (on <paramref name="stream"/> for a GPU
    /// provider, 0: its own) and reads its signature; the session is disposed when the signature is not the expected one.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="GpuUnavailableException">A GPU provider was asked for and cannot run here.</exception>
    /// <exception cref="InvalidDataException">The file is not a loadable model, or its signature is not the expected one.</exception>
    public static (InferenceSession Session, ModelSignature Model) Open(string path, OnnxEngineOptions options, nint stream = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!File.Exists(path)) throw new FileNotFoundException($"No ONNX model at '{path}'.", path);
        InferenceSession session = OnnxDenoiser.OpenSession(path, options, "ONNX model", stream);
        try
        {
            return (session, Read(session, path, options));
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Reads and checks the signature of <paramref name="session"/>'s model at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The inputs, outputs or metadata are not the expected ones (named).</exception>
    public static ModelSignature Read(InferenceSession session, string path, OnnxEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(options);
        var (vocabulary, type, attentionMask, selectsRows) = OnnxDenoiser.CheckSignature(session, path);
        IReadOnlyDictionary<string, string> metadata = session.ModelMetadata.CustomMetadataMap;
        int maskId = options.MaskId ?? OnnxDenoiser.MetadataInt(metadata, "mask_id", path)
            ?? throw new InvalidDataException($"'{path}' has no mask_id metadata; set OnnxEngineOptions.MaskId.");
        if (maskId < 0 || maskId >= vocabulary)
            throw new InvalidDataException($"Mask id {maskId} of '{path}' lies outside the vocabulary [0, {vocabulary}).");
        int? maxPositions = OnnxDenoiser.MetadataInt(metadata, "max_positions", path);
        if (maxPositions <= 0)
            throw new InvalidDataException($"Metadata 'max_positions' of '{path}' must be > 0; it is {maxPositions}.");
        string? weights = metadata.TryGetValue("weights", out string? text) ? text : null;
        int shift = OnnxDenoiser.MetadataInt(metadata, "logits_shift", path) ?? 0;
        if (shift is not (0 or 1))
            throw new InvalidDataException($"Metadata 'logits_shift' of '{path}' must be 0 or 1; it is {shift}.");
        if (shift == 1 && !selectsRows)
            throw new InvalidDataException($"'{path}' has shifted logits (metadata logits_shift = 1) but no '{OnnxDenoiser.LogitsIndexName}' input to apply the shift with.");
        return new ModelSignature(vocabulary, type, attentionMask, selectsRows, maskId, maxPositions, weights, shift == 1);
    }
}
