using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx;

/// <summary>Where ONNX Runtime runs a model.</summary>
public enum ExecutionProvider
{
    /// <summary>ONNX Runtime's CPU provider (the default; package Microsoft.ML.OnnxRuntime).</summary>
    Cpu,

    /// <summary>ONNX Runtime's CUDA provider on an NVIDIA GPU (package Microsoft.ML.OnnxRuntime.Gpu.Linux, through Saber.Onnx.Gpu).</summary>
    Cuda,

    /// <summary>ONNX Runtime's TensorRT provider, with the CUDA provider for the nodes TensorRT does not take.</summary>
    TensorRt,
}

/// <summary>The arithmetic a GPU provider may use for the model's float32 parts.</summary>
public enum GpuPrecision
{
    /// <summary>The graph's own types (what <c>saber import --dtype</c> wrote); float32 math is not lowered to TF32.</summary>
    Model,

    /// <summary>TensorRT may run layers in float16 (<c>trt_fp16_enable</c>); TensorRT only.</summary>
    Float16,

    /// <summary>TensorRT may run layers in bfloat16 (<c>trt_bf16_enable</c>); TensorRT only.</summary>
    BFloat16,
}

/// <summary>
/// The ONNX Runtime provider options of an <see cref="OnnxEngineOptions"/>: the one place that turns the engine's settings
/// into the names ONNX Runtime 1.32's CUDA and TensorRT providers read (their <c>*_provider_options</c> parsers).
/// </summary>
public static class ExecutionProviders
{
    /// <summary>The folder of a model directory where TensorRT keeps its engines and timing cache, so that it builds them once.</summary>
    public const string EngineCacheFolder = "engine-cache";

