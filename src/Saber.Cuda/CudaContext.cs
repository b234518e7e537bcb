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

    /// <summary>The raw <c>saber_context</c> for direct calls through <see cref="SaberNative"/> (benchmarks, tests).</summary>
    public nint NativeHandle => Handle.Value;

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

    /// <summary>
    /// Copies <paramref name="source"/> to device address <paramref name="destination"/>, ordered after the work
    /// queued on <see cref="Stream"/>; returns when the copy is done. The device range must lie inside one allocation.
    /// </summary>
    public void CopyToDevice<T>(ReadOnlySpan<T> source, nint destination) where T : unmanaged
    {
        if (destination == 0) throw new ArgumentException("The device destination is null.", nameof(destination));
        if (source.IsEmpty) return;
        fixed (T* p = source)
            NativeStatus.Check(SaberNative.ContextCopyToDevice(Handle.Value, (void*)destination, p, (ulong)source.Length * (ulong)sizeof(T)),
                "saber_context_copy_to_device");
    }

    /// <summary>Copies <c>destination.Length</c> elements from device address <paramref name="source"/>, like <see cref="CopyToDevice{T}"/>.</summary>
    public void CopyToHost<T>(nint source, Span<T> destination) where T : unmanaged
    {
        if (source == 0) throw new ArgumentException("The device source is null.", nameof(source));
        if (destination.IsEmpty) return;
        fixed (T* p = destination)
            NativeStatus.Check(SaberNative.ContextCopyToHost(Handle.Value, p, (void*)source, (ulong)destination.Length * (ulong)sizeof(T)),
                "saber_context_copy_to_host");
    }

    /// <summary>
    /// Queues on <see cref="Stream"/> a kernel writing <c>long destination[i] = int source[i]</c> for i in [0,
    /// <paramref name="count"/>): the decode's int32 canvases into a model's int64 <c>input_ids</c> (ONNX Runtime) with no
    /// host copy. Returns without waiting; work queued on <see cref="Stream"/> after it sees the widened ids. Capturable in a
    /// CUDA graph. <paramref name="count"/> 0 does nothing. The two device ranges must each lie inside one allocation.
    /// </summary>
    /// <param name="deviceInt32Source">Device address of <paramref name="count"/> int32 values, 4-byte aligned.</param>
    /// <param name="deviceInt64Destination">Device address of room for <paramref name="count"/> int64 values, 8-byte aligned, not overlapping the source.</param>
    /// <param name="count">Values to widen, at least 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    /// <exception cref="ArgumentException">A null address with <paramref name="count"/> &gt; 0; a misaligned address or overlapping
    /// ranges (the native library's message names the value).</exception>
    /// <exception cref="SaberNativeException">The launch failed (a CUDA error).</exception>
    public void WidenIds(nint deviceInt32Source, nint deviceInt64Destination, long count)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, $"The count of ids to widen must be >= 0; got {count}.");
        if (count > 0 && deviceInt32Source == 0)
            throw new ArgumentException($"The device source is null with count {count}.", nameof(deviceInt32Source));
        if (count > 0 && deviceInt64Destination == 0)
            throw new ArgumentException($"The device destination is null with count {count}.", nameof(deviceInt64Destination));
        NativeStatus.Check(SaberNative.ContextWidenIds(Handle.Value, (void*)deviceInt32Source, (void*)deviceInt64Destination, count),
            "saber_context_widen_ids");
    }

    /// <summary>Waits for all work queued on <see cref="Stream"/>.</summary>
    public void Synchronize() => NativeStatus.Check(SaberNative.ContextSynchronize(Handle.Value), "saber_context_synchronize");

    public void Dispose() => Handle.Dispose();
}
