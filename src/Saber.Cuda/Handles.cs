using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>Owns one native handle; released exactly once, also when the owner forgets to dispose.</summary>
internal abstract class NativeHandle() : SafeHandle(0, ownsHandle: true)
{
    public override bool IsInvalid => handle == 0;

    /// <summary>The raw handle for a native call; throws when disposed instead of passing a dead pointer.</summary>
    public nint Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed || IsInvalid, this);
            return handle;
        }
    }

    public void Adopt(nint value) => SetHandle(value);
}

internal sealed class ContextHandle : NativeHandle
{
    protected override bool ReleaseHandle() => SaberNative.ContextDestroy(handle) == SaberStatus.Ok;
}

internal sealed class BufferHandle : NativeHandle
{
    protected override bool ReleaseHandle() => SaberNative.BufferDestroy(handle) == SaberStatus.Ok;
}

internal sealed class DecodeHandle : NativeHandle
{
    protected override bool ReleaseHandle() => SaberNative.DecodeDestroy(handle) == SaberStatus.Ok;
}

internal sealed class EngineHandle : NativeHandle
{
    protected override bool ReleaseHandle() => SaberNative.EngineDestroy(handle) == SaberStatus.Ok;
}
