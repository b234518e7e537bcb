using System.Runtime.InteropServices;
using Saber.Import.Checkpoints;

namespace Saber.Import;

/// <summary>
/// Converts little-endian float32, float16 and bfloat16 elements between each other, rounding to nearest, ties to even,
/// in one rounding (a narrowing goes through float32, which holds every float16 and bfloat16 value exactly); a NaN stays
/// a NaN of the same sign, infinities stay infinities, and subnormals are kept where the target has them.
/// </summary>
public static class WeightConversion
{
    /// <summary>Bytes per element.</summary>
    public static int ElementSize(WeightType type) => type == WeightType.Float32 ? 4 : 2;

    /// <summary>
    /// Converts the whole elements of <paramref name="source"/> (its length a multiple of the source element size) into
    /// <paramref name="destination"/>, which must hold them; returns the bytes written.
    /// </summary>
    public static int Convert(ReadOnlySpan<byte> source, WeightType from, Span<byte> destination, WeightType to)
    {
        int elements = source.Length / ElementSize(from);
        if (elements * ElementSize(from) != source.Length)
            throw new ArgumentException($"{source.Length} bytes are not whole {from} elements.", nameof(source));
        int written = elements * ElementSize(to);
        if (destination.Length < written)
            throw new ArgumentException($"{destination.Length} bytes cannot hold {elements} {to} elements.", nameof(destination));
        if (from == to)
        {
            source.CopyTo(destination);
            return written;
        }
        switch (from, to)
        {
            case (WeightType.Float32, WeightType.BFloat16):
                Narrow(MemoryMarshal.Cast<byte, float>(source), MemoryMarshal.Cast<byte, ushort>(destination), BFloat16Bits);
                break;
            case (WeightType.Float32, WeightType.Float16):
                Narrow(MemoryMarshal.Cast<byte, float>(source), MemoryMarshal.Cast<byte, ushort>(destination), Float16Bits);
                break;
            case (WeightType.BFloat16, WeightType.Float32):
                Widen(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, float>(destination), FromBFloat16Bits);
                break;
            case (WeightType.Float16, WeightType.Float32):
                Widen(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, float>(destination), FromFloat16Bits);
                break;
            case (WeightType.Float16, WeightType.BFloat16):
                Between(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, ushort>(destination), FromFloat16Bits, BFloat16Bits);
                break;
            case (WeightType.BFloat16, WeightType.Float16):
                Between(MemoryMarshal.Cast<byte, ushort>(source), MemoryMarshal.Cast<byte, ushort>(destination), FromBFloat16Bits, Float16Bits);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(to), to, $"No conversion from {from} to {to}.");
        }
        return written;
    }

    /// <summary>float32 to bfloat16 bits: round to nearest even on the low 16 bits; a NaN keeps its sign and top payload bits and is made quiet so truncation cannot turn it into an infinity.</summary>
    public static ushort BFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>bfloat16 bits to float32 (exact).</summary>
    public static float FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>float32 to float16 bits (.NET's conversion: IEEE round to nearest even, subnormals, NaN kept).</summary>
    public static ushort Float16Bits(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>float16 bits to float32 (exact).</summary>
    public static float FromFloat16Bits(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    private static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination, Func<float, ushort> convert)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = convert(source[i]);
    }

    private static void Widen(ReadOnlySpan<ushort> source, Span<float> destination, Func<ushort, float> convert)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = convert(source[i]);
    }

    private static void Between(ReadOnlySpan<ushort> source, Span<ushort> destination, Func<ushort, float> widen, Func<float, ushort> narrow)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = narrow(widen(source[i]));
    }
}
