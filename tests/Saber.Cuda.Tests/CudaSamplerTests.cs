using Saber.Native;
using Saber.Native.Bindings.Tests;
using Saber.Tests;

namespace Saber.Cuda.Tests;

/// <summary>Without a GPU: the CUDA sampler fails with one clear error, before anything runs.</summary>
public class NoDeviceTests
{
    [Test]
    public void ContextCreationNamesWhyThereIsNoDevice()
    {
        NativeLibraryFixture.Require();
        try
        {
            using CudaContext context = CudaContext.Create();
            Assert.Ignore("a CUDA device is present; this test covers machines without one");
        }
        catch (SaberNativeException e)
        {
            Assert.That(e.Status, Is.AnyOf(SaberStatus.ErrorNoDevice, SaberStatus.ErrorCuda));
            Assert.That(e.Message, Does.Contain("cuda").IgnoreCase.Or.Contain("CUDA"));
        }
    }

    [Test]
    public void NegativeDeviceIndexIsAnArgumentError()
    {
        NativeLibraryFixture.Require();
        var e = Assert.Catch(() => CudaContext.Create(-1));
        Assert.That(e, Is.InstanceOf<ArgumentException>().Or.InstanceOf<SaberNativeException>());
        Assert.That(e!.Message, Is.Not.Empty);
    }
}

/// <summary>The GPU path against the CPU reference: identical tokens, NFE and traces, every number bit for bit.</summary>
public class DifferentialTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        var rng = new Random(4);
        foreach (var type in Enum.GetValues<LogitsElementType>())
            foreach (int vocabulary in new[] { 3, 37, 1000, 4099 })
            {
                int g = new[] { 1, 8, 12, 32 }[rng.Next(4)];
                int[] divisors = Enumerable.Range(1, g).Where(k => g % k == 0).ToArray();
                int k = divisors[rng.Next(divisors.Length)];
                float temperature = rng.Next(3) == 0 ? 0.9f : 0f;
                DecodingStrategy[] strategies =
                [
                    new SaberStrategy(SaberVariant.Reference, rng.Next(1, 5), rng.Next(1, 9)),
                    new SaberStrategy(SaberVariant.Paper, rng.Next(1, 5), rng.Next(1, 9)),
                    new SaberStrategy(Backtracking: false, FixedThreshold: 0.3f),
                    new LowConfidenceStrategy(g / k * rng.Next(1, 4), (ConfidenceMetric)rng.Next(4)),
                    new ThresholdStrategy(0.5f),
                    new FactorStrategy(),
                    new FactorStrategy(3f),
                ];
                foreach (DecodingStrategy strategy in strategies)
                    yield return new TestCaseData(type, vocabulary, g, k, temperature, strategy)
                        .SetArgDisplayNames(type.ToString(), $"V{vocabulary}", $"G{g}", $"K{k}", $"T{temperature}", strategy.ToString());
            }
    }

    [TestCaseSource(nameof(Cases))]
    public async Task GpuDecodesLikeTheCpuReference(LogitsElementType type, int vocabulary, int g, int k, float temperature, DecodingStrategy strategy)
    {
        CudaContext context = GpuFixture.Require();
        int mask = vocabulary / 2;
        var denoiser = new RandomDenoiser(vocabulary * 7 + g, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05, maskHoldsMax: true);
        ReadOnlyMemory<int>[] prompts = [new[] { (mask + 1) % vocabulary }, Array.Empty<int>(), new[] { 0 == mask ? 1 : 0, (mask + 2) % vocabulary, (mask + 1) % vocabulary }];
        var options = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = 99, Trace = true };

        DecodeResult cpu = await new CpuSampler().DecodeAsync(denoiser, prompts, options);
        DecodeResult gpu = await new CudaSampler(context).DecodeAsync(denoiser, prompts, options);
        TraceComparison.AssertIdenticalDecode(cpu, gpu);
    }

    [Test]
    public void BadLogitsStopTheDecodeNamingThePlace()
    {
        CudaContext context = GpuFixture.Require();
        var denoiser = new RandomDenoiser(1, 11, 10) { Edit = (_, _, pos, row) => { if (pos == 5) row[7] = float.NaN; } };
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 4 };
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CudaSampler(context).DecodeAsync(denoiser, [new[] { 1, 2, 3 }], options));
        Assert.That(e!.Message, Does.Contain("vocabulary index 7 of position 5 (sequence 0, step 1)"));
    }

    [Test]
    public void InvalidOptionsThrowTheCpuSamplersErrorBeforeAnyStep()
    {
        CudaContext context = GpuFixture.Require();
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 3 };
        Assert.Throws<ArgumentOutOfRangeException>(() => new CudaSampler(context).DecodeStepsAsync(new RandomDenoiser(1, 11, 10), [new[] { 1 }], options));
    }
}
