namespace Saber.Denoisers;

/// <summary>
/// Replays recorded logits: a <c>.npy</c> array of shape <c>[steps, L, V]</c>; step <c>t</c> of the
/// decode receives slice <c>t − 1</c>. It holds one sequence (batch of one). The logits do not depend
/// on the canvas, so a replay shows how a sampler would act on one recorded trajectory of a model.
/// </summary>
public sealed class ReplayDenoiser : IDenoiser, IDisposable
{
    private readonly NpyFile file;
    private readonly float[]? float32;
    private readonly Half[]? float16;

    /// <param name="path">A <c>.npy</c> file (see <see cref="NpyFile"/>) of rank 3.</param>
    /// <param name="maskId">The model's [MASK] id.</param>
    /// <exception cref="InvalidDataException">The file is not a rank-3 float array.</exception>
    public ReplayDenoiser(string path, int maskId)
    {
        file = NpyFile.Open(path);
        try
        {
            if (file.Shape.Count != 3 || file.Shape.Any(d => d == 0))
                throw new InvalidDataException($"{path}: replay logits must have shape [steps, L, V] with every dimension > 0; got ({string.Join(", ", file.Shape)}).");
            if (file.Shape[1] * file.Shape[2] > Array.MaxLength || file.Shape[2] > int.MaxValue)
                throw new InvalidDataException($"{path}: one step of shape [{file.Shape[1]}, {file.Shape[2]}] is too large.");
            Steps = (int)Math.Min(file.Shape[0], int.MaxValue);
            Length = (int)file.Shape[1];
            VocabularySize = (int)file.Shape[2];
            if (maskId < 0 || maskId >= VocabularySize)
                throw new ArgumentOutOfRangeException(nameof(maskId), maskId, $"Mask id must lie in [0, V={VocabularySize}) for {path}; got {maskId}.");
            MaskId = maskId;
            if (file.ElementType == LogitsElementType.Float32)
                float32 = new float[Length * VocabularySize];
            else
                float16 = new Half[Length * VocabularySize];
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public int VocabularySize { get; }
    public int MaskId { get; }

    /// <summary>Number of recorded steps.</summary>
    public int Steps { get; }

    /// <summary>Canvas length <c>L</c> the logits were recorded for.</summary>
    public int Length { get; }

    /// <summary>The recorded canvas length: a replay answers canvases of exactly <see cref="Length"/> positions.</summary>
    public int? MaxSequenceLength => Length;

    /// <summary>Throws unless a prompt of <paramref name="promptLength"/> tokens plus <paramref name="generationLength"/> positions is the recorded canvas length.</summary>
    /// <exception cref="ArgumentException">The lengths do not add up to <see cref="Length"/>; the message names the file and its shape.</exception>
    public void CheckCanvasLength(int promptLength, int generationLength)
    {
        if ((long)promptLength + generationLength != Length)
            throw new ArgumentException($"{file.Path} holds logits of shape ({string.Join(", ", file.Shape)}), recorded for canvases of L = {Length} positions; " +
                $"a prompt of {promptLength} tokens plus G = {generationLength} makes {(long)promptLength + generationLength}.", nameof(generationLength));
    }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        if (request.Canvases.Count != 1)
            throw new InvalidOperationException($"{file.Path} replays one sequence; the request holds {request.Canvases.Count}.");
        if (request.Canvases[0].Length != Length)
            throw new InvalidLogitsException($"Step {request.Step}: {file.Path} holds logits of shape [{Length}, {VocabularySize}] per step, recorded for canvases of " +
                $"{Length} positions; expected [{request.Canvases[0].Length}, {VocabularySize}] for this canvas.");
        if (request.Step < 1 || request.Step > Steps)
            throw new InvalidOperationException($"Step {request.Step} needs recorded slice {request.Step - 1}, but {file.Path} holds {Steps} steps (0..{Steps - 1}).");
        long first = (long)(request.Step - 1) * Length * VocabularySize;
        SequenceLogits logits;
        if (float32 is not null)
        {
            file.CopyTo<float>(first, float32);
            logits = SequenceLogits.FromFloat32(float32, Length, VocabularySize);
        }
        else
        {
            file.CopyTo<Half>(first, float16);
            logits = SequenceLogits.FromFloat16(float16, Length, VocabularySize);
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>([logits]);
    }

    public void Dispose() => file.Dispose();
}
