using System.Runtime.CompilerServices;

namespace Saber;

/// <summary>
/// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator, so any draw can be computed
/// directly from its coordinates. The CUDA kernels use the same function, which is what lets the
/// CPU and GPU paths produce identical noise.
/// </summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>Ten rounds of Philox4x32 on counter (c0..c3) with key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint X0, uint X1, uint X2, uint X3) Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n1 = (uint)p1;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            uint n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        }
        return (c0, c1, c2, c3);
    }
}

/// <summary>
/// The one place that defines how random draws are laid out, shared by the CPU sampler, the CUDA
/// kernels (<c>native/src/kernels</c>) and the tests. Change it only together with all of them.
/// <para>
/// Key: <c>(k0, k1) = (low 32 bits of seed, high 32 bits of seed)</c>.
/// Counter for the draw at (step, sequence, position, v):
/// <c>(c0, c1, c2, c3) = (v / 4, position, sequence, step)</c>; the draw is output word <c>v % 4</c>.
/// <c>step</c> is 1-based, <c>sequence</c> is the index of the sequence in the caller's batch,
/// <c>position</c> is the absolute canvas index and <c>v</c> the vocabulary index.
/// One Philox call thus yields the draws of four consecutive vocabulary entries.
/// </para>
/// <para>
/// Uniform: <c>u = ((x &gt;&gt; 9) + 0.5) · 2^-23</c> in float32: exact, strictly inside (0, 1).
/// (23 bits, not 24: with 24, <c>(2^24 − 1) + 0.5</c> rounds to <c>2^24</c> in float32 and u becomes 1.)
/// Gumbel: <c>g = −ln(−ln u)</c> with <see cref="ExactMath.Log"/> (the same bits on every side, unlike library
/// logarithms); the score is <c>ℓ + T·g</c> in float32.
/// The <c>random</c> confidence metric uses the uniform at <c>v = V</c> (one past the vocabulary),
/// which no Gumbel draw uses.
/// </para>
/// </summary>
public static class RandomLayout
{
    /// <summary>The raw 32-bit draw at the given coordinates.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bits(ulong seed, int step, int sequence, int position, int v) =>
        Pick(Words(seed, step, sequence, position, v), v);

    /// <summary>All four draws of the counter that holds vocabulary index v (those of v − v % 4 … v − v % 4 + 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint X0, uint X1, uint X2, uint X3) Words(ulong seed, int step, int sequence, int position, int v) =>
        Philox.Generate((uint)v >> 2, (uint)position, (uint)sequence, (uint)step, (uint)seed, (uint)(seed >> 32));

    /// <summary>Index v's draw among its counter's four <paramref name="words"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Pick((uint X0, uint X1, uint X2, uint X3) words, int v) =>
        (v & 3) switch { 0 => words.X0, 1 => words.X1, 2 => words.X2, _ => words.X3 };

    /// <summary>Maps 32 random bits to a float32 uniform strictly inside (0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniform(uint bits) => ((bits >> 9) + 0.5f) * (1f / 8388608f);

    /// <summary>The uniform draw at the given coordinates.</summary>
    public static float Uniform(ulong seed, int step, int sequence, int position, int v) =>
        ToUniform(Bits(seed, step, sequence, position, v));

    /// <summary>The Gumbel draw at the given coordinates: <see cref="ExactMath.Gumbel"/> of the uniform.</summary>
    public static float Gumbel(ulong seed, int step, int sequence, int position, int v) =>
        ExactMath.Gumbel(Uniform(seed, step, sequence, position, v));
}
