using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>
/// A model engine inside libsaber_native (today: TensorRT): its forward pass reads the decode's device
/// canvases and writes logits into the sampler's device buffer on the context's stream, with no host
/// copy between the model and the step kernels. It reads the whole mask-padded <c>[Batch, Length]</c>
/// canvas block: with ragged prompts, a model without an attention mask input sees the padding masks.
/// </summary>
public sealed unsafe class NativeEngine : IGpuDenoiser, IDisposable
{
    private readonly EngineHandle handle;

    private NativeEngine(EngineHandle handle, int vocabulary, int maskId, LogitsElementType type)
    {
        this.handle = handle;
        VocabularySize = vocabulary;
        MaskId = maskId;
        ElementType = type;
    }

    public int VocabularySize { get; }
    public int MaskId { get; }
    public LogitsElementType ElementType { get; }

    /// <summary>Whether libsaber_native was built with TensorRT.</summary>
    public static bool TensorRtAvailable
    {
        get
        {
            NativeLibraryResolver.EnsureLoaded();
            return SaberNative.BuiltWithTensorrt() != 0;
        }
    }

    /// <summary>Loads a serialized TensorRT engine for <paramref name="context"/>'s device.</summary>
    /// <exception cref="SaberNativeException">Built without TensorRT (<see cref="SaberStatus.ErrorUnsupported"/>) or a CUDA failure.</exception>
    /// <exception cref="ArgumentException">The file is missing, not an engine, or its tensors are not the expected ones.</exception>
    public static NativeEngine LoadTensorRt(CudaContext context, string planPath, int maskId)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(planPath);
        var handle = new EngineHandle();
        nint raw;
        nint path = Marshal.StringToCoTaskMemUTF8(planPath);
        try
        {
            NativeStatus.Check(SaberNative.EngineCreateTensorrt(context.Handle.Value, (byte*)path, &raw), "saber_engine_create_tensorrt");
        }
        finally
        {
            Marshal.FreeCoTaskMem(path);
        }
        handle.Adopt(raw, context.Handle);
        int vocabulary, dtype;
        NativeStatus.Check(SaberNative.EngineDescribe(handle.Value, &vocabulary, &dtype), "saber_engine_describe");
        if (maskId < 0 || maskId >= vocabulary)
        {
            handle.Dispose();
            throw new ArgumentOutOfRangeException(nameof(maskId), maskId, $"The mask id must lie in [0, {vocabulary}) (the engine's vocabulary).");
        }
        var type = (SaberDtype)dtype switch
        {
            SaberDtype.Float32 => LogitsElementType.Float32,
            SaberDtype.Float16 => LogitsElementType.Float16,
            _ => LogitsElementType.BFloat16,
        };
        return new NativeEngine(handle, vocabulary, maskId, type);
    }

    /// <inheritdoc />
    public ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        NativeStatus.Check(SaberNative.EngineForward(handle.Value, (void*)request.Canvases, request.Batch, request.Length, (void*)request.Logits),
            "saber_engine_forward");
        return ValueTask.CompletedTask;
    }

    public void Dispose() => handle.Dispose();
}
