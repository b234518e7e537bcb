using Saber.Native;
using Saber.Native.Bindings.Tests;

namespace Saber.Cuda.Tests;

/// <summary>The CUDA context for tests that need a GPU; they are ignored, with the reason, where there is none.</summary>
internal static class GpuFixture
{
    private static readonly Lazy<(CudaContext? Context, string Reason)> Shared = new(Open);

    public static CudaContext Require()
    {
        NativeLibraryFixture.Require();
        var (context, reason) = Shared.Value;
        if (context is null) Assert.Ignore(reason);
        return context!;
    }

    private static (CudaContext?, string) Open()
    {
        try
        {
            return (CudaContext.Create(), "");
        }
        catch (SaberNativeException e) when (e.Status is SaberStatus.ErrorNoDevice or SaberStatus.ErrorCuda)
        {
            return (null, $"no usable CUDA device on this machine: {e.Message}");
        }
    }
}
