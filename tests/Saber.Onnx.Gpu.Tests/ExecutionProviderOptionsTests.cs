namespace Saber.Onnx.Gpu.Tests;

/// <summary>The provider options the engine settings become, by the names ONNX Runtime 1.32's providers parse.</summary>
public sealed class ExecutionProviderOptionsTests
{
    [Test]
    public void CudaRunsOnTheGivenDeviceAndStreamWithoutTf32()
    {
        var options = new OnnxEngineOptions { Provider = ExecutionProvider.Cuda, DeviceId = 3 };
        Assert.That(ExecutionProviders.CudaOptions(options, 0), Is.EquivalentTo(new Dictionary<string, string> { ["device_id"] = "3", ["use_tf32"] = "0" }));
        IReadOnlyDictionary<string, string> withStream = ExecutionProviders.CudaOptions(options, unchecked((nint)0x7f00_dead_beefL));
        Assert.That(withStream["has_user_compute_stream"], Is.EqualTo("1"));
        Assert.That(withStream["user_compute_stream"], Is.EqualTo(0x7f00_dead_beefL.ToString(System.Globalization.CultureInfo.InvariantCulture)), "the address in decimal");
    }

    [TestCase(GpuPrecision.Model, "0", "0")]
    [TestCase(GpuPrecision.Float16, "1", "0")]
    [TestCase(GpuPrecision.BFloat16, "0", "1")]
    public void TensorRtCachesItsEnginesInTheModelDirectory(GpuPrecision precision, string fp16, string bf16)
    {
        string model = Path.Combine(Path.GetTempPath(), "some-model", "model.onnx");
        var options = new OnnxEngineOptions { Provider = ExecutionProvider.TensorRt, Precision = precision };
        IReadOnlyDictionary<string, string> values = ExecutionProviders.TensorRtOptions(options, model, 0);
        string cache = Path.Combine(Path.GetTempPath(), "some-model", "engine-cache");
        Assert.That(values["trt_engine_cache_enable"], Is.EqualTo("1"));
        Assert.That(values["trt_engine_cache_path"], Is.EqualTo(cache));
        Assert.That(values["trt_timing_cache_enable"], Is.EqualTo("1"));
        Assert.That(values["trt_timing_cache_path"], Is.EqualTo(cache));
        Assert.That((values["trt_fp16_enable"], values["trt_bf16_enable"]), Is.EqualTo((fp16, bf16)));
        Assert.That(values.ContainsKey("user_compute_stream"), Is.False, "no stream given");
        Assert.That(ExecutionProviders.TensorRtOptions(options with { EngineCacheDirectory = "/elsewhere" }, model, 0)["trt_engine_cache_path"], Is.EqualTo("/elsewhere"));
    }

    [Test]
    public void SettingsAProviderCannotHonourAreRefusedBeforeAnythingLoads()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new OnnxEngineOptions { Provider = ExecutionProvider.Cuda, Precision = GpuPrecision.Float16 }.Validate());
        Assert.That(e!.Message, Does.Contain("needs the TensorRT provider").And.Contain("onnx-cuda"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new OnnxEngineOptions { Provider = ExecutionProvider.Cuda, DeviceId = -1 }.Validate());
        Assert.That(e!.Message, Does.Contain("must be >= 0; got -1"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new OnnxEngineOptions { Provider = (ExecutionProvider)7 }.Validate());
        Assert.That(e!.ParamName, Is.EqualTo("Provider"));
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxDenoiser.Load(TestModels.ModelFile("tiny"), new OnnxEngineOptions { Precision = GpuPrecision.BFloat16 }));
    }

    [TestCase("onnx", ExecutionProvider.Cpu)]
    [TestCase("onnx-cuda", ExecutionProvider.Cuda)]
    [TestCase("onnx-tensorrt", ExecutionProvider.TensorRt)]
    public void EngineNamesRoundTrip(string name, ExecutionProvider provider)
    {
        Assert.That(ExecutionProviders.FromEngineName(name), Is.EqualTo(provider));
        Assert.That(ExecutionProviders.EngineName(provider), Is.EqualTo(name));
    }

    [Test]
    public void AnUnknownEngineNameListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => ExecutionProviders.FromEngineName("tensorrt"));
        Assert.That(e!.Message, Does.StartWith("The engine must be onnx, onnx-cuda or onnx-tensorrt; got 'tensorrt'."));
    }
}
