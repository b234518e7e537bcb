using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Saber.Cuda;

namespace Saber.Onnx.Gpu;

/// <summary>
/// A model directory on a GPU for <see cref="CudaSampler"/>: the CUDA context, <c>model.onnx</c> on ONNX Runtime's CUDA or
/// TensorRT provider writing logits in place (<see cref="OnnxDeviceDenoiser"/>), and the directory's tokenizer; the device
/// counterpart of <see cref="LocalModel"/>.
/// </summary>
public sealed class LocalDeviceModel : IDisposable
{
    private LocalDeviceModel(CudaContext context, OnnxDeviceDenoiser denoiser, IModelTokenizer tokenizer)
    {
        Context = context;
        Denoiser = denoiser;
        Tokenizer = tokenizer;
    }

    public CudaContext Context { get; }
    public OnnxDeviceDenoiser Denoiser { get; }
    public IModelTokenizer Tokenizer { get; }

    /// <summary>Opens <paramref name="directory"/> on device <see cref="OnnxEngineOptions.DeviceId"/> with the options' GPU provider.</summary>
    /// <exception cref="GpuUnavailableException">This process cannot run the provider; checked first, before any CUDA call.</exception>
    /// <exception cref="SaberNativeException">libsaber_native cannot open the device (a build without CUDA, say).</exception>
    public static LocalDeviceModel Open(string directory, OnnxEngineOptions options, ILoggerFactory? logging = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Provider == ExecutionProvider.Cpu)
            throw new ArgumentException("A device model runs the CUDA or TensorRT provider; for the CPU open LocalModel.", nameof(options));
        options.Validate();
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"No model directory '{directory}'.");
        GpuRuntime.Require(options.Provider, options.DeviceId);
        logging ??= NullLoggerFactory.Instance;
        CudaContext context = CudaContext.Create(options.DeviceId);
        OnnxDeviceDenoiser? denoiser = null;
        try
        {
            denoiser = OnnxDeviceDenoiser.Load(context, Path.Combine(directory, LocalModel.ModelFileName), options, logging.CreateLogger<OnnxDeviceDenoiser>());
            return new LocalDeviceModel(context, denoiser, LocalModel.OpenTokenizerFor(directory, denoiser.VocabularySize, denoiser.MaskId));
        }
        catch
        {
            denoiser?.Dispose();
            context.Dispose();
            throw;
        }
    }

    /// <summary>The denoiser, then the context it runs on.</summary>
    public void Dispose()
    {
        Denoiser.Dispose();
        Context.Dispose();
    }
}
