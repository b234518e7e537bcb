using Saber.Native;

namespace Saber.Cuda.Tests;

public class NativeEngineTests
{
    [Test]
    public void LoadingATensorRtEngineNamesWhatIsMissing()
    {
        CudaContext context = GpuFixture.Require();
        string plan = Path.Combine(Path.GetTempPath(), $"absent-{Guid.NewGuid():N}.plan");
        if (NativeEngine.TensorRtAvailable)
        {
            var e = Assert.Throws<ArgumentException>(() => NativeEngine.LoadTensorRt(context, plan, 0));
            Assert.That(e!.Message, Does.Contain("saber_engine_create_tensorrt: cannot open engine file").And.Contain(plan));
        }
        else
        {
            var e = Assert.Throws<SaberNativeException>(() => NativeEngine.LoadTensorRt(context, plan, 0));
            Assert.That(e!.Status, Is.EqualTo(SaberStatus.ErrorUnsupported));
            Assert.That(e.Message, Does.Contain("built without TensorRT").And.Contain("TensorRT_ROOT"));
        }
    }
}
