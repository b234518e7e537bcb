using Saber.Tests;

namespace Saber.Cuda.Tests;

/// <summary>
/// A GPU engine for tests: copies the device canvases to the host, runs a host denoiser on every canvas
/// of the batch, and writes its logits to the device address the sampler gave, as a real engine would.
/// </summary>
internal sealed class HostBackedGpuDenoiser(CudaContext context, IDenoiser inner, LogitsElementType elementType) : IGpuDenoiser
{
    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public LogitsElementType ElementType => elementType;

    /// <summary>Forward passes run so far.</summary>
    public int Forwards { get; private set; }

    /// <summary>Called before each forward pass (to cancel a decode mid-way, say).</summary>
    public Action<GpuForwardRequest>? BeforeForward { get; init; }

    public async ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
    {
        BeforeForward?.Invoke(request);
        Forwards++;
        var canvases = new int[request.Batch * request.Length];
        context.CopyToHost(request.Canvases, canvases.AsSpan());
        int[] sequences = Enumerable.Range(0, request.Batch).ToArray();
        var hostRequest = new DenoiseRequest(request.Step, sequences,
            sequences.Select(b => (ReadOnlyMemory<int>)canvases.AsMemory(b * request.Length, request.SequenceLengths[b])).ToArray());
        IReadOnlyList<SequenceLogits> logits = await inner.ForwardAsync(hostRequest, cancellationToken);
        long pitch = (long)request.Length * VocabularySize * (elementType == LogitsElementType.Float32 ? 4 : 2);
        for (int b = 0; b < request.Batch; b++)
        {
            Assert.That(logits[b].ElementType, Is.EqualTo(elementType), "the wrapped denoiser's element type");
            context.CopyToDevice(logits[b].RawBytes, request.Logits + (nint)(b * pitch));
        }
    }
}
