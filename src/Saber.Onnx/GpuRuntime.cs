using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx;

/// <summary>
/// A GPU provider cannot run in this process: <see cref="Missing"/> names each missing piece (the GPU build of ONNX
/// Runtime, a shared library, the driver, the device). The message is one line.
/// </summary>
public sealed class GpuUnavailableException : InvalidOperationException
{
    public GpuUnavailableException(ExecutionProvider provider, IReadOnlyList<string> missing, Exception? inner = null)
        : base($"The {ExecutionProviders.EngineName(provider)} engine cannot run here: {string.Join("; ", missing)}.", inner)
    {
        Provider = provider;
        Missing = missing;
    }

    /// <summary>The provider that was asked for.</summary>
    public ExecutionProvider Provider { get; }

    /// <summary>What is missing, one entry per piece, in the order a user installs them.</summary>
    public IReadOnlyList<string> Missing { get; }
}

/// <summary>
/// Whether this process can run ONNX Runtime's CUDA or TensorRT provider, checked before a session is made so that a machine
/// without them gets one line naming what is missing instead of ONNX Runtime's loader errors. The libraries are the ones the
/// providers of Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0 link against (<c>readelf -d</c> of
/// <c>libonnxruntime_providers_cuda.so</c> and <c>_tensorrt.so</c>): CUDA 13, cuDNN 9 and TensorRT 10.
/// </summary>
public static class GpuRuntime
{
    /// <summary>A shared library a provider needs and what installs it.</summary>
    public sealed record Library(string FileName, string Package);

    /// <summary>The NVIDIA driver's library: without it there is no GPU to use.</summary>
    public static Library Driver { get; } = new("libcuda.so.1", "the NVIDIA driver");

    /// <summary>What the CUDA provider loads (both providers need them).</summary>
    public static IReadOnlyList<Library> CudaLibraries { get; } =
    [
        new("libcudart.so.13", "the CUDA 13 runtime"),
        new("libcublas.so.13", "cuBLAS 13"),
        new("libcublasLt.so.13", "cuBLAS 13"),
        new("libcurand.so.10", "cuRAND (CUDA 13)"),
        new("libcudnn.so.9", "cuDNN 9"),
    ];

    /// <summary>What the TensorRT provider loads besides <see cref="CudaLibraries"/>.</summary>
    public static IReadOnlyList<Library> TensorRtLibraries { get; } =
    [
        new("libnvinfer.so.10", "TensorRT 10"),
        new("libnvonnxparser.so.10", "TensorRT 10's ONNX parser"),
    ];

    /// <summary>The pieces <paramref name="provider"/> needs on device <paramref name="deviceId"/> that this process lacks; empty when it can run.</summary>
    public static IReadOnlyList<string> Missing(ExecutionProvider provider, int deviceId = 0) =>
        Missing(provider, deviceId, OrtEnv.Instance().GetAvailableProviders(), CanLoad, CudaDeviceCount);

    /// <summary>Throws <see cref="GpuUnavailableException"/> when <see cref="Missing(ExecutionProvider, int)"/> is not empty.</summary>
    public static void Require(ExecutionProvider provider, int deviceId = 0)
    {
        IReadOnlyList<string> missing = Missing(provider, deviceId);
        if (missing.Count > 0) throw new GpuUnavailableException(provider, missing);
    }

    /// <summary>The check itself, with the process's facts passed in (tests give each case).</summary>
    /// <param name="ortProviders">The providers the loaded ONNX Runtime was built with.</param>
    /// <param name="canLoad">Whether a shared library loads by file name.</param>
    /// <param name="deviceCount">The CUDA devices the driver reports, or an error text when it reports none.</param>
    internal static IReadOnlyList<string> Missing(ExecutionProvider provider, int deviceId, IReadOnlyCollection<string> ortProviders,
        Func<string, bool> canLoad, Func<(int Count, string? Error)> deviceCount)
    {
        if (provider == ExecutionProvider.Cpu) return [];
        var missing = new List<string>();
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return [$"GPU engines run on Linux x64 only (ONNX Runtime's GPU package); this is {RuntimeInformation.RuntimeIdentifier}"];
        if (!ortProviders.Contains(ExecutionProviders.OrtName(provider)))
            missing.Add("this process's ONNX Runtime is the CPU build (package Microsoft.ML.OnnxRuntime); GPU engines need the GPU build " +
                "(package Microsoft.ML.OnnxRuntime.Gpu.Linux: reference Saber.Native.Onnx.Gpu, or build from source with -p:SaberOnnxRuntime=gpu)");
        bool driver = canLoad(Driver.FileName);
        if (!driver) missing.Add($"no NVIDIA driver ({Driver.FileName} not found)");
        IEnumerable<Library> needed = provider == ExecutionProvider.TensorRt ? CudaLibraries.Concat(TensorRtLibraries) : CudaLibraries;
        // One entry per package, naming its missing files.
        foreach (IGrouping<string, Library> package in needed.Where(l => !canLoad(l.FileName)).GroupBy(l => l.Package))
            missing.Add($"{package.Key} ({string.Join(", ", package.Select(l => l.FileName))} not found)");
        if (driver)
        {
            var (count, error) = deviceCount();
            if (error is not null) missing.Add($"no usable CUDA device ({error})");
            else if (deviceId >= count) missing.Add($"CUDA device {deviceId} (this machine has {count})");
        }
        return missing;
    }

    private static bool CanLoad(string fileName)
    {
        if (!NativeLibrary.TryLoad(fileName, out nint handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }

    /// <summary>cuInit and cuDeviceGetCount from the driver library (the driver API needs no runtime library).</summary>
    private static unsafe (int Count, string? Error) CudaDeviceCount()
    {
        if (!NativeLibrary.TryLoad(Driver.FileName, out nint driver)) return (0, $"{Driver.FileName} not found");
        try
        {
            if (!NativeLibrary.TryGetExport(driver, "cuInit", out nint init) || !NativeLibrary.TryGetExport(driver, "cuDeviceGetCount", out nint getCount))
                return (0, $"{Driver.FileName} lacks cuInit or cuDeviceGetCount");
            int status = ((delegate* unmanaged<uint, int>)init)(0);
            // 100: CUDA_ERROR_NO_DEVICE; 35: CUDA_ERROR_INSUFFICIENT_DRIVER; 34: CUDA_ERROR_STUB_LIBRARY (a toolkit's stub, no driver).
            if (status != 0)
                return (0, status switch
                {
                    100 => "the driver reports no CUDA device",
                    34 => $"{Driver.FileName} is the CUDA toolkit's stub, not a driver",
                    35 => "the driver is older than the CUDA runtime",
                    _ => $"cuInit failed with CUresult {status}",
                });
            int count;
            status = ((delegate* unmanaged<int*, int>)getCount)(&count);
            return status == 0 ? (count, count == 0 ? "the driver reports no CUDA device" : null) : (0, $"cuDeviceGetCount failed with CUresult {status}");
        }
        finally
        {
            NativeLibrary.Free(driver);
        }
    }
}
