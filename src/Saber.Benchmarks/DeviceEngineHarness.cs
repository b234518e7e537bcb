using System.Diagnostics;
using System.Runtime.InteropServices;
using Saber.Cuda;

namespace Saber.Onnx.Gpu.Harness;

// The device engine driven from outside a sampler, shared as source by the gpu-forward benchmark (bench/run_gpu.sh) and
// tests/Saber.Onnx.Gpu.Tests: one forward pass laid out as a decode lays it out, the binding code behind the host
// contract, and a GPU decode's logits recorded and replayed to the CPU sampler.

/// <summary>
/// One forward pass of the device engine as a decode runs it: int32 canvases [B, L] (mask-padded on the right) and a
/// logits buffer [B, L, V], in device memory (<see cref="DeviceBuffer"/>s on the context) or, without a context, in host
/// memory for the CPU provider; the logits come back as raw bytes.
/// </summary>
internal sealed unsafe class DeviceRun(OnnxDeviceDenoiser engine, CudaContext? context) : IDisposable
{
    private readonly int elementBytes = engine.ElementType switch
    {
        LogitsElementType.Float32 => 4,
        LogitsElementType.Float16 => 2,
        _ => throw new NotSupportedException($"gpu-forward compares float32 and float16 logits; the model's are {engine.ElementType}."),
    };
    private DeviceBuffer? deviceIds, deviceLogits;
    private nint hostIds, hostLogits;
    private long idsBytes, logitsBytes;

    public OnnxDeviceDenoiser Engine => engine;

    /// <summary>Wall time of the last <see cref="Forward"/>'s engine call (with a context: until the stream is idle).</summary>
    public double LastForwardMs { get; private set; }

    /// <summary>
    /// Raw logits [B, L, V] of the canvases (each padded to the batch's pitch with the mask id); <paramref name="logitsFrom"/> is the
    /// request's <see cref="GpuForwardRequest.LogitsFrom"/> (null: every row).
    /// </summary>
    public byte[] Forward(int step, int[][] canvases, int[]? logitsFrom)
    {
        int count = canvases.Length, length = canvases.Max(c => c.Length), v = engine.VocabularySize;
        var ids = new int[count * length];
        ids.AsSpan().Fill(engine.MaskId);
        for (int b = 0; b < count; b++) canvases[b].CopyTo(ids.AsSpan(b * length));
        long logitsSize = (long)count * length * v * elementBytes;
        byte[] nan = NaNs(logitsSize);
        nint idsAt = Reserve(ref deviceIds, ref hostIds, ref idsBytes, 4L * ids.Length);
        nint logitsAt = Reserve(ref deviceLogits, ref hostLogits, ref logitsBytes, logitsSize);
        if (context is null)
        {
            ids.AsSpan().CopyTo(new Span<int>((void*)idsAt, ids.Length));
            nan.AsSpan().CopyTo(new Span<byte>((void*)logitsAt, nan.Length));
        }
        else
        {
            deviceIds!.Upload<int>(ids);
            deviceLogits!.Upload<byte>(nan);
        }
        var request = new GpuForwardRequest(step, count, length, canvases.Select(c => c.Length).ToArray(), idsAt, logitsAt, context?.Stream ?? 0)
        {
            LogitsFrom = logitsFrom,
        };
        long start = Stopwatch.GetTimestamp();
        engine.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        context?.Synchronize();
        LastForwardMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        var raw = new byte[logitsSize];
        if (context is null) new ReadOnlySpan<byte>((void*)logitsAt, raw.Length).CopyTo(raw);
        else deviceLogits!.Download<byte>(raw);
        return raw;
    }

    private byte[]? nanCache;

    private byte[] NaNs(long bytes)
    {
        if (nanCache is not null && nanCache.LongLength == bytes) return nanCache;
        var data = new byte[bytes];
        if (elementBytes == 4) MemoryMarshal.Cast<byte, float>(data.AsSpan()).Fill(float.NaN);
        else MemoryMarshal.Cast<byte, Half>(data.AsSpan()).Fill(Half.NaN);
        return nanCache = data;
    }

    /// <summary>A block of at least <paramref name="bytes"/>, kept across calls so that the engine's binding is kept too.</summary>
    private nint Reserve(ref DeviceBuffer? device, ref nint host, ref long size, long bytes)
    {
        if (bytes <= size) return context is null ? host : device!.Pointer;
        size = bytes;
        if (context is null)
        {
            NativeMemory.AlignedFree((void*)host);
            host = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            return host;
        }
        device?.Dispose();
        device = DeviceBuffer.Create(context, (ulong)bytes);
        return device.Pointer;
    }

    /// <summary>Per sequence b, its rows from <paramref name="logitsFrom"/>[b] to its canvas's end in raw logits of pitch <paramref name="length"/>, as float32.</summary>
    public float[][][] Rows(byte[] raw, int[] sequenceLengths, int[] logitsFrom, int length) =>
        Enumerable.Range(0, sequenceLengths.Length).Select(b => Enumerable.Range(logitsFrom[b], sequenceLengths[b] - logitsFrom[b])
            .Select(p => Row(raw, ((long)b * length + p) * engine.VocabularySize)).ToArray()).ToArray();

