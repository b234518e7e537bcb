using System.Runtime.Intrinsics;

namespace Saber.Tests;

/// <summary>
/// The CPU row pass (vectorised, chunked) against the definition it implements, <see cref="ExactMath.Row"/> (scalar,
/// literal; itself compared bit for bit with the native header in the binding tests): same prediction, same bits of
/// c, q and the metric, the same bad rows.
/// </summary>
public class RowConfidenceKernelTests
{
    private static readonly LogitsElementType[] Types = [LogitsElementType.Float32, LogitsElementType.Float16, LogitsElementType.BFloat16];

    [Test]
    public void AdversarialRowsMatchTheDefinitionBitForBit()
    {
        var rng = new Random(41);
        int[] vocabularies = [1, 2, 3, 5, 8, 9, 37, 1023, 1024, 1025, 2047, 2048, 3000, 4099];
        for (int i = 0; i < 6000; i++)
        {
            int vocabulary = vocabularies[rng.Next(vocabularies.Length)];
            int mask = rng.Next(vocabulary);
            float[] row = AdversarialRows.Row(rng, vocabulary, rng.Next(AdversarialRows.Kinds), mask);
            int token = rng.Next(3) == 0 ? -1 : rng.Next(vocabulary);
            float temperature = new[] { 0f, 0f, 0.7f, 2.5f, 0.7f, 3e38f }[rng.Next(6)];
            AssertMatchesDefinition(row, Types[rng.Next(3)], mask, token, (ConfidenceMetric)rng.Next(4), temperature, (ulong)rng.NextInt64(),
                new RowCoordinates(rng.Next(1, 100), rng.Next(64), rng.Next(4096)));
        }
    }

    [TestCase(151936, 0, ConfidenceMetric.NegEntropy, 0f)]
    [TestCase(151936, 2, ConfidenceMetric.Margin, 0.9f)]
    [TestCase(151936, 1, ConfidenceMetric.MaxProb, 0f)]
    [TestCase(200003, 3, ConfidenceMetric.NegEntropy, 0f)]   // more chunks than fit the stack: pooled partials
    [TestCase(200003, 6, ConfidenceMetric.Random, 1.5f)]
    public void LongRowsMatchTheDefinitionBitForBit(int vocabulary, int kind, ConfidenceMetric metric, float temperature)
    {
        var rng = new Random(vocabulary + kind);
        int mask = rng.Next(vocabulary);
        float[] row = AdversarialRows.Row(rng, vocabulary, kind, mask);
        foreach (LogitsElementType type in Types)
            AssertMatchesDefinition(row, type, mask, rng.Next(vocabulary), metric, temperature, 99, new RowCoordinates(4, 2, 300));
    }

    [Test]
    public void VectorExpEqualsTheScalarExpAcrossItsDomain()
    {
        // Every 11th bit pattern of [−90, −0] (0x80000000 .. 0xC2B40000, 3.3e8 floats), then −∞ and the cutoff's neighbours.
        float[] edges = [float.NegativeInfinity, -0f, 0f, ExactMath.ExpCutoff, MathF.BitDecrement(ExactMath.ExpCutoff), MathF.BitIncrement(ExactMath.ExpCutoff), -1e-30f, -88.7f];
        Span<float> inputs = stackalloc float[8], outputs = stackalloc float[8];
        int mismatches = 0;
        string first = "";
        void Check(Span<float> x, Span<float> y)
        {
            ExactMath.Exp(Vector256.Create(x)).CopyTo(y);
            for (int j = 0; j < 8; j++)
                if (BitConverter.SingleToUInt32Bits(y[j]) != BitConverter.SingleToUInt32Bits(ExactMath.Exp(x[j])) && mismatches++ == 0)
                    first = $"Exp({x[j]:R}): vector {y[j]:R}, scalar {ExactMath.Exp(x[j]):R}";
        }
        edges.CopyTo(inputs);
        Check(inputs, outputs);
        int lane = 0;
        for (ulong bits = 0x80000000u; bits <= 0xC2B40000u; bits += 11)
        {
            inputs[lane++] = BitConverter.UInt32BitsToSingle((uint)bits);
            if (lane == 8)
            {
                Check(inputs, outputs);
                lane = 0;
            }
        }
        Assert.That(mismatches, Is.Zero, first);
    }

