using Saber.Native;
using Saber.Tests;

namespace Saber.Native.Bindings.Tests;

/// <summary>
/// The C# exact step arithmetic (<see cref="ExactMath"/>) against the native host build of exact_math.h
/// (saber_exact_eval), bit for bit, on millions of random inputs and the edges of each domain. The device runs the
/// same header, so a match here is what lets a GPU decode equal the CPU one without a GPU to compare on.
/// </summary>
public unsafe class ExactMathTests
{
    [SetUp]
    public void RequireLibrary() => NativeLibraryFixture.Require();

    private static float Bits(uint u) => BitConverter.UInt32BitsToSingle(u);

    /// <summary>Random bit patterns in [lowBits, highBits] plus the given edges.</summary>
    private static float[] Inputs(int seed, int count, uint lowBits, uint highBits, params float[] edges)
    {
        var rng = new Random(seed);
        var inputs = new float[count + edges.Length];
        for (int i = 0; i < count; i++) inputs[i] = Bits(lowBits + (uint)rng.NextInt64(highBits - (long)lowBits + 1));
        edges.CopyTo(inputs, count);
        return inputs;
    }

    private static void AssertSameBits(SaberExactFunction function, float[] inputs, Func<float, float> managed)
    {
        var native = new float[inputs.Length];
        fixed (float* i = inputs)
        fixed (float* o = native)
            Assert.That(SaberNative.ExactEval((int)function, i, o, inputs.LongLength), Is.EqualTo(SaberStatus.Ok), NativeLibraryFixture.LastError());
        for (int k = 0; k < inputs.Length; k++)
        {
            float mine = managed(inputs[k]);
            if (BitConverter.SingleToUInt32Bits(mine) != BitConverter.SingleToUInt32Bits(native[k]))
                Assert.Fail($"{function}({inputs[k]:R} = 0x{BitConverter.SingleToUInt32Bits(inputs[k]):X8}): C# {mine:R} " +
                    $"(0x{BitConverter.SingleToUInt32Bits(mine):X8}), native {native[k]:R} (0x{BitConverter.SingleToUInt32Bits(native[k]):X8})");
        }
    }

    [Test]
    public void ExpMatchesTheNativeBuildBitForBit()
    {
        float[] edges =
        [
            0f, -0f, float.NegativeInfinity, -86f, BitConverter.UInt32BitsToSingle(0xC2ABFFFF), BitConverter.UInt32BitsToSingle(0xC2AC0001),
            -float.Epsilon, -1.17549435e-38f, -0.34657359f, -0.34657362f, -0.6931472f, -1.0397208f, -87.33655f, -103.97f, -1e30f, float.MinValue,
        ];
        // Uniform over the bit patterns of [-0, -inf] (most of them below the cutoff), and uniform in value over [-90, 0].
        float[] patterns = Inputs(1, 2_000_000, 0x80000000u, 0xFF800000u, edges);
        var rng = new Random(2);
        float[] values = Enumerable.Range(0, 3_000_000).Select(_ => (float)(-90 * rng.NextDouble())).ToArray();
        AssertSameBits(SaberExactFunction.Exp, patterns, ExactMath.Exp);
        AssertSameBits(SaberExactFunction.Exp, values, ExactMath.Exp);
        Assert.That(ExactMath.Exp(0f), Is.EqualTo(1f));
    }

    [Test]
    public void LogMatchesTheNativeBuildBitForBit()
    {
        float[] edges =
        [
            1f, 1.17549435e-38f, float.MaxValue, BitConverter.UInt32BitsToSingle(0x3F7FFFFF), BitConverter.UInt32BitsToSingle(0x3F800001),
            BitConverter.UInt32BitsToSingle(0x3FB504F2), BitConverter.UInt32BitsToSingle(0x3FB504F3), BitConverter.UInt32BitsToSingle(0x3F3504F3),
            2f, 0.5f, MathF.E, 5.96046448e-08f, 16.6355324f,
        ];
        AssertSameBits(SaberExactFunction.Log, Inputs(3, 4_000_000, 0x00800000u, 0x7F7FFFFFu, edges), ExactMath.Log);
    }

    [Test]
    public void GumbelMatchesTheNativeBuildOnEveryUniformDraw()
    {
        // All 2^23 uniforms of the random layout: u = ((bits >> 9) + 0.5) 2^-23.
        float[] uniforms = Enumerable.Range(0, 1 << 23).Select(high => RandomLayout.ToUniform((uint)high << 9)).ToArray();
        AssertSameBits(SaberExactFunction.Gumbel, uniforms, ExactMath.Gumbel);
    }