    private float[] Row(byte[] raw, long element)
    {
        int v = engine.VocabularySize;
        ReadOnlySpan<byte> bytes = raw.AsSpan((int)(element * elementBytes), v * elementBytes);
        return elementBytes == 4 ? MemoryMarshal.Cast<byte, float>(bytes).ToArray()
            : Array.ConvertAll(MemoryMarshal.Cast<byte, Half>(bytes).ToArray(), h => (float)h);
    }

    /// <summary>The CPU engine's rows for the same canvases, per sequence b from <paramref name="logitsFrom"/>[b], as float32.</summary>
    public static float[][][] CpuRows(OnnxDenoiser cpu, int[][] canvases, int[] logitsFrom)
    {
        var request = new DenoiseRequest(1, Enumerable.Range(0, canvases.Length).ToArray(), canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray())
        {
            LogitsFrom = logitsFrom,
        };
        IReadOnlyList<SequenceLogits> logits = cpu.ForwardAsync(request, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return Enumerable.Range(0, canvases.Length).Select(b => Enumerable.Range(logitsFrom[b], canvases[b].Length - logitsFrom[b])
            .Select(p => logits[b].ElementType == LogitsElementType.Float32 ? logits[b].Float32Row(p).ToArray()
                : Array.ConvertAll(logits[b].Float16Row(p).ToArray(), h => (float)h)).ToArray()).ToArray();
    }

    public void Dispose()
    {
        deviceIds?.Dispose();
        deviceLogits?.Dispose();
        NativeMemory.AlignedFree((void*)hostIds);
        NativeMemory.AlignedFree((void*)hostLogits);
    }
}

/// <summary>The device engine's binding code behind the host contract (dry run): each call lays the canvases out as a decode does.</summary>
internal sealed class HostDeviceDenoiser(DeviceRun run) : IDenoiser
{
    public int VocabularySize => run.Engine.VocabularySize;
    public int MaskId => run.Engine.MaskId;

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        int[][] canvases = request.Canvases.Select(c => c.ToArray()).ToArray();
        int[] from = request.LogitsFrom?.ToArray() ?? new int[canvases.Length];
        byte[] raw = run.Forward(request.Step, canvases, from);
        float[][][] rows = run.Rows(raw, canvases.Select(c => c.Length).ToArray(), from, canvases.Max(c => c.Length));
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(rows.Select((r, b) =>
            SequenceLogits.FromFloat32(r.SelectMany(x => x).ToArray(), r.Length, VocabularySize, from[b])).ToArray());
    }
}

/// <summary>One step of the GPU decode as the host saw it after synchronising: canvases [B, L] and raw logits [B, L, V].</summary>
internal sealed record RecordedStep(GpuForwardRequest Request, int[] Canvases, byte[] Logits);

/// <summary>The device engine, then a synchronisation and copies of the step's canvases and logits to the host.</summary>
internal sealed class RecordingDenoiser(OnnxDeviceDenoiser engine, CudaContext context) : IGpuDenoiser
{
    public List<RecordedStep> Steps { get; } = [];
    public int VocabularySize => engine.VocabularySize;
    public int MaskId => engine.MaskId;
    public int? MaxSequenceLength => engine.MaxSequenceLength;
    public LogitsElementType ElementType => engine.ElementType;

    public async ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
    {
        await engine.ForwardAsync(request, cancellationToken);
        context.Synchronize();
        var canvases = new int[request.Batch * request.Length];
        context.CopyToHost<int>(request.Canvases, canvases);
        var logits = new byte[(long)request.Batch * request.Length * engine.VocabularySize * (engine.ElementType == LogitsElementType.Float32 ? 4 : 2)];
        context.CopyToHost<byte>(request.Logits, logits);
        Steps.Add(new RecordedStep(request, canvases, logits));
    }
}

/// <summary>The recorded steps as a host denoiser: step k's rows of each asked sequence, from its LogitsFrom on.</summary>
internal sealed class ReplayDenoiser(RecordingDenoiser recording) : IDenoiser
{
    public int VocabularySize => recording.VocabularySize;
    public int MaskId => recording.MaskId;

    /// <summary>Canvases the CPU sampler asked for that differ from the device decode's at the same step.</summary>
    public int CanvasMismatches { get; private set; }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        if (request.Step > recording.Steps.Count)
            throw new InvalidOperationException($"replay: CpuSampler asked for step {request.Step}; the GPU decode made {recording.Steps.Count} forward passes.");
        RecordedStep step = recording.Steps[request.Step - 1];
        int v = VocabularySize, length = step.Request.Length;
        var result = new SequenceLogits[request.SequenceIds.Count];
        for (int i = 0; i < result.Length; i++)
        {
            int b = request.SequenceIds[i], canvasLength = request.Canvases[i].Length;
            int from = request.LogitsFrom?[i] ?? 0;
            if (!request.Canvases[i].Span.SequenceEqual(step.Canvases.AsSpan(b * length, canvasLength))) CanvasMismatches++;
            int rows = canvasLength - from;
            long offset = ((long)b * length + from) * v;
            if (recording.ElementType == LogitsElementType.Float32)
                result[i] = SequenceLogits.FromFloat32(MemoryMarshal.Cast<byte, float>(step.Logits.AsSpan()).Slice((int)offset, rows * v).ToArray(), rows, v, from);
            else
                result[i] = SequenceLogits.FromFloat16(MemoryMarshal.Cast<byte, Half>(step.Logits.AsSpan()).Slice((int)offset, rows * v).ToArray(), rows, v, from);
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}
