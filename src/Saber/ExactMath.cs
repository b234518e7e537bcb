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
}
