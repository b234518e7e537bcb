using Saber.Native;

namespace Saber.Cuda;

/// <summary>A CUDA device and the stream every step of a <see cref="CudaSampler"/> runs on.</summary>
public sealed unsafe class CudaContext : IDisposable
{
    private CudaContext(ContextHandle handle, int device)
    {
        Handle = handle;
        Device = device;
    }

    internal ContextHandle Handle { get; }

    /// <summary>The CUDA device index.</summary>
    public int Device { get; }

    /// <summary>The context's <c>cudaStream_t</c>: GPU engines enqueue their forward pass on it.</summary>
    public nint Stream
    {
        get
        {
            void* stream;
            NativeStatus.Check(SaberNative.ContextStream(Handle.Value, &stream), "saber_context_stream");
            return (nint)stream;
        }
    }

    /// <summary>Opens device <paramref name="device"/>.</summary>
    /// <exception cref="SaberNativeException">No CUDA device, or a library built without CUDA (<see cref="SaberNativeException.Status"/> says which).</exception>
    /// <exception cref="SaberNativeLibraryException">libsaber_native was not found.</exception>
    public static CudaContext Create(int device = 0)
    {
        NativeLibraryResolver.EnsureLoaded();
        var handle = new ContextHandle();
        nint raw;
        NativeStatus.Check(SaberNative.ContextCreate(device, &raw), "saber_context_create");
        handle.Adopt(raw);
        return new CudaContext(handle, device);
    }

    /// <summary>Waits for all work queued on <see cref="Stream"/>.</summary>
    public void Synchronize() => NativeStatus.Check(SaberNative.ContextSynchronize(Handle.Value), "saber_context_synchronize");

    public void Dispose() => Handle.Dispose();
}
