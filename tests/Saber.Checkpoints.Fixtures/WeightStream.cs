using System.Runtime.InteropServices;

namespace Saber.Checkpoints.Fixtures;

/// <summary>How a fixture's weights are drawn.</summary>
public enum WeightFill
{
    /// <summary>Seeded normal draws with a per-role scale (see <see cref="FixtureTensor.Scale"/>): activations stay O(1).</summary>
    Gaussian,

    /// <summary>
    /// Matrices as fast pseudo-random bit patterns of magnitude 2^-7 to 2^-5 and random sign (the full-size import
    /// benchmark: gigabytes in seconds); vectors (norms, biases) are still drawn as for <see cref="Gaussian"/>.
    /// </summary>
    FastPattern,
}

/// <summary>
/// Produces one tensor's bytes, chunk by chunk, from a generator seeded by the fixture seed and the tensor's name:
/// a tensor's bits do not depend on which file or position it lands in, so sharded and single-file fixtures agree.
/// </summary>
internal sealed class WeightStream
{
    private readonly FixtureTensor _tensor;
    private readonly FixtureDType _type;
    private readonly bool _fast;
    private ulong _state;
    private double? _spareNormal;

    public WeightStream(FixtureTensor tensor, FixtureDType type, WeightFill fill, ulong seed)
    {
        _tensor = tensor;
        _type = type;
        _fast = fill == WeightFill.FastPattern && tensor.Shape.Length > 1;
        _state = seed ^ Fnv1a(tensor.Name);
        NextRandom(); // decorrelates seeds that differ in few bits
    }

    /// <summary>Fills <paramref name="buffer"/> (a whole number of elements) with the tensor's next elements.</summary>
    public void Fill(Span<byte> buffer)
    {
        if (_fast)
        {
            FillFast(buffer);
            return;
        }
        int size = FloatFormats.Size(_type);
        for (int offset = 0; offset < buffer.Length; offset += size)
            FloatFormats.Encode(_type, NextValue(), buffer.Slice(offset, size));
    }

    private float NextValue() => _tensor.Role switch
    {
        TensorRole.Norm => (float)(1.0 + _tensor.Scale * NextNormal()),
        _ => (float)(_tensor.Scale * NextNormal()),
    };

    private void FillFast(Span<byte> buffer)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("The fast fill writes native-order words; safetensors is little-endian.");
        // Each 64-bit word of random bits holds 4 (16-bit) or 2 (32-bit) elements; one AND and one OR per word keep
        // each element's sign, mantissa and lowest exponent bit and force the other exponent bits, so every value is
        // finite with magnitude in [2^-7, 2^-5) whatever the bits: exponent 120 or 121 for BF16/F32, 8 or 9 for F16.
        (ulong keep, ulong force) = _type switch
        {
            FixtureDType.BF16 => (0x80FF80FF80FF80FFUL, 0x3C003C003C003C00UL), // exponent bits 14..8 = 0111100
            FixtureDType.F16 => (0x87FF87FF87FF87FFUL, 0x2000200020002000UL),  // exponent bits 14..11 = 0100
            _ => (0x80FFFFFF80FFFFFFUL, 0x3C0000003C000000UL),                 // exponent bits 30..24 = 0111100
        };
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(buffer);
        for (int i = 0; i < words.Length; i++)
            words[i] = (NextRandom() & keep) | force;
        int tail = buffer.Length - words.Length * 8;
        if (tail > 0)
        {
            // A tensor whose byte size is not a multiple of 8 ends mid-word: take the whole elements it needs.
            Span<byte> last = stackalloc byte[8];
            MemoryMarshal.Write(last, (NextRandom() & keep) | force);
            last[..tail].CopyTo(buffer[^tail..]);
        }
    }

    private double NextNormal()
    {
        if (_spareNormal is double spare)
        {
            _spareNormal = null;
            return spare;
        }
        // Box-Muller on two uniforms in (0, 1].
        double u1 = ((NextRandom() >> 11) + 1) * (1.0 / 9007199254740992.0);
        double u2 = (NextRandom() >> 11) * (1.0 / 9007199254740992.0);
        double radius = Math.Sqrt(-2.0 * Math.Log(u1));
        _spareNormal = radius * Math.Sin(2.0 * Math.PI * u2);
        return radius * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>SplitMix64: tiny, fast, and good enough for weights nobody trains.</summary>
    private ulong NextRandom()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Fnv1a(string text)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (char c in text)
        {
            hash ^= c;
            hash *= 0x100000001B3UL;
        }
        return hash;
    }
}
