using System.Runtime.InteropServices;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>A libsaber_native call failed for a reason other than a bad argument or bad logits.</summary>
public sealed class SaberNativeException(SaberStatus status, string message) : Exception(message)
{
    /// <summary>The native status code.</summary>
    public SaberStatus Status { get; } = status;
}

/// <summary>The one path from a native status to an exception, carrying the native thread's message.</summary>
internal static class NativeStatus
{
    public static void Check(SaberStatus status, string call)
    {
        if (status == SaberStatus.Ok) return;
        string message = LastError();
        if (message.Length == 0) message = $"{call} returned {status}";
        throw status switch
        {
            SaberStatus.ErrorInvalidArgument => new ArgumentException(message),
            SaberStatus.ErrorInvalidLogits => new InvalidLogitsException(message),
            _ => new SaberNativeException(status, message),
        };
    }

    public static unsafe string LastError() => Marshal.PtrToStringUTF8((nint)SaberNative.LastError()) ?? "";
}
