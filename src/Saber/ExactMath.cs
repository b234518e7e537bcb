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
    /// <summary>Below this, <see cref="Exp"/> returns 0: every non-zero result is a normal float.</summary>
    public const float ExpCutoff = -86.0f;

    /// <summary>Fixed-point bits of a softmax term (<see cref="FixedTerm"/>).</summary>
    public const int FixedBits = 42;

    private const float Log2E = 1.44269502f;
    private const float Ln2Hi = 0.693145751953125f;
    private const float Ln2Lo = 1.42860677e-06f;

    /// <summary>2^k for k in [-126, 127], exact.</summary>
    private static float Pow2(int k) => BitConverter.UInt32BitsToSingle((uint)(k + 127) << 23);

    /// <summary>e^x for x ≤ 0 (and −∞): Cody-Waite reduction, Taylor polynomial of degree 7, exact scaling. e^0 = 1.</summary>
    public static float Exp(float x)
    {
        if (!(x >= ExpCutoff)) return 0f;
        float k = MathF.Round(x * Log2E);   // ties to even, as rint
        float r = MathF.FusedMultiplyAdd(k, -Ln2Hi, x);
        r = MathF.FusedMultiplyAdd(k, -Ln2Lo, r);
        float p = 1.98412701e-04f;
        p = MathF.FusedMultiplyAdd(p, r, 1.38888892e-03f);
        p = MathF.FusedMultiplyAdd(p, r, 8.33333377e-03f);
        p = MathF.FusedMultiplyAdd(p, r, 4.16666679e-02f);
        p = MathF.FusedMultiplyAdd(p, r, 1.66666672e-01f);
        p = MathF.FusedMultiplyAdd(p, r, 0.5f);
        p = MathF.FusedMultiplyAdd(p, r, 1.0f);
        p = MathF.FusedMultiplyAdd(p, r, 1.0f);
        return p * Pow2((int)k);
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

    /// <summary>The Gumbel transform −ln(−ln u) of a uniform draw u in [2^-24, 1 − 2^-24].</summary>
    public static float Gumbel(float u) => -Log(-Log(u));

    /// <summary>⌊e·2^42⌋ for a softmax term e in [0, 1]: integer sums of these are the same in every order.</summary>
    public static ulong FixedTerm(float e) => (ulong)(e * 4398046511104.0f);

    /// <summary>The constant partition of a row into chunks of this many ids (a parallel pass splits only between them).</summary>
    public const int Chunk = 1024;

    private const double TwoToMinus42 = 1.0 / 4398046511104.0;

    /// <summary>A chunk's exact maximum and the fixed-point sums of e = exp(l − m) and e·(m − l) over its finite logits.</summary>
    public readonly record struct ChunkPartial(float Max, ulong Sum, ulong Entropy);

    /// <summary>The partial of a chunk holding no NaN or +∞.</summary>
    public static ChunkPartial ChunkOf(ReadOnlySpan<float> chunk, bool withEntropy)
    {
        float max = float.NegativeInfinity;
        foreach (float l in chunk)
            if (l > max) max = l;
        if (max == float.NegativeInfinity) return new ChunkPartial(max, 0, 0);
        ulong sum = 0, entropy = 0;
        foreach (float l in chunk)
        {
            if (l == float.NegativeInfinity) continue;
            float d = l - max;
            float e = Exp(d);
            sum += FixedTerm(e);
            if (withEntropy) entropy += FixedTerm(e * -d);
        }
        return new ChunkPartial(max, sum, entropy);
    }

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

        /// <summary>s = e^(l − M) / Σ, rounded to float.</summary>
        public readonly float Probability(float logit) => (float)(Exp(logit - Max) / Sum);
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
        int best = -1, second = -1;
        float bestScore = float.NegativeInfinity, secondScore = float.NegativeInfinity;
        for (int v = 0; v < vocabulary; v++)
        {
            if (v == maskId) continue;
            float score = row[v];
            if (temperature > 0f)
                score += temperature * Gumbel(RandomLayout.Uniform(seed, at.Step, at.Sequence, at.Position, v));
            if (score == float.NegativeInfinity) continue;
            if (best < 0 || score > bestScore)
            {
                second = best;
                secondScore = bestScore;
                best = v;
                bestScore = score;
            }
            else if (second < 0 || score > secondScore)
            {
                second = v;
                secondScore = score;
            }
        }
        if (best < 0) return new RowResult(-1, vocabulary, 0f, 0f, 0f);

        var n = new RowNormaliser { Max = float.NegativeInfinity };
        foreach (float l in row)
            if (l > n.Max) n.Max = l;
        for (int begin = 0; begin < vocabulary; begin += Chunk)
            n.Accumulate(ChunkOf(row[begin..Math.Min(begin + Chunk, vocabulary)], metric == ConfidenceMetric.NegEntropy));
        float confidence = n.Probability(row[best]);
        float value = metric switch
        {
            ConfidenceMetric.MaxProb => confidence,
            ConfidenceMetric.Margin => second < 0 ? confidence : (float)(((double)Exp(row[best] - n.Max) - (double)Exp(row[second] - n.Max)) / n.Sum),
            ConfidenceMetric.NegEntropy => (float)(-(n.Entropy / n.Sum) - (double)Log((float)n.Sum)),
            _ => RandomLayout.Uniform(seed, at.Step, at.Sequence, at.Position, vocabulary),
        };
        return new RowResult(best, -1, confidence, token >= 0 ? n.Probability(row[token]) : float.NaN, value);
    }
}
