namespace Saber.Tests;

/// <summary>The CPU sampler decodes a sequence the same alone, inside batches of 2, 8 and 64, and with one or all threads.</summary>
public class BatchCompositionTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        DecodingStrategy[] strategies =
        [
            new SaberStrategy(SaberVariant.Reference),
            new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 1, RemaskDivisor: 2),
            new LowConfidenceStrategy(8, ConfidenceMetric.Margin),
            new LowConfidenceStrategy(8, ConfidenceMetric.NegEntropy),
            new LowConfidenceStrategy(8, ConfidenceMetric.Random),
            new ThresholdStrategy(0.4f),
            new FactorStrategy(3f),
        ];
        int c = 0;
        foreach (DecodingStrategy strategy in strategies)
            foreach (float temperature in new[] { 0f, 0.8f })
            {
                var type = (LogitsElementType)(c++ % 3);
                yield return new TestCaseData(strategy, temperature, type).SetArgDisplayNames(strategy.ToString(), $"T{temperature}", type.ToString());
            }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task ASequenceDecodesTheSameAloneAndInsideBatches(DecodingStrategy strategy, float temperature, LogitsElementType type)
    {
        const int vocabulary = 1100, mask = 1099;   // two chunks of the row pass, the second one partial
        var denoiser = new RandomDenoiser(5, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05);
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = strategy, Temperature = temperature, Seed = 2026, Trace = true };
        bool random = temperature > 0f || strategy is LowConfidenceStrategy { Metric: ConfidenceMetric.Random };
        await BatchComposition.AssertAloneEqualsInBatches((d, p, o) => new CpuSampler().DecodeAsync(d, p, o), denoiser, [3, 1, 4], options,
            [2, 8, 64], keepIndex: random, seed: 7);
        await BatchComposition.AssertAloneEqualsInBatches((d, p, o) => new CpuSampler(maxDegreeOfParallelism: 1).DecodeAsync(d, p, o), denoiser, [3, 1, 4], options,
            [8], keepIndex: random, seed: 8);
    }
}
