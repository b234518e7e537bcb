using Saber.Cuda;
using Saber.Onnx.Gpu.Harness;

namespace Saber.Onnx.Gpu.Tests;

/// <summary>
/// The device engine's binding code (int64 ids, attention mask, logits_index, the output over the sampler's buffer at each
/// sequence's rows) run with ONNX Runtime's CPU provider on host memory, against the CPU engine on the same canvases: the
/// same graph on the same provider must give the same bits, for one sequence (rows from the prompt's end) and for ragged
/// batches (every row of the pitch), for LLaDA's layout and Dream's shifted logits.
/// </summary>
public sealed class DeviceBindingTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (string model in new[] { "tiny", "llada", "dream" })
        {
            yield return new TestCaseData(model, new[] { 5 }, 12).SetArgDisplayNames(model, "one sequence");
            yield return new TestCaseData(model, new[] { 3, 9, 1 }, 8).SetArgDisplayNames(model, "ragged batch of 3");
            yield return new TestCaseData(model, new[] { 4, 4 }, 6).SetArgDisplayNames(model, "equal prompts");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void LogitsEqualTheCpuEnginesBitForBit(string name, int[] promptLengths, int g)
    {
        using OnnxDenoiser cpu = OnnxDenoiser.Load(TestModels.ModelFile(name));
        using OnnxDeviceDenoiser device = HostDevice.Load(TestModels.ModelFile(name));
        Assert.That((device.VocabularySize, device.MaskId, device.ElementType), Is.EqualTo((cpu.VocabularySize, cpu.MaskId, cpu.ElementType)));
        int[][] canvases = TestModels.Canvases(cpu.VocabularySize, cpu.MaskId, promptLengths, g, seed: promptLengths.Sum());

        float[][][] expected = HostDevice.Reference(cpu, canvases, promptLengths);
        float[][][] actual = HostDevice.Forward(device, canvases, promptLengths);
        for (int b = 0; b < canvases.Length; b++)
            for (int r = 0; r < expected[b].Length; r++)
                Assert.That(actual[b][r], Is.EqualTo(expected[b][r]), $"sequence {b}, position {promptLengths[b] + r} (NaN: a row left unwritten)");
    }

    [TestCase("tiny")]
    [TestCase("dream")]
    public void WithoutLogitsFromALoneSequenceGetsEveryRow(string name)
    {
        using OnnxDenoiser cpu = OnnxDenoiser.Load(TestModels.ModelFile(name));
        using OnnxDeviceDenoiser device = HostDevice.Load(TestModels.ModelFile(name));
        int[][] canvases = TestModels.Canvases(cpu.VocabularySize, cpu.MaskId, [6], 10, seed: 4);
        int[] everyRow = [0];
        float[][][] expected = HostDevice.Reference(cpu, canvases, everyRow);
        float[][][] actual = HostDevice.Forward(device, canvases, everyRow, sendLogitsFrom: false);
        Assert.That(actual[0].Length, Is.EqualTo(16));
        for (int r = 0; r < expected[0].Length; r++)
            Assert.That(actual[0][r], Is.EqualTo(expected[0][r]), $"position {r} (prompt rows included)");
    }

    [Test]
    public void TheBindingIsKeptWithinADecodeAndRebuiltForANewShape()
    {
        using OnnxDeviceDenoiser device = HostDevice.Load(TestModels.ModelFile("tiny"));
        using var run = new DeviceRun(device, context: null);
        int[][] first = TestModels.Canvases(device.VocabularySize, device.MaskId, [2, 6], 8, seed: 1);
        HostDevice.Forward(run, first, [2, 6], step: 1);
        HostDevice.Forward(run, first, [2, 6], step: 2);
        Assert.That((device.Runs, device.Bindings), Is.EqualTo((2, 1)), "two steps of one decode shape on the same buffers: one binding");
        // A new decode shape binds again.
        int[][] second = TestModels.Canvases(device.VocabularySize, device.MaskId, [3], 5, seed: 2);
        HostDevice.Forward(run, second, [3]);
        Assert.That(device.Bindings, Is.GreaterThanOrEqualTo(2));
    }

    [Test]
    public async Task ADecodeThroughTheBindingIsTheCpuEnginesDecode()
    {
        using OnnxDenoiser cpu = OnnxDenoiser.Load(TestModels.ModelFile("tiny"));
        using OnnxDeviceDenoiser device = HostDevice.Load(TestModels.ModelFile("tiny"));
        ReadOnlyMemory<int>[] prompts = TestModels.Canvases(cpu.VocabularySize, cpu.MaskId, [4, 7], 0, seed: 3).Select(p => (ReadOnlyMemory<int>)p).ToArray();
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 8, Trace = true };

        DecodeResult reference = await new CpuSampler().DecodeAsync(cpu, prompts, options);
        using var run = new DeviceRun(device, context: null);
        DecodeResult bound = await new CpuSampler().DecodeAsync(new HostDeviceDenoiser(run), prompts, options);
        for (int b = 0; b < prompts.Length; b++)
        {
            Assert.That(bound.Sequences[b].Canvas, Is.EqualTo(reference.Sequences[b].Canvas), $"canvas of sequence {b}");
            Assert.That(bound.Sequences[b].Nfe, Is.EqualTo(reference.Sequences[b].Nfe), $"NFE of sequence {b}");
        }
    }

    [Test]
    public void InconsistentRequestsAreRefusedNamingTheValue()
    {
        using OnnxDeviceDenoiser device = HostDevice.Load(TestModels.ModelFile("tiny"));
        var request = new GpuForwardRequest(1, 2, 10, [10, 11], 64, 64, 0);
        var e = Assert.Throws<ArgumentException>(() => device.ForwardAsync(request, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("Sequence 1 has length 11"));
        e = Assert.Throws<ArgumentException>(() => device.ForwardAsync(request with { SequenceLengths = [10] }, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("1 sequence lengths for a batch of 2"));
        e = Assert.Throws<ArgumentException>(() => device.ForwardAsync(request with { SequenceLengths = [10, 9], LogitsFrom = [1] }, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("1 LogitsFrom entries for a batch of 2"));
        e = Assert.Throws<ArgumentException>(() => device.ForwardAsync(request with { SequenceLengths = [10, 9], Logits = 0 }, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("address is null"));
        Assert.That(device.Runs, Is.Zero, "nothing ran");
    }
}
