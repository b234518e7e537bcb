using System.Runtime.InteropServices;
using Saber.Cuda;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>
/// The device engine's forward pass on host memory (the CPU provider through the same binding code): the canvases laid out
/// as a decode lays them out on the device (int32 [batch, length], mask-padded on the right) and a logits buffer
/// [batch, length, V] filled with NaN, so that a row the engine should have written and did not shows.
/// </summary>
internal static unsafe class HostDevice
{
    public static OnnxDeviceDenoiser Load(string modelFile, OnnxEngineOptions? options = null) =>
        OnnxDeviceDenoiser.Load(modelFile, options ?? new OnnxEngineOptions(), new HostModelMemory(), stream: 0, logger: null);

    /// <summary>Per sequence, its logits rows from its prompt's end to its canvas's end, as float32.</summary>
    /// <param name="sendLogitsFrom">Whether the request says where each sequence's rows start (false: the engine writes every row).</param>
    public static float[][][] Forward(OnnxDeviceDenoiser engine, int[][] canvases, int[] promptLengths, int step = 1, bool sendLogitsFrom = true)
    {
        int batch = canvases.Length, length = canvases.Max(c => c.Length), v = engine.VocabularySize;
        int elementBytes = engine.ElementType == LogitsElementType.Float32 ? 4 : 2;
        nint ids = (nint)NativeMemory.Alloc((nuint)(4L * batch * length));
        nint logits = (nint)NativeMemory.Alloc((nuint)((long)batch * length * v * elementBytes));
        try
        {
            var idSpan = new Span<int>((void*)ids, batch * length);
            idSpan.Fill(engine.MaskId);
            for (int b = 0; b < batch; b++) canvases[b].CopyTo(idSpan.Slice(b * length));
            if (elementBytes == 4) new Span<float>((void*)logits, batch * length * v).Fill(float.NaN);
            else new Span<Half>((void*)logits, batch * length * v).Fill(Half.NaN);
            var request = new GpuForwardRequest(step, batch, length, canvases.Select(c => c.Length).ToArray(), ids, logits, 0)
            {
                LogitsFrom = sendLogitsFrom ? promptLengths : null,
            };
            engine.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            return Enumerable.Range(0, batch).Select(b => Enumerable.Range(promptLengths[b], canvases[b].Length - promptLengths[b])
                .Select(p => Row(logits, ((long)b * length + p) * v, v, elementBytes)).ToArray()).ToArray();
        }
        finally
        {
            NativeMemory.Free((void*)ids);
            NativeMemory.Free((void*)logits);
        }
    }

    private static float[] Row(nint logits, long offset, int v, int elementBytes) => elementBytes == 4
        ? new ReadOnlySpan<float>((float*)logits + offset, v).ToArray()
        : Array.ConvertAll(new ReadOnlySpan<Half>((Half*)logits + offset, v).ToArray(), h => (float)h);

    /// <summary>The CPU engine's rows for the same canvases, from each prompt's end.</summary>
    public static float[][][] Reference(OnnxDenoiser cpu, int[][] canvases, int[] promptLengths)
    {
        var request = new DenoiseRequest(1, Enumerable.Range(0, canvases.Length).ToArray(), canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray())
        {
            LogitsFrom = promptLengths,
        };
        IReadOnlyList<SequenceLogits> logits = cpu.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return Enumerable.Range(0, canvases.Length).Select(b => Enumerable.Range(promptLengths[b], canvases[b].Length - promptLengths[b])
            .Select(p => logits[b].ElementType == LogitsElementType.Float32 ? logits[b].Float32Row(p).ToArray()
                : Array.ConvertAll(logits[b].Float16Row(p).ToArray(), h => (float)h)).ToArray()).ToArray();
    }
}
