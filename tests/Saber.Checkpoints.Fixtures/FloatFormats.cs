namespace Saber.Checkpoints.Fixtures;

/// <summary>Element types a fixture checkpoint can store, named as safetensors names them.</summary>
public enum FixtureDType
{
    /// <summary>IEEE single precision (<c>F32</c>).</summary>
    F32,

    /// <summary>bfloat16 (<c>BF16</c>): the top 16 bits of a single, rounded to nearest even.</summary>
    BF16,

    /// <summary>IEEE half precision (<c>F16</c>), rounded to nearest even.</summary>
    F16,
}

/// <summary>Conversions between single precision and the 16-bit formats, bit-exact, written here rather than borrowed so the tests check them.</summary>
public static class FloatFormats
{
    /// <summary>The safetensors <c>dtype</c> string.</summary>
    public static string SafetensorsName(FixtureDType type) => type switch
    {
        FixtureDType.F32 => "F32",
        FixtureDType.BF16 => "BF16",
        FixtureDType.F16 => "F16",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>The <c>torch_dtype</c> spelling of config.json.</summary>
    public static string TorchName(FixtureDType type) => type switch
    {
        FixtureDType.F32 => "float32",
        FixtureDType.BF16 => "bfloat16",
        FixtureDType.F16 => "float16",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>Bytes per element.</summary>
    public static int Size(FixtureDType type) => type == FixtureDType.F32 ? 4 : 2;

    /// <summary>
    /// Single to bfloat16, round-to-nearest-even on the 16 dropped bits (what PyTorch's <c>.to(torch.bfloat16)</c> does);
    /// NaN stays a quiet NaN of the same sign.
    /// </summary>
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return (ushort)((bits >> 16) | 0x0040);
        // Adding 0x7FFF plus the lowest kept bit carries into the kept half exactly when the dropped half is above
        // one half, or exactly one half with an odd kept half: ties go to even. Overflow carries into infinity.
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>bfloat16 to single: exact.</summary>
    public static float FromBFloat16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>
    /// Single to IEEE half, round-to-nearest-even, subnormals and overflow to infinity included. Computed on the
    /// bits here instead of through <see cref="Half"/> so the fixture does not rest on the runtime it tests.
    /// </summary>
    public static ushort ToHalf(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint sign = (bits >> 16) & 0x8000u;
        uint exponent = (bits >> 23) & 0xFFu;
        uint mantissa = bits & 0x7FFFFFu;

        if (exponent == 0xFF)
            return (ushort)(sign | 0x7C00u | (mantissa != 0 ? 0x0200u | (mantissa >> 13) : 0u));

        int halfExponent = (int)exponent - 127 + 15;
        if (halfExponent >= 0x1F)
            return (ushort)(sign | 0x7C00u);

        if (halfExponent <= 0)
        {
            // Subnormal half (or zero): shift the full significand (implicit one included) right and round.
            if (halfExponent < -10)
                return (ushort)sign;
            uint significand = mantissa | 0x800000u;
            int shift = 14 - halfExponent;
            uint kept = significand >> shift;
            uint dropped = significand & ((1u << shift) - 1u);
            uint half = 1u << (shift - 1);
            if (dropped > half || (dropped == half && (kept & 1u) != 0))
                kept++;
            return (ushort)(sign | kept); // a carry into bit 10 makes the smallest normal, as it should
        }

        uint result = ((uint)halfExponent << 10) | (mantissa >> 13);
        uint rest = mantissa & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (result & 1u) != 0))
            result++; // may carry into the exponent, and from the largest finite into infinity: both right
        return (ushort)(sign | result);
    }

    /// <summary>IEEE half to single: exact.</summary>
    public static float FromHalf(ushort bits)
    {
        uint sign = (uint)(bits & 0x8000) << 16;
        int exponent = (bits >> 10) & 0x1F;
        uint mantissa = bits & 0x3FFu;
        if (exponent == 0x1F)
            return BitConverter.UInt32BitsToSingle(sign | 0x7F800000u | (mantissa << 13));
        if (exponent == 0)
        {
            // Subnormal: mantissa × 2^-24, exact in single precision.
            float magnitude = mantissa * (1.0f / 16777216.0f);
            return sign != 0 ? -magnitude : magnitude;
        }
        return BitConverter.UInt32BitsToSingle(sign | ((uint)(exponent - 15 + 127) << 23) | (mantissa << 13));
    }

    /// <summary>Writes <paramref name="value"/> in <paramref name="type"/> at <paramref name="destination"/> (little-endian).</summary>
    public static void Encode(FixtureDType type, float value, Span<byte> destination)
    {
        switch (type)
        {
            case FixtureDType.F32:
                System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(destination, value);
                break;
            case FixtureDType.BF16:
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(destination, ToBFloat16(value));
                break;
            case FixtureDType.F16:
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(destination, ToHalf(value));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type));
        }
    }
}
