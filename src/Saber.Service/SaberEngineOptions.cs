namespace Saber.Service;

/// <summary>Limits and forward-pass grouping of a <see cref="SaberEngine"/>.</summary>
public sealed record SaberEngineOptions
{
    /// <summary>
    /// The most requests the engine holds at once, waiting and active together. A submission beyond it is
    /// rejected with <see cref="SaberEngineFullException"/> (default 256).
    /// </summary>
    public int Capacity { get; init; } = 256;

    /// <summary>The most sequences decoding at once: every step serves at most this many (default 32).</summary>
    public int MaxBatchSize { get; init; } = 32;

    /// <summary>
    /// True for a denoiser that cannot take canvases of different lengths in one call (a model without an
    /// attention mask that batches by stacking): each forward pass then holds canvases of one length.
    /// False (default) sends every active canvas in one call, as <see cref="CpuSampler"/> does;
    /// <c>OnnxDenoiser</c> accepts that: a model with an <c>attention_mask</c> input runs the ragged canvases as one
    /// padded batch, one without runs each length as its own batch inside the call.
    /// </summary>
    public bool GroupByCanvasLength { get; init; }

    /// <summary>
    /// True for a denoiser whose logits depend on <see cref="DenoiseRequest.Step"/> (a replay of recorded logits):
    /// each forward pass then holds sequences at the same own step, and <see cref="DenoiseRequest.Step"/> is that step.
    /// </summary>
    public bool GroupByStep { get; init; }

    /// <summary>The most canvases in one forward pass (null: no limit beyond <see cref="MaxBatchSize"/>); 1 for a denoiser that takes one sequence.</summary>
    public int? MaxRowsPerForward { get; init; }

    /// <summary>Threads for the row computations of a step; -1 uses every core.</summary>
    public int MaxDegreeOfParallelism { get; init; } = -1;

    /// <summary>
    /// The model the engine serves, as its clients name it (a server's model id): every measurement of the engine's
    /// instruments carries it as the tag <see cref="SaberEngineMetrics.ModelTag"/>. Null (default): no model tag.
    /// </summary>
    public string? ModelId { get; init; }

    /// <summary>Dispose the denoiser (when it is <see cref="IDisposable"/> or <see cref="IAsyncDisposable"/>) when the engine is disposed.</summary>
    public bool DisposeDenoiser { get; init; }

    internal void Validate()
    {
        if (Capacity < 1)
            throw new ArgumentOutOfRangeException(nameof(Capacity), Capacity, $"Capacity must be >= 1; got {Capacity}.");
        if (MaxBatchSize < 1 || MaxBatchSize > DecodeInputs.MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, $"MaxBatchSize must lie in [1, {DecodeInputs.MaxBatch}]; got {MaxBatchSize}.");
        if (MaxRowsPerForward is < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxRowsPerForward), MaxRowsPerForward, $"MaxRowsPerForward must be >= 1 or null; got {MaxRowsPerForward}.");
        if (MaxDegreeOfParallelism == 0 || MaxDegreeOfParallelism < -1)
            throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), MaxDegreeOfParallelism, "Use -1 (all cores) or a positive thread count.");
    }
}

/// <summary>A submission found the engine holding <see cref="Capacity"/> requests (waiting and active together).</summary>
public sealed class SaberEngineFullException(int capacity)
    : InvalidOperationException($"The engine already holds {capacity} requests, its Capacity (waiting + active); retry later or raise SaberEngineOptions.Capacity.")
{
    /// <summary>The limit that was reached: <see cref="SaberEngineOptions.Capacity"/>.</summary>
    public int Capacity { get; } = capacity;
}
