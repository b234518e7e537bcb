using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Saber;

/// <summary>
/// The exact step arithmetic of <c>native/src/exact_math.h</c>, operation for operation: each function is a fixed
/// sequence of IEEE-754 single-precision operations rounded to nearest, with every fused multiply-add explicit
/// (<see cref="MathF.FusedMultiplyAdd"/>, which .NET rounds once on every platform) and no other contraction (the JIT
/// never fuses <c>a * b + c</c>). So these functions give the same bits as the native host build and the device.
/// The two must change together; the binding tests compare them bit for bit (docs/arithmetic.md).
/// </summary>
public static class ExactMath
{
    /// <summary>Below this, <see cref="Exp(float)"/> returns 0: every non-zero result is a normal float.</summary>
    public const float ExpCutoff = -86.0f;

    /// <summary>Fixed-point bits of a softmax term (<see cref="FixedTerm"/>).</summary>
    public const int FixedBits = 42;

    private const float FixedScale = 4398046511104.0f;   // 2^FixedBits

    private const float Log2E = 1.44269502f;
    private const float Ln2Hi = 0.693145751953125f;
    private const float Ln2Lo = 1.42860677e-06f;

    /// <summary>1.5·2^23 (bits 0x4B400000): a sum with it in [2^23, 2^24) has an ulp of 1, so adding it rounds to an integer.</summary>
    private const float RoundMagic = 12582912f;

    // The minimax polynomial of degree 6 for 2^f on [−½, ½] (native kExp2C1..6); its constant term is exactly 1.
    private const float Exp2C1 = 6.931472421e-01f, Exp2C2 = 2.402265221e-01f, Exp2C3 = 5.550310388e-02f;
    private const float Exp2C4 = 9.617692791e-03f, Exp2C5 = 1.340664341e-03f, Exp2C6 = 1.559467782e-04f;

    /// <summary>2^k for k in [-126, 127], exact.</summary>
    private static float Pow2(int k) => BitConverter.UInt32BitsToSingle((uint)(k + 127) << 23);

    /// <summary>
    /// e^x for x ≤ 0 (and −∞), native exp_nonpositive: x·log2 e = k + f with t = fma(x, log2e, 1.5·2^23) = 1.5·2^23 + k
    /// (k the integer nearest the exact product, ties to even) and f = fma(x, log2e, −k) in [−½, ½]; 2^f by the degree-6
    /// polynomial; times 2^k exactly. e^0 = 1.
    /// </summary>
    public static float Exp(float x)
    {
        if (!(x >= ExpCutoff)) return 0f;
        float t = MathF.FusedMultiplyAdd(x, Log2E, RoundMagic);
        float k = t - RoundMagic;
        float f = MathF.FusedMultiplyAdd(x, Log2E, -k);
        float p = Exp2C6;
        p = MathF.FusedMultiplyAdd(p, f, Exp2C5);
        p = MathF.FusedMultiplyAdd(p, f, Exp2C4);
        p = MathF.FusedMultiplyAdd(p, f, Exp2C3);
        p = MathF.FusedMultiplyAdd(p, f, Exp2C2);
        p = MathF.FusedMultiplyAdd(p, f, Exp2C1);
        p = MathF.FusedMultiplyAdd(p, f, 1.0f);
        return p * Pow2((int)k);
    }

    /// <summary><see cref="Exp(float)"/> on eight lanes: the same operations lane by lane (a fused multiply-add per
    /// <c>FusedMultiplyAdd</c>), so every lane has the scalar function's bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => ExpTimesPow2(x, 0);

    /// <summary>
    /// <c>Exp(x)·2^extra</c> for 0 ≤ extra ≤ 42, lane by lane. Every non-zero <c>Exp(x)</c> is a normal float of at least
    /// 2^-125, so the scaling is exact whether it is folded into 2^k, as here, or applied afterwards.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ExpTimesPow2(Vector256<float> x, int extra) =>
        // Lanes below the cutoff (and −∞) compute garbage unmasked; the mask zeroes them, as the scalar test does.
        Vector256.GreaterThanOrEqual(x, Vector256.Create(ExpCutoff)) & ExpTimesPow2Unmasked(x, extra);

