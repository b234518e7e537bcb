namespace Saber.Server.Tests;

/// <summary>
/// <c>Server:Engine</c>, <c>Server:Device</c> and <c>Server:Precision</c>: bad values fail the start naming the setting, and a GPU
/// engine on a machine that cannot run it fails the start with the one line that names what is missing.
/// </summary>
public sealed class EngineSettingsTests
{
    [TestCase("Server:Engine", "tpu", "Server:Engine must be onnx, onnx-cuda or onnx-tensorrt; got 'tpu'.")]
    [TestCase("Server:Precision", "fp8", "Server:Precision must be model, fp16 or bf16; got 'fp8'.")]
    [TestCase("Server:Device", "-2", "Server:Device must be >= 0; got -2.")]
    public void ABadEngineSettingFailsTheStart(string key, string value, string message)
    {
        var e = Assert.CatchAsync<ArgumentException>(async () =>
        {
            await using TestSaberServer bad = await TestSaberServer.StartAsync((key, value));
        });
        Assert.That(e!.Message, Does.StartWith(message));
    }

    [Test]
    public void HalfPrecisionNeedsTensorRt()
    {
        var e = Assert.CatchAsync<ArgumentException>(async () =>
        {
            await using TestSaberServer bad = await TestSaberServer.StartAsync(("Server:Engine", "onnx-cuda"), ("Server:Precision", "fp16"));
        });
        Assert.That(e!.Message, Does.StartWith("Server:Precision fp16 needs Server:Engine onnx-tensorrt; got 'onnx-cuda'."));
    }

    [Test]
    public void AGpuEngineThisProcessCannotRunFailsTheStartSayingWhy()
    {
        if (Saber.Onnx.GpuRuntime.Missing(Saber.Onnx.ExecutionProvider.Cuda).Count == 0) Assert.Ignore("this process can run onnx-cuda: nothing to report");
        var e = Assert.ThrowsAsync<Saber.Onnx.GpuUnavailableException>(async () =>
        {
            await using TestSaberServer bad = await TestSaberServer.StartAsync(("Server:Engine", "onnx-cuda"));
        });
        // The repository's projects carry ONNX Runtime's CPU build.
        Assert.That(e!.Message, Does.StartWith("The onnx-cuda engine cannot run here: ").And.Contain("CPU build"));
    }

    [Test]
    public async Task TheCpuEngineNamedExplicitlyServes()
    {
        await using TestSaberServer server = await TestSaberServer.StartAsync(("Server:Engine", "onnx"), ("Server:Precision", "model"));
        var (response, body) = await server.PostJsonAsync("/v1/completions", new { model = "tiny", prompt = "x", max_tokens = 8 });
        Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.OK), body.ToString());
    }
}
