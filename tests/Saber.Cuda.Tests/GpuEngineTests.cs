using Saber.Tests;

namespace Saber.Cuda.Tests;

/// <summary>
/// The device path: an <see cref="IGpuDenoiser"/> writes logits into the sampler's device buffer and the
/// decode matches the CPU reference fed the same logits from the host.
/// </summary>
public class GpuEngineTests
{
    public static IEnumerable<TestCaseData> Cases() => DifferentialTests.Cases().Where((_, i) => i % 2 == 0);

    [TestCaseSource(nameof(Cases))]
    public async Task GpuEngineDecodesLikeTheCpuReference(LogitsElementType type, int vocabulary, int g, int k, float temperature, DecodingStrategy strategy)
    {
        CudaContext context = GpuFixture.Require();
        int mask = vocabulary / 2;
        var host = new RandomDenoiser(vocabulary * 5 + g, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05, maskHoldsMax: true);
        var engine = new HostBackedGpuDenoiser(context, host, type);
        ReadOnlyMemory<int>[] prompts = [new[] { (mask + 1) % vocabulary, (mask + 1) % vocabulary }, Array.Empty<int>()];
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = 7, Trace = true };

        DecodeResult cpu = await new CpuSampler().DecodeAsync(host, prompts, options);
        DecodeResult gpu = await new CudaSampler(context).DecodeAsync(engine, prompts, options);
        TraceComparison.AssertIdenticalDecode(cpu, gpu);
        Assert.That(engine.Forwards, Is.EqualTo(gpu.Sequences.Max(s => s.Nfe)), "one forward pass of the batch per step, until the last sequence finishes");
    }

    [Test]
    public async Task WithoutTraceOrStreamingTheResultIsTheSame()
    {
        CudaContext context = GpuFixture.Require();
        var host = new RandomDenoiser(3, 41, 40, LogitsElementType.BFloat16);
        ReadOnlyMemory<int>[] prompts = [new[] { 1, 2 }, new[] { 3 }, Array.Empty<int>()];
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 4 };

        DecodeResult cpu = await new CpuSampler().DecodeAsync(host, prompts, options);
        DecodeResult gpu = await new CudaSampler(context).DecodeAsync(new HostBackedGpuDenoiser(context, host, LogitsElementType.BFloat16), prompts, options);
        for (int b = 0; b < prompts.Length; b++)
        {
            Assert.That(gpu.Sequences[b].Canvas, Is.EqualTo(cpu.Sequences[b].Canvas), $"canvas of sequence {b}");
            Assert.That(gpu.Sequences[b].Nfe, Is.EqualTo(cpu.Sequences[b].Nfe), $"NFE of sequence {b}");
            Assert.That(gpu.Sequences[b].Trace, Is.Empty, "no trace was asked for");
            Assert.That(gpu.Sequences[b].RemaskStatistics, Is.Null, "no trace was read back to count re-masks from");
            Assert.That(cpu.Sequences[b].RemaskStatistics, Is.Not.Null);
        }
    }

    [Test]
    public async Task StreamingGivesTheCpuSamplersUpdates()
    {
        CudaContext context = GpuFixture.Require();
        var host = new RandomDenoiser(11, 29, 0);
        ReadOnlyMemory<int>[] prompts = [new[] { 5 }, new[] { 6, 7, 8 }];
        var options = new DecodeOptions { GenerationLength = 12, BlockLength = 6 };

        var cpu = new List<DecodeStepUpdate>();
        await foreach (DecodeStepUpdate update in new CpuSampler().DecodeStepsAsync(host, prompts, options)) cpu.Add(update);
        var gpu = new List<DecodeStepUpdate>();
        await foreach (DecodeStepUpdate update in new CudaSampler(context).DecodeStepsAsync(new HostBackedGpuDenoiser(context, host, LogitsElementType.Float32), prompts, options))
            gpu.Add(update);

        Assert.That(gpu.Select(u => u.Step), Is.EqualTo(cpu.Select(u => u.Step)));
        for (int i = 0; i < cpu.Count; i++)
        {
            Assert.That(gpu[i].Sequences.Select(s => s.Sequence), Is.EqualTo(cpu[i].Sequences.Select(s => s.Sequence)), $"sequences of step {cpu[i].Step}");
            for (int j = 0; j < cpu[i].Sequences.Count; j++)
            {
                Assert.That(gpu[i].Sequences[j].Canvas, Is.EqualTo(cpu[i].Sequences[j].Canvas), $"canvas after step {cpu[i].Step}");
                Assert.That(gpu[i].Sequences[j].Finished, Is.EqualTo(cpu[i].Sequences[j].Finished), $"finished after step {cpu[i].Step}");
                Assert.That(gpu[i].Sequences[j].RemaskStatistics, Is.EqualTo(cpu[i].Sequences[j].RemaskStatistics), $"re-masks after step {cpu[i].Step}");
                TraceComparison.AssertIdenticalStep(cpu[i].Sequences[j].Trace, gpu[i].Sequences[j].Trace, j);
            }
        }
    }

    [Test]
    public void BadLogitsFromTheEngineStopTheDecodeNamingThePlace()
    {
        CudaContext context = GpuFixture.Require();
        var host = new RandomDenoiser(1, 11, 10) { Edit = (step, _, pos, row) => { if (step == 2 && pos == 4) row[3] = float.PositiveInfinity; } };
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 8 };
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() =>
            new CudaSampler(context).DecodeAsync(new HostBackedGpuDenoiser(context, host, LogitsElementType.Float32), [new[] { 1 }], options));
        Assert.That(e!.Message, Does.Contain("vocabulary index 3 of position 4 (sequence 0, step 2)"));
    }

    [Test]
    public void CancellationStopsBetweenSteps()
    {
        CudaContext context = GpuFixture.Require();
        using var cancel = new CancellationTokenSource();
        var engine = new HostBackedGpuDenoiser(context, new RandomDenoiser(2, 17, 16), LogitsElementType.Float32)
        {
            BeforeForward = r => { if (r.Step == 2) cancel.Cancel(); },
        };
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 16, Strategy = new LowConfidenceStrategy(16) };
        Assert.CatchAsync<OperationCanceledException>(() => new CudaSampler(context).DecodeAsync(engine, [new[] { 1 }], options, cancel.Token));
        Assert.That(engine.Forwards, Is.LessThanOrEqualTo(2), "no forward pass after the cancellation was seen");
    }

    [Test]
    public void AnEngineElementTypeOutsideTheEnumIsRejectedBeforeAnyStep()
    {
        CudaContext context = GpuFixture.Require();
        var engine = new HostBackedGpuDenoiser(context, new RandomDenoiser(2, 17, 16), (LogitsElementType)9);
        var e = Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            new CudaSampler(context).DecodeAsync(engine, [new[] { 1 }], new DecodeOptions { GenerationLength = 4 }));
        Assert.That(e!.Message, Does.Contain("ElementType"));
        Assert.That(engine.Forwards, Is.Zero);
    }
}
