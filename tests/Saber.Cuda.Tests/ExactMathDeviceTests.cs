using Saber.Native;

namespace Saber.Cuda.Tests;

/// <summary>
/// The device's exact step arithmetic against the C# mirror (<see cref="ExactMath"/>), bit for bit: exact_math.h
/// compiled for the GPU through saber_exact_eval_device. Small inputs (the device tests may run in a simulator).
/// </summary>
public unsafe class ExactMathDeviceTests
{
    private const int Count = 4096;

    private static float[] Inputs(SaberExactFunction function)
    {
        var rng = new Random(17 + (int)function);
        return Enumerable.Range(0, Count).Select(_ => function switch
        {
            SaberExactFunction.Exp => (float)(-90 * rng.NextDouble()),
            SaberExactFunction.Log => MathF.Pow(2f, (float)(60 * rng.NextDouble() - 30)),
            _ => RandomLayout.ToUniform((uint)rng.NextInt64(1L << 32)),
        }).ToArray();
    }

    [TestCase(SaberExactFunction.Exp)]
    [TestCase(SaberExactFunction.Log)]
    [TestCase(SaberExactFunction.Gumbel)]
    public void TheDeviceComputesTheCSharpBits(SaberExactFunction function)
    {
        CudaContext context = GpuFixture.Require();
        float[] inputs = Inputs(function);
        var device = new float[Count];
        fixed (float* i = inputs)
        fixed (float* o = device)
            NativeStatus.Check(SaberNative.ExactEvalDevice(context.NativeHandle, (int)function, i, o, Count), "saber_exact_eval_device");
        Func<float, float> managed = function switch
        {
            SaberExactFunction.Exp => ExactMath.Exp,
            SaberExactFunction.Log => ExactMath.Log,
            _ => ExactMath.Gumbel,
        };
        for (int k = 0; k < Count; k++)
            Assert.That(BitConverter.SingleToUInt32Bits(device[k]), Is.EqualTo(BitConverter.SingleToUInt32Bits(managed(inputs[k]))),
                $"{function}({inputs[k]:R})");
    }

    [Test]
    public void TheDeviceComputesTheCSharpFixedTerms()
    {
        CudaContext context = GpuFixture.Require();
        var rng = new Random(23);
        float[] inputs = [.. Enumerable.Range(0, Count).Select(_ => (float)rng.NextDouble()), 0f, 1f];
        var device = new ulong[inputs.Length];
        fixed (float* i = inputs)
        fixed (ulong* o = device)
            NativeStatus.Check(SaberNative.ExactFixedTermsDevice(context.NativeHandle, i, o, inputs.Length), "saber_exact_fixed_terms_device");
        Assert.That(device, Is.EqualTo(inputs.Select(ExactMath.FixedTerm).ToArray()));
    }

    [TestCase(ConfidenceMetric.MaxProb, 0f)]
    [TestCase(ConfidenceMetric.Margin, 0.8f)]
    [TestCase(ConfidenceMetric.NegEntropy, 0f)]
    public void TheDeviceComputesTheCSharpRowDefinition(ConfidenceMetric metric, float temperature)
    {
        CudaContext context = GpuFixture.Require();
        var rng = new Random(29);
        float[] row = Enumerable.Range(0, 1500).Select(_ => (float)(rng.NextDouble() * 12 - 6)).ToArray();
        row[3] = float.NegativeInfinity;
        int prediction, bad;
        var values = new float[3];
        fixed (float* r = row)
        fixed (float* o = values)
            NativeStatus.Check(SaberNative.ExactRowDevice(context.NativeHandle, r, row.Length, 7, 11, (int)metric, temperature, 5, 2, 1, 40, &prediction, &bad, o),
                "saber_exact_row_device");
        ExactMath.RowResult mine = ExactMath.Row(row, 7, 11, metric, temperature, 5, new RowCoordinates(2, 1, 40));
        Assert.That((prediction, bad), Is.EqualTo((mine.Prediction, mine.BadIndex)));
        Assert.That(values.Select(BitConverter.SingleToUInt32Bits),
            Is.EqualTo(new[] { mine.Confidence, mine.TokenConfidence, mine.Metric }.Select(BitConverter.SingleToUInt32Bits)));
    }
}