    /// <summary><see cref="ExpTimesPow2"/> for lanes known to be in [−86, 0] (others get garbage): no cutoff mask.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ExpTimesPow2Unmasked(Vector256<float> x, int extra)
    {
        // t's low bits hold k + 2^22 as an integer (bits(t) = 0x4B400000 + k), which builds 2^k without a conversion.
        var log2e = Vector256.Create(Log2E);
        Vector256<float> t = Vector256.FusedMultiplyAdd(x, log2e, Vector256.Create(RoundMagic));
        Vector256<float> k = t - Vector256.Create(RoundMagic);
        Vector256<float> f = Vector256.FusedMultiplyAdd(x, log2e, -k);
        Vector256<float> p = Vector256.Create(Exp2C6);
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2C5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2C4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2C3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2C2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2C1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256<float>.One);
        // 2^(k + extra): bits (k + extra + 127) << 23, where k = bits(t) − 0x4B400000.
        return p * ((t.AsInt32() - Vector256.Create(0x4B400000 - 127 - extra)) << 23).AsSingle();
    }

    /// <summary>ln x for a positive normal x: x = m·2^k, m in [√½, √2), ln m = 2·atanh((m − 1)/(m + 1)) by its series.</summary>
    public static float Log(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        int k = (int)(u >> 23) - 127;
        uint mantissa = u & 0x007FFFFFu;
        if (mantissa >= 0x003504F3u)
        {
            k++;
            mantissa |= 0x3F000000u;
        }
        else
        {
            mantissa |= 0x3F800000u;
        }
        float m = BitConverter.UInt32BitsToSingle(mantissa);
        float f = m - 1f;
        float s = f / (m + 1f);
        float z = s * s;
        float p = 0.111111112f;
        p = MathF.FusedMultiplyAdd(p, z, 0.142857149f);
        p = MathF.FusedMultiplyAdd(p, z, 0.200000003f);
        p = MathF.FusedMultiplyAdd(p, z, 0.333333343f);
        p *= z;
        float twoS = s + s;
        float lnM = MathF.FusedMultiplyAdd(twoS, p, twoS);
        float kf = k;
        return kf * Ln2Hi + MathF.FusedMultiplyAdd(kf, Ln2Lo, lnM);
    }

    /// <summary>An upper bound of <see cref="Gumbel"/> over every uniform of the random layout (the largest is about
    /// 16.64), as native kGumbelMax: a row pass may skip the draw of an id whose l + T·GumbelMax cannot win.</summary>
    public const float GumbelMax = 16.75f;

    /// <summary>The Gumbel transform −ln(−ln u) of a uniform draw u in [2^-24, 1 − 2^-24].</summary>
    public static float Gumbel(float u) => -Log(-Log(u));

    /// <summary>The prediction score of a logit (native score()): the logit at T = 0, else l + T·g with g the Gumbel
    /// transform of the draw <paramref name="bits"/>, each operation rounded once.</summary>
    public static float Score(float logit, float temperature, uint bits) =>
        temperature > 0f ? logit + temperature * Gumbel(RandomLayout.ToUniform(bits)) : logit;

    /// <summary>⌊e·2^42⌋ for a softmax term e in [0, 1]: integer sums of these are the same in every order.</summary>
    public static ulong FixedTerm(float e) => (ulong)(e * FixedScale);

    /// <summary>The constant partition of a row into chunks of this many ids (a parallel pass splits only between them).</summary>
    public const int Chunk = 1024;

    private const double TwoToMinus42 = 1.0 / FixedScale;

    /// <summary>A chunk's exact maximum and the fixed-point sums of its terms e = exp(l − m) and e·(m − l), class by class.</summary>
    public readonly record struct ChunkPartial(float Max, ulong Sum, ulong Entropy);

    /// <summary>
    /// A chunk's ids fall into 256 classes of four ids 256 apart, {v, v + 256, v + 512, v + 768} (native kClassStride): the
    /// ids that one lane of the CUDA pass holds whatever the row's alignment, and one lane of four vectors here.
    /// </summary>
    public const int ClassStride = 256;

    /// <summary>The scaled terms of a logit in a chunk of maximum <paramref name="max"/> (native scaled_terms):
    /// e·2^42 and (e·(−d))·2^42 with d = l − max and e = <see cref="Exp(float)"/>(d); both 0 for −∞.</summary>
    private static (float Sum, float Entropy) ScaledTerms(float logit, float max)
    {
        if (logit == float.NegativeInfinity) return (0f, 0f);
        float d = logit - max;
        float e = Exp(d);
        return (e * FixedScale, e * -d * FixedScale);
    }

    /// <summary>A class's integer (native class_sum_truncated): the scaled terms of ids v, v + 256, v + 512, v + 768 added
    /// in float as (a + c) + (b + d), then truncated.</summary>
    public static ulong ClassSumTruncated(float a, float b, float c, float d) => (ulong)((a + c) + (b + d));

    /// <summary>The partial of a chunk holding no NaN or +∞ (native chunk_partial_of): its maximum, then the sum over its
    /// classes of <see cref="ClassSumTruncated"/> of the terms (0 past the chunk's end).</summary>
    public static ChunkPartial ChunkOf(ReadOnlySpan<float> chunk, bool withEntropy)
    {
        float max = float.NegativeInfinity;
        foreach (float l in chunk)
            if (l > max) max = l;
        if (max == float.NegativeInfinity) return new ChunkPartial(max, 0, 0);
        ulong sum = 0, entropy = 0;
        Span<(float Sum, float Entropy)> t = stackalloc (float, float)[4];
        for (int v = 0; v < Math.Min(ClassStride, chunk.Length); v++)
        {
            for (int s = 0; s < 4; s++)
            {
                int id = v + s * ClassStride;
                t[s] = id < chunk.Length ? ScaledTerms(chunk[id], max) : (0f, 0f);
            }
            sum += ClassSumTruncated(t[0].Sum, t[1].Sum, t[2].Sum, t[3].Sum);
            if (withEntropy) entropy += ClassSumTruncated(t[0].Entropy, t[1].Entropy, t[2].Entropy, t[3].Entropy);
        }
        return new ChunkPartial(max, sum, entropy);
    }

    /// <summary>
    /// <see cref="ChunkOf(ReadOnlySpan{float}, bool)"/> for a chunk whose maximum <paramref name="max"/> is known, eight
    /// classes at a time: lane j of the four vectors at i, i + 256, i + 512 and i + 768 holds class i + j. A chunk shorter
    /// than 1024 ids is first padded with −∞, whose terms are 0. <paramref name="min"/>, the chunk's minimum when known,
    /// lets a whole chunk whose every logit is within 86 of its maximum skip the cutoff and −∞ masks.
    /// </summary>
    public static ChunkPartial ChunkOf(ReadOnlySpan<float> chunk, float max, bool withEntropy, float min = float.NegativeInfinity)
    {
        if (max == float.NegativeInfinity) return new ChunkPartial(max, 0, 0);
        if (!Vector256.IsHardwareAccelerated) return ChunkOf(chunk, withEntropy);
        if (chunk.Length < Chunk) return PaddedChunkOf(chunk, max, withEntropy);
        // round(l − max) is monotone in l, so every d of the chunk is ≥ −86 when the minimum's is; then no term is 0.
        bool inRange = min - max >= ExpCutoff;
        return (withEntropy, inRange) switch
        {
            (false, false) => ChunkSums<No, No>(chunk, max),
            (false, true) => ChunkSums<No, Yes>(chunk, max),
            (true, false) => ChunkSums<Yes, No>(chunk, max),
            (true, true) => ChunkSums<Yes, Yes>(chunk, max),
        };
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ChunkPartial PaddedChunkOf(ReadOnlySpan<float> chunk, float max, bool withEntropy)
    {
        Span<float> padded = stackalloc float[Chunk];
        chunk.CopyTo(padded);
        padded[chunk.Length..].Fill(float.NegativeInfinity);
        return withEntropy ? ChunkSums<Yes, No>(padded, max) : ChunkSums<No, No>(padded, max);
    }

    /// <summary>Compile-time flags: the JIT compiles one loop per combination, with the untaken branches removed.</summary>
    private interface IFlag { static abstract bool On { get; } }
    private struct Yes : IFlag { public static bool On => true; }
    private struct No : IFlag { public static bool On => false; }

    /// <summary>
    /// The fixed-point sums of a whole chunk (1024 ids), eight classes at a time. A class's integer is below 2^45 and a
    /// chunk's add up to at most 2^52, so int64 lanes (one truncating conversion with AVX-512 DQ) or double lanes (floor,
    /// then widen) add them exactly, in any order. The accumulators are locals, not fields of a struct, so that the JIT
    /// keeps them in registers: a spilled 64-byte accumulator straddles cache lines or not depending on the stack's
    /// alignment, which made the pass's time vary by 1.5x from one process to the next.
    /// </summary>
    private static ChunkPartial ChunkSums<TEntropy, TInRange>(ReadOnlySpan<float> chunk, float max)
        where TEntropy : struct, IFlag where TInRange : struct, IFlag
    {
        ref float first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(chunk);
        var vmax = Vector256.Create(max);
        ulong sum, entropy;
        if (System.Runtime.Intrinsics.X86.Avx512DQ.IsSupported)
        {
            Vector512<long> sums = default, entropies = default;
            for (int i = 0; i < ClassStride; i += Vector256<float>.Count)
            {
                var (classSum, classEntropy) = ClassSums<TEntropy, TInRange>(ref first, i, vmax);
                sums += System.Runtime.Intrinsics.X86.Avx512DQ.ConvertToVector512Int64WithTruncation(classSum);
                if (TEntropy.On)
                    entropies += System.Runtime.Intrinsics.X86.Avx512DQ.ConvertToVector512Int64WithTruncation(classEntropy);
            }
            sum = (ulong)Vector512.Sum(sums);
            entropy = (ulong)Vector512.Sum(entropies);
        }
        else
        {
            Vector256<double> sumsLow = default, sumsHigh = default, entropiesLow = default, entropiesHigh = default;
            for (int i = 0; i < ClassStride; i += Vector256<float>.Count)
            {
                var (classSum, classEntropy) = ClassSums<TEntropy, TInRange>(ref first, i, vmax);
                Vector256<float> whole = Vector256.Floor(classSum);
                sumsLow += Vector256.WidenLower(whole);
                sumsHigh += Vector256.WidenUpper(whole);
                if (TEntropy.On)
                {
                    whole = Vector256.Floor(classEntropy);
                    entropiesLow += Vector256.WidenLower(whole);
                    entropiesHigh += Vector256.WidenUpper(whole);
                }
            }
            sum = (ulong)Vector256.Sum(sumsLow + sumsHigh);
            entropy = (ulong)Vector256.Sum(entropiesLow + entropiesHigh);
        }
        return new ChunkPartial(max, sum, entropy);
    }

    /// <summary>The class sums (before truncation) of classes i … i + 7: the terms of the vectors at i, i + 256, i + 512,
    /// i + 768 added as (t0 + t2) + (t1 + t3), lane by lane; the entropy sums likewise when wanted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Sum, Vector256<float> Entropy) ClassSums<TEntropy, TInRange>(ref float first, int i, Vector256<float> vmax)
        where TEntropy : struct, IFlag where TInRange : struct, IFlag
    {
        Vector256<float> d0 = Vector256.LoadUnsafe(ref first, (nuint)i) - vmax;
        Vector256<float> d1 = Vector256.LoadUnsafe(ref first, (nuint)(i + ClassStride)) - vmax;
        Vector256<float> d2 = Vector256.LoadUnsafe(ref first, (nuint)(i + 2 * ClassStride)) - vmax;
        Vector256<float> d3 = Vector256.LoadUnsafe(ref first, (nuint)(i + 3 * ClassStride)) - vmax;
        Vector256<float> t0 = ScaledTerm<TInRange>(d0), t1 = ScaledTerm<TInRange>(d1), t2 = ScaledTerm<TInRange>(d2), t3 = ScaledTerm<TInRange>(d3);
        Vector256<float> entropy = TEntropy.On
            ? (ScaledEntropyTerm<TInRange>(t0, d0) + ScaledEntropyTerm<TInRange>(t2, d2)) + (ScaledEntropyTerm<TInRange>(t1, d1) + ScaledEntropyTerm<TInRange>(t3, d3))
            : default;
        return ((t0 + t2) + (t1 + t3), entropy);
    }

    /// <summary>e·2^42 for d = l − max, exact; −∞ logits and those below the cutoff give 0, as the definition's terms.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScaledTerm<TInRange>(Vector256<float> d) where TInRange : struct, IFlag =>
        TInRange.On ? ExpTimesPow2Unmasked(d, FixedBits) : ExpTimesPow2(d, FixedBits);

    /// <summary>
    /// (e·(−d))·2^42 = e·2^42·(−d), one rounding either way (a product below 2^-126 before the scaling is the only exception:
    /// it is then subnormal, below 2^-84 after it, and changes no class's integer: native chunk_partial_of). e = 0 must
    /// give 0, not 0·∞ = NaN for a −∞ logit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScaledEntropyTerm<TInRange>(Vector256<float> term, Vector256<float> d) where TInRange : struct, IFlag =>
        TInRange.On ? term * -d : ~Vector256.Equals(term, Vector256<float>.Zero) & (term * -d);

    /// <summary>A row's softmax normaliser: its maximum M, Σ e^(l−M) and Σ e^(l−M)·(M − l), merged from chunk partials in chunk order.</summary>
    public struct RowNormaliser
    {
        public float Max;
        public double Sum;
        public double Entropy;

        /// <summary>Adds a chunk's partial; <see cref="Max"/> must already be the row's maximum.</summary>
        public void Accumulate(ChunkPartial p)
        {
            if (p.Max == float.NegativeInfinity) return;
            float dm = p.Max - Max;
            double scale = (double)Exp(dm) * TwoToMinus42;   // exact: a power-of-two scaling
            double sum = p.Sum;
            Sum += sum * scale;
            Entropy += scale * (p.Entropy + (double)-dm * sum);
        }

        /// <summary>The normaliser of a row from its chunk partials in chunk order (native merge_chunks).</summary>
        public static RowNormaliser Merge(ReadOnlySpan<ChunkPartial> partials)
        {
            var n = new RowNormaliser { Max = float.NegativeInfinity };
            foreach (ChunkPartial p in partials)
                if (p.Max > n.Max) n.Max = p.Max;
            foreach (ChunkPartial p in partials)
                n.Accumulate(p);
            return n;
        }

        /// <summary>s = e^(l − M) / Σ, rounded to float.</summary>
        public readonly float Probability(float logit) => (float)(Exp(logit - Max) / Sum);

        /// <summary>
        /// The low-confidence metric of a row whose prediction has probability <paramref name="confidence"/> and logit
        /// <paramref name="bestLogit"/>; <paramref name="second"/> is the runner-up's id (-1 when none) and
        /// <paramref name="secondLogit"/> its logit.
        /// </summary>
        public readonly float MetricOf(ConfidenceMetric metric, float confidence, float bestLogit, int second, float secondLogit,
            ulong seed, RowCoordinates at, int vocabulary) => metric switch
        {
            ConfidenceMetric.MaxProb => confidence,
            ConfidenceMetric.Margin => second < 0 ? confidence : (float)(((double)Exp(bestLogit - Max) - (double)Exp(secondLogit - Max)) / Sum),
            // Σ s ln s = −(Σ e^(l−M)·(M − l))/Σ − ln Σ; Σ ≥ 1, as the maximum's term is exactly 1.
            ConfidenceMetric.NegEntropy => (float)(-(Entropy / Sum) - (double)Log((float)Sum)),
            _ => RandomLayout.Uniform(seed, at.Step, at.Sequence, at.Position, vocabulary),
        };
    }

    /// <summary>
    /// The best two predictions of a row (native TopTwo): the higher score first, the lower id on equal scores, for ids
    /// offered in ascending order with scores other than −∞. Written as row_reference ranks, so that even a NaN score
    /// (−∞ + T·g = −∞ + ∞ at T near float's maximum) lands where the definition puts it.
    /// </summary>
    public struct TopTwo()
    {
        public int Best = -1;
        public float BestScore = float.NegativeInfinity;
        public int Second = -1;
        public float SecondScore = float.NegativeInfinity;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Offer(int v, float score)
        {
            if (Best < 0 || score > BestScore)
            {
                Second = Best;
                SecondScore = BestScore;
                Best = v;
                BestScore = score;
            }
            else if (Second < 0 || score > SecondScore)
            {
                Second = v;
                SecondScore = score;
            }
        }
    }

    /// <summary>One row's quantities (spec §2) as native/src/exact_math.h's row_reference defines them.</summary>
    /// <param name="Prediction">x̂, or -1 for a bad row.</param>
    /// <param name="BadIndex">-1, or the lowest id of a NaN or +∞ logit, or V when no logit besides the mask id's is finite.</param>
    public readonly record struct RowResult(int Prediction, int BadIndex, float Confidence, float TokenConfidence, float Metric);

    /// <summary>The definition every fast row pass must equal bit for bit (the C# mirror of row_reference).</summary>
    public static RowResult Row(ReadOnlySpan<float> row, int maskId, int token, ConfidenceMetric metric, float temperature, ulong seed, RowCoordinates at)
    {
        int vocabulary = row.Length;
        for (int v = 0; v < vocabulary; v++)
            if (float.IsNaN(row[v]) || float.IsPositiveInfinity(row[v]))
                return new RowResult(-1, v, 0f, 0f, 0f);
        var top = new TopTwo();
        for (int v = 0; v < vocabulary; v++)
        {
            if (v == maskId) continue;
            float score = temperature > 0f ? Score(row[v], temperature, RandomLayout.Bits(seed, at.Step, at.Sequence, at.Position, v)) : row[v];
            if (score != float.NegativeInfinity)
                top.Offer(v, score);
        }
        int best = top.Best, second = top.Second;
        if (best < 0) return new RowResult(-1, vocabulary, 0f, 0f, 0f);

        var n = new RowNormaliser { Max = float.NegativeInfinity };
        foreach (float l in row)
            if (l > n.Max) n.Max = l;
        for (int begin = 0; begin < vocabulary; begin += Chunk)
            n.Accumulate(ChunkOf(row[begin..Math.Min(begin + Chunk, vocabulary)], metric == ConfidenceMetric.NegEntropy));
        float confidence = n.Probability(row[best]);
        float value = n.MetricOf(metric, confidence, row[best], second, second >= 0 ? row[second] : 0f, seed, at, vocabulary);
        return new RowResult(best, -1, confidence, token >= 0 ? n.Probability(row[token]) : float.NaN, value);
    }
}
