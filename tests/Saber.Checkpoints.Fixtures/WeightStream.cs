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
        // Whole 64-bit words of random bits, then each element's exponent forced into a narrow band so the values
        // are finite and small whatever the bits: no NaN or infinity can reach the importer's statistics.
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(buffer);
        for (int i = 0; i < words.Length; i++)
            words[i] = NextRandom();
        for (int i = words.Length * 8; i < buffer.Length; i++)
            buffer[i] = (byte)NextRandom();

        switch (_type)
        {
            case FixtureDType.BF16:
                Span<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(buffer);
                for (int i = 0; i < bf16.Length; i++)
                {
                    // sign | exponent 120 or 121 (2^-7 .. 2^-5) | 7 mantissa bits
                    uint r = bf16[i];
                    bf16[i] = (ushort)((r & 0x807Fu) | ((120u + ((r >> 7) & 1u)) << 7));
                }
                break;
            case FixtureDType.F16:
                Span<ushort> f16 = MemoryMarshal.Cast<byte, ushort>(buffer);
                for (int i = 0; i < f16.Length; i++)
                {
                    // sign | exponent 8 or 9 (2^-7 .. 2^-5) | 10 mantissa bits; one exponent bit comes from bit 10
                    uint r = f16[i];
                    f16[i] = (ushort)((r & 0x83FFu) | ((8u + ((r >> 10) & 1u)) << 10));
                }
                break;
            default:
                Span<uint> f32 = MemoryMarshal.Cast<byte, uint>(buffer);
                for (int i = 0; i < f32.Length; i++)
                {
                    uint r = f32[i];
                    f32[i] = (r & 0x807FFFFFu) | ((120u + ((r >> 23) & 1u)) << 23);
                }
                break;
        }
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("The fast fill writes native-order words; safetensors is little-endian.");
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
