using System.Runtime.InteropServices;
using Saber.Import.Checkpoints;

namespace Saber.Import.Tests;

/// <summary>The dtype conversions, bit for bit on chosen values: ties to even, overflow, subnormals, infinities, NaN.</summary>
public sealed class WeightConversionTests
{
    private static ushort[] Narrow(WeightType to, params uint[] float32Bits)
    {
        var destination = new ushort[float32Bits.Length];
        WeightConversion.Convert(MemoryMarshal.AsBytes(float32Bits.AsSpan()), WeightType.Float32, MemoryMarshal.AsBytes(destination.AsSpan()), to);
        return destination;
    }

    private static ushort[] Between(WeightType from, WeightType to, params ushort[] bits)
    {
        var destination = new ushort[bits.Length];
        WeightConversion.Convert(MemoryMarshal.AsBytes(bits.AsSpan()), from, MemoryMarshal.AsBytes(destination.AsSpan()), to);
        return destination;
    }

    private static uint[] Widen(WeightType from, params ushort[] bits)
    {
        var destination = new uint[bits.Length];
        WeightConversion.Convert(MemoryMarshal.AsBytes(bits.AsSpan()), from, MemoryMarshal.AsBytes(destination.AsSpan()), WeightType.Float32);
        return destination;
    }

    [Test]
    public void Float32ToBFloat16RoundsToNearestEven()
    {
        Assert.That(Narrow(WeightType.BFloat16,
                0x3F800000,   // 1
                0x3F808000,   // 1 + 2^-8: a tie, the even neighbour is 0x3F80
                0x3F818000,   // a tie whose even neighbour is above: 0x3F82
                0x3F808001,   // just past the tie: up
                0x3F807FFF,   // just short of it: down
                0x80000000,   // -0
                0x7F7FFFFF),  // the largest float rounds to infinity
            Is.EqualTo(new ushort[] { 0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x8000, 0x7F80 }));
    }

    [Test]
    public void Float32ToBFloat16KeepsInfinitiesSubnormalsAndNaN()
    {
        Assert.That(Narrow(WeightType.BFloat16,
                0x7F800000, 0xFF800000,   // ±inf
                0x00010000,               // a subnormal bfloat16 holds exactly
                0x00018000,               // a subnormal tie: to even (2 units)
                0x00008000,               // half the smallest subnormal: a tie to zero
                0x7FC00001,               // quiet NaN: its top bits
                0x7F800001,               // a NaN whose payload is all in the dropped bits: still a NaN, not infinity
                0xFFC00000),              // a negative NaN keeps its sign
            Is.EqualTo(new ushort[] { 0x7F80, 0xFF80, 0x0001, 0x0002, 0x0000, 0x7FC0, 0x7FC0, 0xFFC0 }));
    }

    [Test]
    public void Float32ToFloat16RoundsToNearestEvenWithSubnormalsAndOverflow()
    {
        static uint Bits(float value) => BitConverter.SingleToUInt32Bits(value);
        ushort[] result = Narrow(WeightType.Float16,
            Bits(1f),
            Bits(1f + MathF.Pow(2, -11)),       // a tie: to 0x3C00
            Bits(1f + 3 * MathF.Pow(2, -11)),   // a tie: to 0x3C02
            Bits(65504f),                        // the largest half
            Bits(65520f),                        // a tie between 65504 and 65536: to even, which is infinity
            Bits(MathF.Pow(2, -24)),             // the smallest subnormal half
            Bits(MathF.Pow(2, -25)),             // a tie with zero: zero
            Bits(3 * MathF.Pow(2, -25)),         // a subnormal tie: to even (2 units)
            0x7F800000, 0xFF800000,              // ±inf
            0x7FC00000, 0xFFC00000);             // ±NaN
        Assert.That(result[..10], Is.EqualTo(new ushort[] { 0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x0001, 0x0000, 0x0002, 0x7C00, 0xFC00 }));
        Assert.That(Half.IsNaN(BitConverter.UInt16BitsToHalf(result[10])) && result[10] < 0x8000, "positive NaN");
        Assert.That(Half.IsNaN(BitConverter.UInt16BitsToHalf(result[11])) && result[11] >= 0x8000, "negative NaN");
    }

    [Test]
    public void WideningIsExact()
    {
        Assert.That(Widen(WeightType.BFloat16, 0x3F81, 0x0001, 0xFF80, 0x7FC1), Is.EqualTo(new uint[] { 0x3F810000, 0x00010000, 0xFF800000, 0x7FC10000 }));
        uint[] fromHalf = Widen(WeightType.Float16, 0x3C01, 0x0001, 0x7C00, 0xFE00);
        Assert.That(fromHalf[..3], Is.EqualTo(new[] { BitConverter.SingleToUInt32Bits(1f + MathF.Pow(2, -10)), BitConverter.SingleToUInt32Bits(MathF.Pow(2, -24)), 0x7F800000u }));
        Assert.That(float.IsNaN(BitConverter.UInt32BitsToSingle(fromHalf[3])) && fromHalf[3] >= 0x80000000, "negative NaN");
    }

    [Test]
    public void HalfToBFloat16AndBackRoundOnce()
    {
        Assert.That(Between(WeightType.Float16, WeightType.BFloat16,
                0x3C01,   // 1 + 2^-10: below bfloat16's precision, down to 1
                0x0001,   // the smallest half subnormal, 2^-24, a normal bfloat16
                0x7C00, 0xFC00),
            Is.EqualTo(new ushort[] { 0x3F80, 0x3380, 0x7F80, 0xFF80 }));
        Assert.That(Between(WeightType.BFloat16, WeightType.Float16,
                0x3F81,   // 1 + 2^-7: exact in half
                0x4780,   // 65536: past half's range, infinity
                0x3380,   // 2^-24: half's smallest subnormal
                0x0001),  // a bfloat16 subnormal: zero in half
            Is.EqualTo(new ushort[] { 0x3C08, 0x7C00, 0x0001, 0x0000 }));
        ushort nan = Between(WeightType.BFloat16, WeightType.Float16, 0xFFC1)[0];
        Assert.That(Half.IsNaN(BitConverter.UInt16BitsToHalf(nan)) && nan >= 0x8000, "negative NaN");
    }

    [Test]
    public void TheSameTypeIsCopiedAndPartialElementsAreRefused()
    {
        byte[] source = [1, 2, 3, 4, 5, 6];
        var destination = new byte[6];
        Assert.That(WeightConversion.Convert(source, WeightType.BFloat16, destination, WeightType.BFloat16), Is.EqualTo(6));
        Assert.That(destination, Is.EqualTo(source));
        Assert.Throws<ArgumentException>(() => WeightConversion.Convert(source, WeightType.Float32, new byte[6], WeightType.Float16));
    }
}
