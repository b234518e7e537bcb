using Saber.Native;

namespace Saber.Cuda.Tests;

/// <summary>
/// The C ABI's options as <see cref="NativeDecode.ToNative"/> fills them from <see cref="DecodeOptions"/>: managed
/// only, so these run on every machine, with or without libsaber_native and a GPU. A swapped field or an enum
/// out of step with saber.h would make the GPU decode a different strategy than the CPU oracle.
/// </summary>
public class NativeOptionsTests
{
    [Test]
    public void SaberFieldsAreCarriedOver()
    {
        var options = new DecodeOptions
        {
            GenerationLength = 48, BlockLength = 16, Temperature = 0.75f, Seed = 0xDEADBEEF12345678,
            Strategy = new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: 3, RemaskDivisor: 5, Backtracking: false, FixedThreshold: 0.25f),
        };
        SaberDecodeOptions n = NativeDecode.ToNative(options);
        Assert.Multiple(() =>
        {
            Assert.That(n.GenerationLength, Is.EqualTo(48));
            Assert.That(n.BlockLength, Is.EqualTo(16));
            Assert.That(n.Temperature, Is.EqualTo(0.75f));
            Assert.That(n.Seed, Is.EqualTo(0xDEADBEEF12345678));
            Assert.That(n.Strategy, Is.EqualTo(0), "SABER_STRATEGY_SABER");
            Assert.That(n.Variant, Is.EqualTo(1), "SABER_VARIANT_PAPER");
            Assert.That(n.MinTokensPerStep, Is.EqualTo(3));
            Assert.That(n.RemaskDivisor, Is.EqualTo(5));
            Assert.That(n.Backtracking, Is.Zero);
            Assert.That(n.UseFixedThreshold, Is.EqualTo(1));
            Assert.That(n.FixedThreshold, Is.EqualTo(0.25f));
        });
    }

    [Test]
    public void SaberDefaultsAreTheReferenceVariantWithBacktrackingAndNoFixedThreshold()
    {
        SaberDecodeOptions n = NativeDecode.ToNative(new DecodeOptions { GenerationLength = 8 });
        Assert.Multiple(() =>
        {
            Assert.That(n.BlockLength, Is.EqualTo(8), "K defaults to G");
            Assert.That(n.Variant, Is.EqualTo(0), "SABER_VARIANT_REFERENCE");
            Assert.That(n.MinTokensPerStep, Is.EqualTo(2));
            Assert.That(n.RemaskDivisor, Is.EqualTo(8));
            Assert.That(n.Backtracking, Is.EqualTo(1));
            Assert.That(n.UseFixedThreshold, Is.Zero);
        });
    }

    [TestCase(ConfidenceMetric.MaxProb, 0)]
    [TestCase(ConfidenceMetric.Margin, 1)]
    [TestCase(ConfidenceMetric.NegEntropy, 2)]
    [TestCase(ConfidenceMetric.Random, 3)]
    public void LowConfidenceCarriesStepsAndTheMetricAsSaberHNumbersIt(ConfidenceMetric metric, int native)
    {
        SaberDecodeOptions n = NativeDecode.ToNative(new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = new LowConfidenceStrategy(6, metric) });
        Assert.That(n.Strategy, Is.EqualTo(1), "SABER_STRATEGY_LOW_CONFIDENCE");
        Assert.That(n.Steps, Is.EqualTo(6));
        Assert.That(n.Metric, Is.EqualTo(native));
        Assert.That((int)Enum.Parse<SaberMetric>(metric.ToString(), ignoreCase: true), Is.EqualTo(native), "the generated enum agrees");
    }

    [Test]
    public void ThresholdCarriesTheta()
    {
        SaberDecodeOptions n = NativeDecode.ToNative(new DecodeOptions { GenerationLength = 8, Strategy = new ThresholdStrategy(0.6f) });
        Assert.That(n.Strategy, Is.EqualTo(2), "SABER_STRATEGY_THRESHOLD");
        Assert.That(n.Threshold, Is.EqualTo(0.6f));
    }

    [Test]
    public void FactorCarriesTheFactor()
    {
        SaberDecodeOptions n = NativeDecode.ToNative(new DecodeOptions { GenerationLength = 8, Strategy = new FactorStrategy(2.5f) });
        Assert.That(n.Strategy, Is.EqualTo(3), "SABER_STRATEGY_FACTOR");
        Assert.That(n.Strategy, Is.EqualTo((int)Native.SaberStrategy.Factor), "the generated enum agrees");
        Assert.That(n.Factor, Is.EqualTo(2.5f));
    }

    /// <summary>Fields a strategy does not use hold values the native validation accepts (it checks only the strategy's own).</summary>
    [Test]
    public void UnusedFieldsHoldValidPlaceholders()
    {
        foreach (DecodingStrategy strategy in new DecodingStrategy[] { new SaberStrategy(), new LowConfidenceStrategy(8), new ThresholdStrategy(), new FactorStrategy() })
        {
            SaberDecodeOptions n = NativeDecode.ToNative(new DecodeOptions { GenerationLength = 8, Strategy = strategy });
            Assert.That(n.MinTokensPerStep, Is.GreaterThanOrEqualTo(1), strategy.ToString());
            Assert.That(n.RemaskDivisor, Is.GreaterThanOrEqualTo(1), strategy.ToString());
            Assert.That(n.Steps, Is.GreaterThanOrEqualTo(1), strategy.ToString());
            Assert.That(n.Threshold, Is.InRange(float.Epsilon, 1f), strategy.ToString());
            Assert.That(float.IsFinite(n.Factor) && n.Factor > 0f, Is.True, strategy.ToString());
        }
    }
}
