using Saber.Cuda;
using Saber.Cuda.Tests;
using Saber.Onnx.Gpu.Harness;
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
            using var run = new DeviceRun(engine, context);
            float[][][] actual = HostDevice.Forward(run, canvases, promptLengths);
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
            var recorder = new RecordingDenoiser(engine, context);
            ReadOnlyMemory<int>[] prompts = TestModels.Canvases(engine.VocabularySize, engine.MaskId, [4, 9], 0, seed: 8).Select(p => (ReadOnlyMemory<int>)p).ToArray();
            var options = new DecodeOptions { GenerationLength = 16, BlockLength = 8, Trace = true };
            DecodeResult gpu = await new CudaSampler(context).DecodeAsync(recorder, prompts, options);
            var replay = new ReplayDenoiser(recorder);
            DecodeResult cpu = await new CpuSampler().DecodeAsync(replay, prompts, options);
            TraceComparison.AssertIdenticalDecode(cpu, gpu);
            Assert.That(replay.CanvasMismatches, Is.Zero, "the CPU sampler asked for the device decode's canvases at every step");
        }
    }
}
