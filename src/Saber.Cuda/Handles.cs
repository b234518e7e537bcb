using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>Owns one native handle; released exactly once, also when the owner forgets to dispose.</summary>
internal abstract class NativeHandle() : SafeHandle(0, ownsHandle: true)
{
    /// <summary>The handle this one was created from (a buffer's or decode's context), kept alive until this one is released.</summary>
    private NativeHandle? owner;

    /// <summary>Set by <c>Dispose</c>; the native release may wait for the handles adopted from this one.</summary>
    private volatile bool disposed;

    public override bool IsInvalid => handle == 0;

    /// <summary>The raw handle for a native call; throws when disposed instead of passing a dead pointer.</summary>
    public nint Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(disposed || IsClosed || IsInvalid, this);
            return handle;
        }
    }

    public void Adopt(nint value) => SetHandle(value);

    /// <summary>
    /// Adopts <paramref name="value"/>, created from <paramref name="owner"/>'s native handle. The owner's native handle is
    /// released only after this one, whatever order <c>Dispose</c> calls or finalizers run in: <c>saber_context_destroy</c>
    /// refuses a context whose buffers or decodes are alive.
    /// </summary>
    public void Adopt(nint value, NativeHandle owner)
    {
        bool added = false;
        try
        {
            owner.DangerousAddRef(ref added);   // throws when the owner was disposed meanwhile
        }
        finally
        {
            if (!added) Destroy(value);
        }
        this.owner = owner;
        SetHandle(value);
    }

    protected override void Dispose(bool disposing)
    {
        disposed = true;
        base.Dispose(disposing);
    }

    protected sealed override bool ReleaseHandle()
    {
        bool released = Destroy(handle);
        var o = owner;
        owner = null;
        o?.DangerousRelease();   // now the owner's native handle may go
        return released;
    }

    /// <summary>The native destroy call.</summary>
    protected abstract bool Destroy(nint value);
}

internal sealed class ContextHandle : NativeHandle
{
    protected override bool Destroy(nint value) => SaberNative.ContextDestroy(value) == SaberStatus.Ok;
}

internal sealed class BufferHandle : NativeHandle
{
    protected override bool Destroy(nint value) => SaberNative.BufferDestroy(value) == SaberStatus.Ok;
}

internal sealed class DecodeHandle : NativeHandle
{
    protected override bool Destroy(nint value) => SaberNative.DecodeDestroy(value) == SaberStatus.Ok;
}
