using Saber.Onnx.Gpu.Harness;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>
/// The device engine's forward pass on host memory (the CPU provider through the same binding code), through the shared
/// <see cref="DeviceRun"/>: the canvases laid out as a decode lays them out on the device (int32 [batch, length], mask-padded
/// on the right) and a logits buffer [batch, length, V] filled with NaN, so that a row the engine should have written and
/// did not shows.
/// </summary>
internal static class HostDevice
{
    public static OnnxDeviceDenoiser Load(string modelFile, OnnxEngineOptions? options = null) =>
        OnnxDeviceDenoiser.Load(modelFile, options ?? new OnnxEngineOptions(), new HostModelMemory(), stream: 0, logger: null);

    /// <summary>Per sequence, its logits rows from its prompt's end to its canvas's end, as float32, from one pass on <paramref name="run"/>.</summary>
    /// <param name="sendLogitsFrom">Whether the request says where each sequence's rows start (false: the engine writes every row).</param>
    public static float[][][] Forward(DeviceRun run, int[][] canvases, int[] promptLengths, int step = 1, bool sendLogitsFrom = true) =>
        run.Rows(run.Forward(step, canvases, sendLogitsFrom ? promptLengths : null), canvases.Select(c => c.Length).ToArray(), promptLengths,
            canvases.Max(c => c.Length));

    /// <summary>As <see cref="Forward(DeviceRun, int[][], int[], int, bool)"/>, on buffers of its own.</summary>
    public static float[][][] Forward(OnnxDeviceDenoiser engine, int[][] canvases, int[] promptLengths, bool sendLogitsFrom = true)
    {
        using var run = new DeviceRun(engine, context: null);
        return Forward(run, canvases, promptLengths, sendLogitsFrom: sendLogitsFrom);
    }

    /// <summary>The CPU engine's rows for the same canvases, from each prompt's end.</summary>
    public static float[][][] Reference(OnnxDenoiser cpu, int[][] canvases, int[] promptLengths) => DeviceRun.CpuRows(cpu, canvases, promptLengths);
}