    [Test]
    public void FixedTermsMatchTheNativeBuild()
    {
        float[] inputs = Inputs(4, 2_000_000, 0u, 0x3F800000u, 0f, 1f, float.Epsilon, 2.27373675e-13f, 0.99999994f);
        var native = new ulong[inputs.Length];
        fixed (float* i = inputs)
        fixed (ulong* o = native)
            Assert.That(SaberNative.ExactFixedTerms(i, o, inputs.LongLength), Is.EqualTo(SaberStatus.Ok), NativeLibraryFixture.LastError());
        for (int k = 0; k < inputs.Length; k++)
            if (ExactMath.FixedTerm(inputs[k]) != native[k])
                Assert.Fail($"FixedTerm({inputs[k]:R}): C# {ExactMath.FixedTerm(inputs[k])}, native {native[k]}");
        Assert.That(ExactMath.FixedTerm(1f), Is.EqualTo(1UL << ExactMath.FixedBits));
    }

    [Test]
    public void AnInputOutsideTheDomainIsRejectedWithItsIndex()
    {
        float[] inputs = [-1f, float.NaN];
        var outputs = new float[2];
        fixed (float* i = inputs)
        fixed (float* o = outputs)
            Assert.That(SaberNative.ExactEval((int)SaberExactFunction.Exp, i, o, 2), Is.EqualTo(SaberStatus.ErrorInvalidArgument));
        Assert.That(NativeLibraryFixture.LastError(), Does.Match(@"saber_exact_eval: input 1 \(-?nan\) is outside function 0.s domain"));
        Assert.That(outputs, Is.EqualTo(new[] { 0f, 0f }), "nothing written");
    }

    private static bool SameBits(float a, float b) =>
        (float.IsNaN(a) && float.IsNaN(b)) || BitConverter.SingleToUInt32Bits(a) == BitConverter.SingleToUInt32Bits(b);

    private static void AssertSameRow(float[] row, int mask, int token, ConfidenceMetric metric, float temperature, ulong seed, RowCoordinates at)
    {
        int prediction, bad;
        var values = new float[3];
        fixed (float* r = row)
        fixed (float* o = values)
            Assert.That(SaberNative.ExactRow(r, row.Length, mask, token, (int)metric, temperature, seed, at.Step, at.Sequence, at.Position, &prediction, &bad, o),
                Is.EqualTo(SaberStatus.Ok), NativeLibraryFixture.LastError());
        ExactMath.RowResult mine = ExactMath.Row(row, mask, token, metric, temperature, seed, at);
        string where = $"V {row.Length}, mask {mask}, token {token}, {metric}, T {temperature}, seed {seed}, {at}";
        Assert.That(mine.Prediction, Is.EqualTo(prediction), where);
        Assert.That(mine.BadIndex, Is.EqualTo(bad), where);
        if (!SameBits(mine.Confidence, values[0]) || !SameBits(mine.TokenConfidence, values[1]) || !SameBits(mine.Metric, values[2]))
            Assert.Fail($"{where}: C# (c, q, metric) = ({mine.Confidence:R}, {mine.TokenConfidence:R}, {mine.Metric:R}), native ({values[0]:R}, {values[1]:R}, {values[2]:R})");
    }

    [Test]
    public void RowsMatchTheNativeDefinitionBitForBit()
    {
        var rng = new Random(31);
        int[] vocabularies = [1, 2, 3, 5, 37, 1023, 1024, 1025, 2048, 4099];
        for (int i = 0; i < 4000; i++)
        {
            int vocabulary = vocabularies[rng.Next(vocabularies.Length)];
            int mask = rng.Next(vocabulary);
            float[] row = AdversarialRows.Row(rng, vocabulary, rng.Next(AdversarialRows.Kinds), mask);
            int token = rng.Next(3) == 0 ? -1 : rng.Next(vocabulary);
            float temperature = new[] { 0f, 0f, 0.7f, 2.5f }[rng.Next(4)];
            AssertSameRow(row, mask, token, (ConfidenceMetric)rng.Next(4), temperature, (ulong)rng.NextInt64(), new RowCoordinates(rng.Next(1, 100), rng.Next(64), rng.Next(4096)));
        }
    }

    [Test]
    public void LongRowsMatchTheNativeDefinitionBitForBit()
    {
        var rng = new Random(37);
        foreach (var (kind, metric, temperature) in new[] { (0, ConfidenceMetric.NegEntropy, 0f), (2, ConfidenceMetric.Margin, 0.9f), (3, ConfidenceMetric.MaxProb, 0f), (1, ConfidenceMetric.Margin, 0f) })
        {
            const int vocabulary = 151936;   // Qwen-sized: 149 chunks and a partial one
            int mask = rng.Next(vocabulary);
            AssertSameRow(AdversarialRows.Row(rng, vocabulary, kind, mask), mask, rng.Next(vocabulary), metric, temperature, 7, new RowCoordinates(3, 1, 200));
        }
    }
}
