using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>
/// What a machine without a GPU provider is told: every missing piece named in one line, from the process's facts (given
/// per case), and the real process here (the GPU build of ONNX Runtime, no usable GPU).
/// </summary>
public sealed class GpuRuntimeTests
{
    private static readonly string[] GpuBuild = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"];
    private static readonly string[] CpuBuild = ["CPUExecutionProvider"];

    private static IReadOnlyList<string> Missing(ExecutionProvider provider, string[] providers, Func<string, bool> canLoad, int devices = 1, string? error = null,
        int device = 0) => GpuRuntime.Missing(provider, device, providers, canLoad, () => (devices, error));

    [Test]
    public void AMachineWithEverythingMissesNothing()
    {
        Assert.That(Missing(ExecutionProvider.Cuda, GpuBuild, _ => true), Is.Empty);
        Assert.That(Missing(ExecutionProvider.TensorRt, GpuBuild, _ => true), Is.Empty);
        Assert.That(Missing(ExecutionProvider.Cpu, CpuBuild, _ => false), Is.Empty, "the CPU provider needs nothing");
    }

    [Test]
    public void TheCpuBuildOfOnnxRuntimeIsNamedWithWhatToReference()
    {
        IReadOnlyList<string> missing = Missing(ExecutionProvider.Cuda, CpuBuild, _ => true);
        Assert.That(missing, Has.Count.EqualTo(1));
        Assert.That(missing[0], Does.Contain("CPU build").And.Contain("Microsoft.ML.OnnxRuntime.Gpu.Linux").And.Contain("Saber.Native.Onnx.Gpu"));
    }

    [Test]
    public void EachMissingLibraryIsNamedOncePerPackage()
    {
        var absent = new HashSet<string> { "libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9", "libnvinfer.so.10" };
        IReadOnlyList<string> cuda = Missing(ExecutionProvider.Cuda, GpuBuild, name => !absent.Contains(name));
        Assert.That(cuda, Is.EqualTo(new[] { "cuBLAS 13 (libcublas.so.13, libcublasLt.so.13 not found)", "cuDNN 9 (libcudnn.so.9 not found)" }));
        IReadOnlyList<string> tensorRt = Missing(ExecutionProvider.TensorRt, GpuBuild, name => !absent.Contains(name));
        Assert.That(tensorRt, Is.EqualTo(cuda.Append("TensorRT 10 (libnvinfer.so.10 not found)")), "TensorRT's libraries only for the TensorRT provider");
    }

    [Test]
    public void NoDriverIsSaidOnceAndNoDeviceIsNotAskedFor()
    {
        IReadOnlyList<string> missing = Missing(ExecutionProvider.Cuda, GpuBuild, name => name != "libcuda.so.1", devices: 0, error: "must not be asked");
        Assert.That(missing, Is.EqualTo(new[] { "no NVIDIA driver (libcuda.so.1 not found)" }));
    }

    [Test]
    public void AMissingDeviceIsNamedWithTheCount()
    {
        Assert.That(Missing(ExecutionProvider.Cuda, GpuBuild, _ => true, devices: 2, device: 2), Is.EqualTo(new[] { "CUDA device 2 (this machine has 2)" }));
        Assert.That(Missing(ExecutionProvider.Cuda, GpuBuild, _ => true, devices: 0, error: "the driver reports no CUDA device"),
            Is.EqualTo(new[] { "no usable CUDA device (the driver reports no CUDA device)" }));
    }

    [Test]
    public void TheExceptionIsOneLineNamingTheEngine()
    {
        var e = new GpuUnavailableException(ExecutionProvider.TensorRt, ["a", "b"]);
        Assert.That(e.Message, Is.EqualTo("The onnx-tensorrt engine cannot run here: a; b."));
    }

    [Test]
    public void ThisTestProcessRunsOnnxRuntimesGpuBuild()
    {
        // Directory.Build.targets keeps the GPU build for this project (SaberOnnxRuntime=gpu) although Saber.Onnx brings the CPU one.
        Assert.That(OrtEnv.Instance().GetAvailableProviders(), Does.Contain("CUDAExecutionProvider").And.Contain("TensorrtExecutionProvider"));
    }

    [TestCase(ExecutionProvider.Cuda)]
    [TestCase(ExecutionProvider.TensorRt)]
    public void LoadingOnAMachineThatLacksAPieceSaysWhichInOneLine(ExecutionProvider provider)
    {
        IReadOnlyList<string> missing = GpuRuntime.Missing(provider);
        if (missing.Count == 0) Assert.Ignore($"this machine can run {provider}: nothing is missing to report");
        var options = new OnnxEngineOptions { Provider = provider };
        var e = Assert.Throws<GpuUnavailableException>(() => OnnxDenoiser.Load(TestModels.ModelFile("tiny"), options));
        Assert.That(e!.Message, Does.Not.Contain("\n"));
        Assert.That(e.Missing, Is.EqualTo(missing));
        Assert.That(e.Message, Does.StartWith($"The {ExecutionProviders.EngineName(provider)} engine cannot run here: "));
        // The same check guards the device engine's loader, before any session.
        e = Assert.Throws<GpuUnavailableException>(() => HostDevice.Load(TestModels.ModelFile("tiny"), options));
        Assert.That(e!.Missing, Is.EqualTo(missing));
    }
}
