using Saber.Cuda;
using Saber.Cuda.Tests;
using Saber.Tests;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>
/// The engine on a real GPU (ignored, with the reason, where there is none or the CUDA 13 / cuDNN 9 libraries are missing):
/// the CUDA provider's logits against the CPU engine's within a tolerance, and the exact-arithmetic promise: the CUDA
/// sampler on the device logits decodes exactly as the CPU sampler on the same logits copied back.
/// </summary>
public sealed class DeviceEngineTests
{
    /// <summary>
    /// float32 graphs on both providers without TF32: the difference is summation order only. Measured on the fixtures it is
    /// expected around 1e-6 of the logits' scale; 1e-3 absolute leaves room for cuBLAS's choice of kernel.
    /// </summary>
    private const float Tolerance = 1e-3f;

    private static (CudaContext Context, OnnxDeviceDenoiser Engine) Require(string model, ExecutionProvider provider = ExecutionProvider.Cuda)
    {
        CudaContext context = GpuFixture.Require();
        IReadOnlyList<string> missing = GpuRuntime.Missing(provider, context.Device);
        if (missing.Count > 0) Assert.Ignore($"{provider} cannot run here: {string.Join("; ", missing)}");
        return (context, OnnxDeviceDenoiser.Load(context, TestModels.ModelFile(model), new OnnxEngineOptions { Provider = provider, DeviceId = context.Device }));
    }

    [TestCase("tiny")]
    [TestCase("llada")]
    [TestCase("dream")]
    public void CudaLogitsAreTheCpuEnginesWithinTolerance(string model)
    {
        var (context, engine) = Require(model);
        using (engine)
        using (OnnxDenoiser cpu = OnnxDenoiser.Load(TestModels.ModelFile(model)))
        {
            int[] promptLengths = [3, 7];
            int[][] canvases = TestModels.Canvases(cpu.VocabularySize, cpu.MaskId, promptLengths, 8, seed: 5);
            float[][][] expected = HostDevice.Reference(cpu, canvases, promptLengths);
            float[][][] actual = DeviceLogits(context, engine, canvases, promptLengths);
            for (int b = 0; b < canvases.Length; b++)
                for (int r = 0; r < expected[b].Length; r++)
                    for (int v = 0; v < expected[b][r].Length; v++)
                        Assert.That(actual[b][r][v], Is.EqualTo(expected[b][r][v]).Within(Tolerance), $"sequence {b}, position {promptLengths[b] + r}, id {v}");
        }
    }

    [Test]
    public async Task TheCudaSamplerOnDeviceLogitsIsTheCpuSamplerOnTheSameLogits()
    {
        var (context, engine) = Require("llada");
        using (engine)
        {
            var recorder = new RecordingEngine(context, engine);
            ReadOnlyMemory<int>[] prompts = TestModels.Canvases(engine.VocabularySize, engine.MaskId, [4, 9], 0, seed: 8).Select(p => (ReadOnlyMemory<int>)p).ToArray();
            var options = new DecodeOptions { GenerationLength = 16, BlockLength = 8, Trace = true };
            DecodeResult gpu = await new CudaSampler(context).DecodeAsync(recorder, prompts, options);
            DecodeResult cpu = await new CpuSampler().DecodeAsync(new Replay(recorder), prompts, options);
            TraceComparison.AssertIdenticalDecode(cpu, gpu);
        }
    }

    /// <summary>Per sequence, the rows from its prompt's end, read back from the device after the engine wrote them.</summary>
    private static float[][][] DeviceLogits(CudaContext context, OnnxDeviceDenoiser engine, int[][] canvases, int[] promptLengths)
    {
        int batch = canvases.Length, length = canvases.Max(c => c.Length), v = engine.VocabularySize;
        using DeviceBuffer ids = DeviceBuffer.Create(context, (ulong)(4L * batch * length));
        using DeviceBuffer logits = DeviceBuffer.Create(context, (ulong)(4L * batch * length * v));
        var host = new int[batch * length];
        Array.Fill(host, engine.MaskId);
        for (int b = 0; b < batch; b++) canvases[b].CopyTo(host, b * length);
        ids.Upload<int>(host);
        engine.ForwardAsync(new GpuForwardRequest(1, batch, length, canvases.Select(c => c.Length).ToArray(), ids.Pointer, logits.Pointer, context.Stream)
            { LogitsFrom = promptLengths }, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        context.Synchronize();
        var all = new float[batch * length * v];
        logits.Download<float>(all);
        return Enumerable.Range(0, batch).Select(b => Enumerable.Range(promptLengths[b], canvases[b].Length - promptLengths[b])
            .Select(p => all.AsSpan((b * length + p) * v, v).ToArray()).ToArray()).ToArray();
    }

    /// <summary>The engine, with each step's logits rows copied back to the host after the pass (a test-only wait per step).</summary>
    private sealed class RecordingEngine(CudaContext context, OnnxDeviceDenoiser inner) : IGpuDenoiser
    {
        public List<float[][]> Steps { get; } = [];
        public int VocabularySize => inner.VocabularySize;
        public int MaskId => inner.MaskId;
        public LogitsElementType ElementType => inner.ElementType;

        public async ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
        {
            await inner.ForwardAsync(request, cancellationToken);
            context.Synchronize();
            var all = new float[(long)request.Batch * request.Length * VocabularySize];
            context.CopyToHost<float>(request.Logits, all);
            Steps.Add(Enumerable.Range(0, request.Batch).Select(b => all.AsSpan(b * request.Length * VocabularySize, request.Length * VocabularySize).ToArray()).ToArray());
        }
    }

    /// <summary>The recorded logits, step by step, as a host denoiser for the CPU sampler.</summary>
    private sealed class Replay(RecordingEngine recorded) : IDenoiser
    {
        public int VocabularySize => recorded.VocabularySize;
        public int MaskId => recorded.MaskId;

        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
        {
            float[][] step = recorded.Steps[request.Step - 1];
            // From each prompt's end: rows before it were never written for a lone sequence.
            return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(request.SequenceIds.Select((b, i) =>
            {
                int from = request.LogitsFrom?[i] ?? 0, rows = request.Canvases[i].Length - from;
                return SequenceLogits.FromFloat32(step[b].AsMemory(from * VocabularySize, rows * VocabularySize), rows, VocabularySize, from);
            }).ToArray());
        }
    }
}
