namespace Saber.Cuda;

/// <summary>
/// A model whose forward pass runs on the GPU: each step it reads the canvases from device memory and
/// writes logits into the sampler's device buffer, queued on the context's stream, so that the step
/// kernels that follow on the same stream read them without a copy to the host.
/// </summary>
public interface IGpuDenoiser
{
    /// <summary>Vocabulary size <c>V</c>.</summary>
    int VocabularySize { get; }

    /// <summary>The [MASK] token id, in <c>[0, V)</c>.</summary>
    int MaskId { get; }

    /// <summary>The longest canvas (prompt + <c>G</c>) the engine takes; null when it does not say (see <see cref="IDenoiser.MaxSequenceLength"/>).</summary>
    int? MaxSequenceLength => null;

    /// <summary>The element type of the logits the engine writes.</summary>
    LogitsElementType ElementType { get; }

    /// <summary>
    /// Queues the forward pass of every canvas of the batch on <see cref="GpuForwardRequest.Stream"/>.
    /// It may return before the work finishes; it must not queue work on another stream that the step
    /// kernels would then race with.
    /// </summary>
    ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken);
}

/// <summary>One step's forward pass for a <see cref="IGpuDenoiser"/>: where to read and where to write.</summary>
/// <param name="Step">The step number, from 1.</param>
/// <param name="Batch">Sequences in the batch (finished ones included: their logits are ignored).</param>
/// <param name="Length">Row pitch: the longest prompt plus <c>G</c>.</param>
/// <param name="SequenceLengths">Per sequence, its canvas length <c>P_b + G</c>; positions past it hold the
/// mask id and must not be attended to.</param>
/// <param name="Canvases">Device address of the canvases, int32 <c>[Batch, Length]</c>.</param>
/// <param name="Logits">Device address the logits go to: <c>[Batch, Length, V]</c> of the engine's element type, contiguous.</param>
/// <param name="Stream">The <c>cudaStream_t</c> every step runs on.</param>
public sealed record GpuForwardRequest(int Step, int Batch, int Length, IReadOnlyList<int> SequenceLengths, nint Canvases, nint Logits, nint Stream)
{
    /// <summary>
    /// Per sequence, the first position whose logits row the sampler reads (its prompt length), or null for every row. An
    /// engine may leave the rows before it unwritten; writing every row stays correct.
    /// </summary>
    public IReadOnlyList<int>? LogitsFrom { get; init; }
}
