namespace Saber;

/// <summary>The checks of spec §7 that can be made before the first model call; every sampler runs them.</summary>
public static class DecodeInputs
{
    /// <summary>
    /// The most sequences in one decode: the CUDA row pass runs one grid row per sequence (a grid's y
    /// dimension holds 65535), and both samplers accept the same batches.
    /// </summary>
    public const int MaxBatch = 65535;

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming the first invalid option, vocabulary, mask id, batch size,
    /// canvas length or prompt token. Sizes are checked before anything is allocated.
    /// </summary>
    /// <param name="maxSequenceLength">The model's longest canvas (<see cref="IDenoiser.MaxSequenceLength"/>), if it has one.</param>
    public static void Validate(IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, int vocabulary, int maskId, int? maxSequenceLength = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (vocabulary <= 0)
            throw new ArgumentOutOfRangeException(nameof(vocabulary), vocabulary, $"Vocabulary size V must be > 0; got {vocabulary}.");
        if (maskId < 0 || maskId >= vocabulary)
            throw new ArgumentOutOfRangeException(nameof(maskId), maskId, $"Mask id must lie in [0, V={vocabulary}); got {maskId}.");
        if (prompts.Count > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(prompts), prompts.Count, $"A decode holds at most {MaxBatch} sequences; got {prompts.Count} prompts.");
        int g = options.GenerationLength;
        for (int b = 0; b < prompts.Count; b++)
        {
            ReadOnlySpan<int> prompt = prompts[b].Span;
            long length = (long)prompt.Length + g;
            if (maxSequenceLength is int max && length > max)
                throw new ArgumentOutOfRangeException(nameof(options.GenerationLength), g,
                    $"Prompt {b} ({prompt.Length} token{(prompt.Length == 1 ? "" : "s")}) plus generation length G={g} makes a canvas of {length} positions; the model takes at most {max}.");
            if (length * vocabulary > Array.MaxLength)
                throw new ArgumentOutOfRangeException(nameof(options.GenerationLength), g,
                    $"Prompt {b} ({prompt.Length} token{(prompt.Length == 1 ? "" : "s")}) plus generation length G={g} makes a canvas of {length} positions, whose logits [{length}, V={vocabulary}] exceed the largest array ({Array.MaxLength} elements).");
            for (int i = 0; i < prompt.Length; i++)
            {
                int token = prompt[i];
                if (token < 0 || token >= vocabulary)
                    throw new ArgumentOutOfRangeException(nameof(prompts), token, $"Prompt {b} holds token {token} at position {i}, outside [0, V={vocabulary}).");
                if (token == maskId)
                    throw new ArgumentException($"Prompt {b} holds the mask id {maskId} at position {i}; prompts must not contain masks.", nameof(prompts));
            }
        }
    }

    /// <summary>
    /// Checks a model's answer to a request (spec §7, logits part): one <see cref="SequenceLogits"/> per
    /// canvas, each with the model's vocabulary and the rows of every canvas position from at most
    /// <see cref="DenoiseRequest.LogitsFrom"/> (position 0 when the request names none) to the canvas's end.
    /// </summary>
    /// <exception cref="InvalidLogitsException">The first mismatch, naming the step, sequence and shapes.</exception>
    public static void CheckLogits(DenoiseRequest request, int vocabulary, IReadOnlyList<SequenceLogits>? logits)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (logits is null || logits.Count != request.Canvases.Count)
            throw new InvalidLogitsException($"Step {request.Step}: the model returned logits for {logits?.Count ?? 0} sequences; {request.Canvases.Count} canvases were sent.");
        for (int i = 0; i < logits.Count; i++)
            if (ShapeError(request.Step, request.SequenceIds[i], request.Canvases[i].Length, request.LogitsFrom?[i] ?? 0, vocabulary, logits[i],
                    request.Windows?[i]) is string error)
                throw new InvalidLogitsException(error);
    }

    /// <summary>
    /// Why one canvas's logits do not answer the request, or null when they do: the vocabulary must be the model's,
    /// the rows must run to the canvas's end and start at or before <paramref name="logitsFrom"/>.
    /// </summary>
    /// <param name="window">The canvas's cache window: then the logits must hold the row of every query from <paramref name="logitsFrom"/> on.</param>
    public static string? ShapeError(int step, int sequence, int length, int logitsFrom, int vocabulary, in SequenceLogits logits, CacheWindow? window = null)
    {
        if (logits.Vocabulary != vocabulary)
            return $"Step {step}, sequence {sequence}: logits have vocabulary {logits.Vocabulary}; the model reports V={vocabulary}.";
        if (window is not null)
        {
            foreach (int position in window.Queries)
                if (position >= logitsFrom && !logits.Holds(position))
                    return $"Step {step}, sequence {sequence}: the logits lack the row of position {position}, a query of the call's cache window.";
            return null;
        }
        if (logits.FirstPosition == 0 && logits.Rows < length)
            return $"Step {step}, sequence {sequence}: the model returned {logits.Rows} rows for a canvas of {length} positions.";
        if (logits.FirstPosition + logits.Rows != length || logits.FirstPosition > logitsFrom)
            return logits.FirstPosition == 0
                ? $"Step {step}, sequence {sequence}: logits have shape [{logits.Rows}, {logits.Vocabulary}]; expected [{length}, {vocabulary}]."
                : $"Step {step}, sequence {sequence}: logits hold the rows of positions [{logits.FirstPosition}, {logits.FirstPosition + logits.Rows}); " +
                  $"the canvas has {length} positions and rows from position {logitsFrom} were asked for.";
        return null;
    }
}
