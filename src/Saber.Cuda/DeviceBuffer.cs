using Saber.Native;

namespace Saber.Cuda;

/// <summary>
/// Device memory on a <see cref="CudaContext"/>'s device (a native <c>saber_buffer</c>): a model's inputs and outputs, a
/// decode's logits. Copies to and from it are ordered on the context's <see cref="CudaContext.Stream"/> and return when
/// done. The context is released only after every buffer created from it, whatever order they are disposed in.
/// </summary>
public sealed unsafe class DeviceBuffer : IDisposable
{
    private readonly BufferHandle handle;
    private readonly nint pointer;

    private DeviceBuffer(BufferHandle handle, nint pointer, ulong bytes)
    {
        this.handle = handle;
        this.pointer = pointer;
        Bytes = bytes;
    }

    /// <summary>Allocates <paramref name="bytes"/> of device memory on <paramref name="context"/>'s device (not initialized).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bytes"/> is 0.</exception>
    /// <exception cref="SaberNativeException">The allocation failed (<see cref="SaberStatus.ErrorOutOfMemory"/>) or another CUDA error.</exception>
    public static DeviceBuffer Create(CudaContext context, ulong bytes)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (bytes == 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A device buffer must hold at least 1 byte; got 0 bytes.");
        var handle = new BufferHandle();
        nint raw;
        NativeStatus.Check(SaberNative.BufferCreate(context.Handle.Value, bytes, &raw), "saber_buffer_create");
        handle.Adopt(raw, context.Handle);
        void* device;
        try
        {
            NativeStatus.Check(SaberNative.BufferDevicePointer(handle.Value, &device), "saber_buffer_device_pointer");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new DeviceBuffer(handle, (nint)device, bytes);
    }

    /// <summary>The buffer's device address.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public nint Pointer
    {
        get
        {
            _ = handle.Value;   // throws once disposed: a freed address is never handed out
            return pointer;
        }
    }

    /// <summary>The buffer's size in bytes.</summary>
    public ulong Bytes { get; }

    /// <summary>
    /// Copies <paramref name="source"/> into the buffer at <paramref name="offsetBytes"/>, ordered after the work queued on
    /// the context's stream; returns when the copy is done.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The copy does not fit inside the buffer.</exception>
    public void Upload<T>(ReadOnlySpan<T> source, ulong offsetBytes = 0) where T : unmanaged
    {
        ulong bytes = CheckRange((ulong)source.Length * (ulong)sizeof(T), offsetBytes, nameof(source));
        if (bytes == 0) return;
        fixed (T* p = source)
            NativeStatus.Check(SaberNative.BufferUpload(handle.Value, offsetBytes, p, bytes), "saber_buffer_upload");
    }

    /// <summary>
    /// Fills <paramref name="destination"/> from the buffer at <paramref name="offsetBytes"/>, ordered after the work queued
    /// on the context's stream (so it sees what queued kernels wrote); returns when the copy is done.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The copy does not fit inside the buffer.</exception>
    public void Download<T>(Span<T> destination, ulong offsetBytes = 0) where T : unmanaged
    {
        ulong bytes = CheckRange((ulong)destination.Length * (ulong)sizeof(T), offsetBytes, nameof(destination));
        if (bytes == 0) return;
        fixed (T* p = destination)
            NativeStatus.Check(SaberNative.BufferDownload(handle.Value, offsetBytes, p, bytes), "saber_buffer_download");
    }

    /// <summary>The copy's size in bytes when [offset, offset + bytes) lies inside the buffer.</summary>
    private ulong CheckRange(ulong bytes, ulong offsetBytes, string span)
    {
        ObjectDisposedException.ThrowIf(handle.IsClosed, this);
        if (offsetBytes > Bytes)
            throw new ArgumentOutOfRangeException(nameof(offsetBytes), offsetBytes, $"The offset {offsetBytes} lies past the end of the {Bytes}-byte buffer.");
        if (bytes > Bytes - offsetBytes)
            throw new ArgumentOutOfRangeException(span, $"{bytes} bytes at offset {offsetBytes} do not fit in the {Bytes}-byte buffer ({Bytes - offsetBytes} bytes left).");
        return bytes;
    }

    /// <summary>Frees the device memory (<c>cudaFree</c>, which waits for the device's queued work); idempotent.</summary>
    public void Dispose() => handle.Dispose();
}
