using Saber.Tests;

namespace Saber.Cuda.Tests;

/// <summary>
/// The CUDA sampler decodes a sequence the same alone and inside batches of 2, 8 and 64 (whose row passes are planned
/// and split differently), bit for bit, and the same as the CPU sampler. Skips without a GPU.
/// </summary>
public class BatchCompositionTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData(new SaberStrategy(SaberVariant.Reference), 0f, LogitsElementType.BFloat16);
        yield return new TestCaseData(new SaberStrategy(SaberVariant.Paper), 0.8f, LogitsElementType.Float32);
        yield return new TestCaseData(new LowConfidenceStrategy(8, ConfidenceMetric.NegEntropy), 0f, LogitsElementType.Float16);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task ASequenceDecodesTheSameAloneAndInsideBatches(DecodingStrategy strategy, float temperature, LogitsElementType type)
    {
        CudaContext context = GpuFixture.Require();
        const int vocabulary = 2100, mask = 2099;   // three chunks of the row pass, the last one partial
        var denoiser = new RandomDenoiser(9, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05);
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = strategy, Temperature = temperature, Seed = 2026, Trace = true };
        int[] prompt = [3, 1, 4];
        await BatchComposition.AssertAloneEqualsInBatches((d, p, o) => new CudaSampler(context).DecodeAsync(d, p, o), denoiser, prompt, options,
            [2, 8, 64], keepIndex: temperature > 0f, seed: 11);
        DecodeResult cpu = await new CpuSampler().DecodeAsync(denoiser, [prompt], options);
        DecodeResult gpu = await new CudaSampler(context).DecodeAsync(denoiser, [prompt], options);
        TraceComparison.AssertIdenticalDecode(cpu, gpu);
    }
}