    [Test]
    public void ChunkSumsOfTheVectorPathEqualTheScalarDefinition()
    {
        var rng = new Random(43);
        for (int i = 0; i < 3000; i++)
        {
            int length = rng.Next(1, ExactMath.Chunk + 1);
            float[] chunk = AdversarialRows.Row(rng, length, rng.Next(7), 0);
            float max = chunk.Max();
            foreach (bool withEntropy in new[] { false, true })
            {
                ExactMath.ChunkPartial scalar = ExactMath.ChunkOf(chunk, withEntropy);
                // Without the minimum (masked lanes), and with it (unmasked lanes where every logit is within 86 of the maximum).
                foreach (ExactMath.ChunkPartial vector in new[] { ExactMath.ChunkOf(chunk, max, withEntropy), ExactMath.ChunkOf(chunk, max, withEntropy, chunk.Min()) })
                    Assert.That((vector.Sum, vector.Entropy), Is.EqualTo((scalar.Sum, scalar.Entropy)), $"chunk {i}, length {length}, entropy {withEntropy}");
            }
        }
    }

    private static void AssertMatchesDefinition(float[] values, LogitsElementType type, int mask, int token, ConfidenceMetric metric, float temperature,
        ulong seed, RowCoordinates at)
    {
        // The row sits second, after a row of noise, so the pass must find its own row.
        int vocabulary = values.Length;
        var rng = new Random(vocabulary);
        float[] data = Enumerable.Range(0, vocabulary).Select(_ => (float)rng.NextDouble()).Concat(values).ToArray();
        SequenceLogits logits = type switch
        {
            LogitsElementType.Float32 => SequenceLogits.FromFloat32(data, 2, vocabulary),
            LogitsElementType.Float16 => SequenceLogits.FromFloat16(data.Select(x => (Half)x).ToArray(), 2, vocabulary),
            _ => SequenceLogits.FromBFloat16(data.Select(BFloat16Bits.FromSingle).ToArray(), 2, vocabulary),
        };
        // The definition reads the row as the pass does: half and bfloat16 widen to float exactly.
        float[] widened = Enumerable.Range(0, vocabulary).Select(v => logits[1, v]).ToArray();
        ExactMath.RowResult want = ExactMath.Row(widened, mask, token, metric, temperature, seed, at);
        string where = $"{type}, V {vocabulary}, mask {mask}, token {token}, {metric}, T {temperature}, seed {seed}, {at}";
        if (want.BadIndex >= 0)
        {
            var error = Assert.Throws<InvalidLogitsException>(() => RowConfidenceKernel.Compute(logits, 1, mask, token, metric, temperature, seed, at), where)!;
            Assert.That(error.Message, want.BadIndex < vocabulary ? Does.Contain($"vocabulary index {want.BadIndex} ") : Does.Contain("no finite logit"), where);
            return;
        }
        RowConfidence got = RowConfidenceKernel.Compute(logits, 1, mask, token, metric, temperature, seed, at);
        Assert.That(got.Prediction, Is.EqualTo(want.Prediction), where);
        if (!SameBits(got.Confidence, want.Confidence) || !SameBits(got.TokenConfidence, want.TokenConfidence) || !SameBits(got.Metric, want.Metric))
            Assert.Fail($"{where}: row pass (c, q, metric) = ({got.Confidence:R}, {got.TokenConfidence:R}, {got.Metric:R}), " +
                $"definition ({want.Confidence:R}, {want.TokenConfidence:R}, {want.Metric:R})");
    }

    private static bool SameBits(float a, float b) =>
        (float.IsNaN(a) && float.IsNaN(b)) || BitConverter.SingleToUInt32Bits(a) == BitConverter.SingleToUInt32Bits(b);
}