    /// <summary>ONNX Runtime's name of a provider (what <c>OrtEnv.GetAvailableProviders</c> lists).</summary>
    public static string OrtName(ExecutionProvider provider) => provider switch
    {
        ExecutionProvider.Cpu => "CPUExecutionProvider",
        ExecutionProvider.Cuda => "CUDAExecutionProvider",
        ExecutionProvider.TensorRt => "TensorrtExecutionProvider",
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, "Not an ExecutionProvider."),
    };

    /// <summary>The name the CLI and configuration use: <c>onnx</c>, <c>onnx-cuda</c>, <c>onnx-tensorrt</c>.</summary>
    public static string EngineName(ExecutionProvider provider) => provider switch
    {
        ExecutionProvider.Cpu => "onnx",
        ExecutionProvider.Cuda => "onnx-cuda",
        ExecutionProvider.TensorRt => "onnx-tensorrt",
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, "Not an ExecutionProvider."),
    };

    /// <summary>The provider of an engine name (<see cref="EngineName"/>).</summary>
    /// <exception cref="ArgumentException">Not one of the names.</exception>
    public static ExecutionProvider FromEngineName(string name) =>
        TryFromEngineName(name) ?? throw new ArgumentException($"The engine must be onnx, onnx-cuda or onnx-tensorrt; got '{name}'.", nameof(name));

    /// <summary>The provider of an engine name, or null when it is not one.</summary>
    public static ExecutionProvider? TryFromEngineName(string? name) =>
        Enum.GetValues<ExecutionProvider>().Cast<ExecutionProvider?>().FirstOrDefault(p => EngineName(p!.Value) == name);

    /// <summary>The names the CLI and configuration use for <see cref="GpuPrecision"/>: <c>model</c>, <c>fp16</c>, <c>bf16</c>.</summary>
    public static IReadOnlyDictionary<string, GpuPrecision> PrecisionNames { get; } = new Dictionary<string, GpuPrecision>
    {
        ["model"] = GpuPrecision.Model,
        ["fp16"] = GpuPrecision.Float16,
        ["bf16"] = GpuPrecision.BFloat16,
    };

    /// <summary>The engine cache folder of a model file: <see cref="OnnxEngineOptions.EngineCacheDirectory"/>, else <see cref="EngineCacheFolder"/> beside it.</summary>
    public static string EngineCacheDirectory(OnnxEngineOptions options, string modelPath) =>
        options.EngineCacheDirectory ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, EngineCacheFolder);

    /// <summary>Checks the GPU settings of <paramref name="options"/> that need no GPU to check.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative device, a precision the provider does not take, or an unknown enum value.</exception>
    public static void Validate(OnnxEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!Enum.IsDefined(options.Provider))
            throw new ArgumentOutOfRangeException(nameof(options.Provider), options.Provider, "Not an ExecutionProvider.");
        if (!Enum.IsDefined(options.Precision))
            throw new ArgumentOutOfRangeException(nameof(options.Precision), options.Precision, "Not a GpuPrecision.");
        if (options.DeviceId < 0)
            throw new ArgumentOutOfRangeException(nameof(options.DeviceId), options.DeviceId, $"The CUDA device must be >= 0; got {options.DeviceId}.");
        if (options.Precision != GpuPrecision.Model && options.Provider != ExecutionProvider.TensorRt)
            throw new ArgumentOutOfRangeException(nameof(options.Precision), options.Precision,
                $"Precision {options.Precision} needs the TensorRT provider (engine onnx-tensorrt); the {EngineName(options.Provider)} engine runs the graph's " +
                "own types (saber import --dtype fp16|bf16 writes a half-precision graph).");
    }

    /// <summary>The CUDA provider's options: the device, the caller's stream when given (0: the provider's own), no TF32.</summary>
    public static IReadOnlyDictionary<string, string> CudaOptions(OnnxEngineOptions options, nint stream)
    {
        var values = new Dictionary<string, string>
        {
            ["device_id"] = options.DeviceId.ToString(CultureInfo.InvariantCulture),
            // TF32 matmuls would round float32 inputs to 10 mantissa bits: the logits would drift from the CPU engine's by far more
            // than float32 reordering does.
            ["use_tf32"] = "0",
        };
        AddStream(values, stream);
        return values;
    }

    /// <summary>
    /// The TensorRT provider's options: the device, the caller's stream, precision flags, and the engine and timing caches in
    /// <see cref="EngineCacheDirectory"/> (TensorRT builds an engine per model and shape profile once and loads it afterwards).
    /// </summary>
    public static IReadOnlyDictionary<string, string> TensorRtOptions(OnnxEngineOptions options, string modelPath, nint stream)
    {
        string cache = EngineCacheDirectory(options, modelPath);
        var values = new Dictionary<string, string>
        {
            ["device_id"] = options.DeviceId.ToString(CultureInfo.InvariantCulture),
            ["trt_engine_cache_enable"] = "1",
            ["trt_engine_cache_path"] = cache,
            ["trt_timing_cache_enable"] = "1",
            ["trt_timing_cache_path"] = cache,
            ["trt_fp16_enable"] = options.Precision == GpuPrecision.Float16 ? "1" : "0",
            ["trt_bf16_enable"] = options.Precision == GpuPrecision.BFloat16 ? "1" : "0",
        };
        AddStream(values, stream);
        return values;
    }

    private static void AddStream(Dictionary<string, string> values, nint stream)
    {
        if (stream == 0) return;
        values["has_user_compute_stream"] = "1";
        values["user_compute_stream"] = ((ulong)stream).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Appends the provider of <paramref name="options"/> to a session's options (nothing for the CPU), after checking that
    /// this machine can run it (<see cref="GpuRuntime.Require"/>); <paramref name="stream"/>: a <c>cudaStream_t</c> ONNX Runtime
    /// must run on, or 0.
    /// </summary>
    /// <exception cref="GpuUnavailableException">The GPU build of ONNX Runtime, a library it needs, the driver or the device is missing.</exception>
    public static void Append(SessionOptions session, OnnxEngineOptions options, string modelPath, nint stream = 0)
    {
        ArgumentNullException.ThrowIfNull(session);
        Validate(options);
        if (options.Provider == ExecutionProvider.Cpu) return;
        GpuRuntime.Require(options.Provider, options.DeviceId);
        try
        {
            if (options.Provider == ExecutionProvider.TensorRt)
            {
                Directory.CreateDirectory(EngineCacheDirectory(options, modelPath));
                using var trt = new OrtTensorRTProviderOptions();
                trt.UpdateOptions(new Dictionary<string, string>(TensorRtOptions(options, modelPath, stream)));
                session.AppendExecutionProvider_Tensorrt(trt);
            }
            // The CUDA provider runs what TensorRT does not take (after it, so TensorRT gets the first pick).
            using var cuda = new OrtCUDAProviderOptions();
            cuda.UpdateOptions(new Dictionary<string, string>(CudaOptions(options, stream)));
            session.AppendExecutionProvider_CUDA(cuda);
        }
        catch (OnnxRuntimeException e)
        {
            throw new GpuUnavailableException(options.Provider, [$"ONNX Runtime could not start the provider: {e.Message}"], e);
        }
    }
}
