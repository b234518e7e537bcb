using System.Numerics;
using System.Text;
using CsCheck;
using Saber.Denoisers;
using static Saber.Tests.Fuzz.Fuzz;

namespace Saber.Tests.Fuzz;

/// <summary>
/// The .npy reader and the replay denoiser on generated files, well-formed and mutated: each file either opens,
/// and then its shape accounts for exactly the data bytes, or is refused with <see cref="InvalidDataException"/>.
/// </summary>
public class NpyFuzzTests
{
    public enum Edit { FlipBits, SetByte, Truncate, Append, Delete, Insert, HeaderLengthField, VersionByte }

    /// <summary>A byte-level edit of the written file; positions wrap around the file length.</summary>
    public sealed record Mutation(Edit Kind, int Position, int Value)
    {
        public override string ToString() => $"{Kind}@{Position}:{Value}";
    }

    /// <summary>
    /// A file: NumPy's format written out (see <see cref="Build"/>) with optional replacements of the shape text or the
    /// whole header, a data size off by <see cref="DataDelta"/> bytes, then byte edits.
    /// </summary>
    public sealed record NpyCase(int Version, string Descr, bool Fortran, long[] Shape, int Style, string? ShapeText, string? HeaderText,
        int DataDelta, int DataSeed, Mutation[] Mutations, int MaskChoice)
    {
        /// <summary>Written by the format's rules with nothing replaced or edited.</summary>
        public bool Pristine => ShapeText is null && HeaderText is null && Mutations.Length == 0;

        public bool Supported => Descr is "<f4" or "<f2" && !Fortran && DataLength == NeededBytes;

        private long NeededBytes => Shape.Aggregate(1L, (p, d) => p * d) * ElementSize;

        /// <summary>Bytes of data written: what the shape needs plus <see cref="DataDelta"/> (never below zero); a few bytes for shapes too large to write.</summary>
        public int DataLength => Math.Max(0, (Shape.All(d => d <= 1 << 12) && NeededBytes <= 1 << 18 ? (int)NeededBytes : 64) + DataDelta);

        public int ElementSize => Descr switch { "<f2" or "<i2" => 2, "<f8" or "<i8" => 8, "|u1" or "|b1" => 1, _ => 4 };

        public override string ToString() =>
            $"v{Version} descr {Descr} fortran {Fortran} shape ({string.Join(", ", Shape)}) style {Style}" +
            (ShapeText is null ? "" : $" shape text {Show(ShapeText)}") + (HeaderText is null ? "" : $" header {Show(HeaderText)}") +
            $" data {DataDelta:+0;-#} bytes, mask choice {MaskChoice}" +
            (Mutations.Length == 0 ? "" : $", edits [{string.Join(", ", Mutations.Select(m => m.ToString()))}]");
    }

    // ---- generators ----

    private static readonly string[] HugeOrOddDims =
    [
        "9223372036854775807", "4611686018427387904", "2305843009213693952", "9223372036854775808", "18446744073709551616",
        "2147483647", "2147483648", "4294967296", "4294967297", "-1", "-9223372036854775808", "-0", "0", "1", "3", "3L", "1LL", "L",
        "", "1e3", "0x10", "+2", " 2 ", "２", "٣", "2.0", "None", "2**62", "1_000", "0b1", "00000000000000000000003", "\u00A0" + "2", "ﬀ",
    ];

    private static readonly string[] OddHeaders =
    [
        "", "{}", "{", "}", "not a dict", "{'descr': '<f4'}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 9223372036854775807), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904, 0), }",
        "{'descr': '<f2', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4611686018427387904), }",
        "{'descr': '<f4', 'fortran_order': false, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (2,), }",
        "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '', 'fortran_order': False, 'shape': (), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': ((1, 2), 3), }",
        "{'descr': 'ünïcödé', 'fortran_order': False, 'shape': (1,), }",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\0\0\0",
        "{'descr': '<f4', 'fortran_order': True, 'fortran_order': False, 'shape': (1,), }",
        "\u0093NUMPY{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
    ];

    private static readonly Gen<string> ShapeTextGen =
        from dims in Gen.OneOf(HugeOrOddDims).Array[0, 4]
        from separator in Gen.OneOf(", ", ",", " , ", ",,")
        from trailing in Gen.OneOf("", ",", ", ", ")", "(")
        select string.Join(separator, dims) + trailing;

    private static readonly Gen<string> HeaderTextGen = AnyOf(
        Gen.OneOf(OddHeaders),
        Gen.String[0, 80],
        Gen.String[Gen.Char[' ', '~'], 0, 120],
        from descr in Gen.OneOf("<f4", "<f2", "'<f4'", "<f4\"", "")
        from order in Gen.OneOf("False", "True", "0", "", "False False")
        from shape in ShapeTextGen
        select $"{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({shape}), }}");

    private static readonly Gen<Mutation> MutationGen =
        Gen.Select(Gen.Enum<Edit>(), Gen.Int[0, 1 << 16], Gen.Int, (kind, position, value) => new Mutation(kind, position, value));

    private static readonly Gen<NpyCase> CaseGen =
        from version in Gen.Int[1, 3]
        from descr in Gen.Frequency<string>((8, Gen.OneOf("<f4", "<f2")), (1, Gen.OneOf("<f8", ">f4", ">f2", "|u1", "<i4", "<i2", "<f4 ", "f4", "<F4", "")))
        from fortran in Gen.Frequency((6, false), (1, true))
        from shape in Gen.Frequency<long[]>((1, Gen.Long[0, 4].Array[0, 4]), (1, Gen.Long[1, 5].Array[3]))   // rank 3 with V > 0: replayable
        from style in Gen.Int[0, 31]
        from shapeText in Gen.Frequency<string?>((5, Gen.Const((string?)null)), (2, ShapeTextGen.Select(s => (string?)s)))
        from headerText in Gen.Frequency<string?>((8, Gen.Const((string?)null)), (1, HeaderTextGen.Select(s => (string?)s)))
        from dataDelta in Gen.Frequency<int>((6, Gen.Const(0)), (1, Gen.Int[-9, 9]))
        from dataSeed in Gen.Int
        from mutations in Gen.Frequency<Mutation[]>((1, Gen.Const(Array.Empty<Mutation>())), (1, MutationGen.Array[1, 3]))
        from maskChoice in Gen.Int[0, 7]
        select new NpyCase(version, descr, fortran, shape, style, shapeText, headerText, dataDelta, dataSeed, mutations, maskChoice);

    // ---- the file, written here from NumPy's format description (independent of the reader) ----

    private static string HeaderOf(NpyCase c)
    {
        if (c.HeaderText is not null) return c.HeaderText;
        bool doubleQuotes = (c.Style & 1) != 0, longSuffix = (c.Style & 2) != 0, reversed = (c.Style & 4) != 0, compact = (c.Style & 8) != 0;
        string q = doubleQuotes ? "\"" : "'";
        string shape = c.ShapeText ?? (c.Shape.Length == 1
            ? $"{c.Shape[0]}{(longSuffix ? "L" : "")},"
            : string.Join(compact ? "," : ", ", c.Shape.Select(d => $"{d}{(longSuffix ? "L" : "")}")));
        string[] items =
        [
            $"{q}descr{q}: {q}{c.Descr}{q}",
            $"{q}fortran_order{q}: {(c.Fortran ? "True" : "False")}",
            $"{q}shape{q}: ({shape})",
        ];
        if (reversed) Array.Reverse(items);
        return "{" + string.Join(compact ? "," : ", ", items) + (compact ? "}" : ", }");
    }

    /// <summary>The file's bytes: magic, version, header length, header padded to 64 bytes (unless style bit 16), data, then the edits.</summary>
    public static byte[] Build(NpyCase c)
    {
        string header = HeaderOf(c);
        int prefix = c.Version == 1 ? 10 : 12;
        byte[] text = (c.Version == 3 ? Encoding.UTF8 : Encoding.Latin1).GetBytes(header);
        int padded = (c.Style & 16) != 0 ? text.Length + 1 : (prefix + text.Length + 1 + 63) / 64 * 64 - prefix;
        int dataLength = c.DataLength;
        var bytes = new List<byte>(prefix + padded + dataLength);
        bytes.AddRange([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)c.Version, 0]);
        if (c.Version == 1) bytes.AddRange(BitConverter.GetBytes((ushort)padded));
        else bytes.AddRange(BitConverter.GetBytes((uint)padded));
        bytes.AddRange(text);
        bytes.AddRange(Enumerable.Repeat((byte)' ', padded - text.Length - 1));
        bytes.Add((byte)'\n');
        var data = new byte[dataLength];
        new Random(c.DataSeed).NextBytes(data);
        bytes.AddRange(data);
        foreach (Mutation m in c.Mutations) Apply(bytes, m, c.Version);
        return bytes.ToArray();
    }

    private static void Apply(List<byte> bytes, Mutation m, int version)
    {
        int at = bytes.Count == 0 ? 0 : m.Position % bytes.Count;
        switch (m.Kind)
        {
            case Edit.FlipBits when bytes.Count > 0:
                bytes[at] ^= (byte)(m.Value | 1);
                break;
            case Edit.SetByte when bytes.Count > 0:
                bytes[at] = (byte)m.Value;
                break;
            case Edit.Truncate:
                bytes.RemoveRange(at, bytes.Count - at);
                break;
            case Edit.Append:
                bytes.AddRange(Enumerable.Repeat((byte)m.Value, 1 + (m.Position & 15)));
                break;
            case Edit.Delete when bytes.Count > 0:
                bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + (m.Value & 7)));
                break;
            case Edit.Insert:
                bytes.InsertRange(at, Enumerable.Repeat((byte)m.Value, 1 + (m.Position & 7)));
                break;
            case Edit.HeaderLengthField:
            {
                int prefix = version == 1 ? 10 : 12;
                long current = bytes.Count >= prefix ? (version == 1 ? BitConverter.ToUInt16([.. bytes[8..10]]) : BitConverter.ToUInt32([.. bytes[8..12]])) : 0;
                long value = (m.Value & 7) switch
                {
                    0 => 0,
                    1 => 1,
                    2 => bytes.Count - prefix + 1,          // one byte past the end
                    3 => bytes.Count - prefix,              // exactly to the end: no data
                    4 => current + 1 + (m.Position & 63),
                    5 => current - 1 - (m.Position & 63),
                    6 => 0xFFFF,
                    _ => 0xFFFFFFFF,
                };
                byte[] field = version == 1 ? BitConverter.GetBytes((ushort)value) : BitConverter.GetBytes((uint)value);
                for (int i = 0; i < field.Length && 8 + i < bytes.Count; i++) bytes[8 + i] = field[i];
                break;
            }
            case Edit.VersionByte when bytes.Count > 6:
                bytes[6] = (byte)((m.Value & 7) switch { 0 => 0, 1 => 1, 2 => 2, 3 => 3, 4 => 4, 5 => 255, _ => m.Value });
                break;
        }
    }

    /// <summary>Where the data starts by the format's rules, read from the bytes; null where the prefix itself is unreadable.</summary>
    private static long? DataOffset(byte[] bytes)
    {
        if (bytes.Length < 10) return null;
        return bytes[6] switch
        {
            1 => 10 + (long)BitConverter.ToUInt16(bytes, 8),
            2 or 3 when bytes.Length >= 12 => 12 + (long)BitConverter.ToUInt32(bytes, 8),
            _ => null,
        };
    }

    private static float ElementAt(byte[] bytes, long offset, int elementSize, long index) => elementSize == 4
        ? BitConverter.ToSingle(bytes, (int)(offset + index * 4))
        : (float)BitConverter.ToHalf(bytes, (int)(offset + index * 2));

    /// <summary>The mask id to try: from the intended vocabulary size V (last dimension of a rank-3 shape).</summary>
    private static int MaskId(NpyCase c)
    {
        long v = c.Shape.Length == 3 ? c.Shape[2] : 1;
        return c.MaskChoice switch
        {
            0 or 1 => 0,
            2 => (int)v - 1,
            3 => (int)v,
            4 => -1,
            5 => int.MaxValue,
            6 => int.MinValue,
            _ => (int)(v / 2),
        };
    }

    // ---- the properties ----

    /// <summary>Checks one case; returns what happened ("npy opened, replay refused", ...) for the coverage table.</summary>
    private static string Check(NpyCase c, Fuzz.Scratch scratch)
    {
        byte[] bytes = Build(c);
        string path = scratch.NewPath(".npy");
        File.WriteAllBytes(path, bytes);
        try
        {
            return $"{(c.Pristine ? "well-formed" : "mutated")}: npy {CheckNpyFile(c, path, bytes)}, replay {CheckReplay(c, path, bytes, MaskId(c))}";
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string CheckNpyFile(NpyCase c, string path, byte[] bytes)
    {
        NpyFile file;
        try
        {
            file = NpyFile.Open(path);
        }
        catch (InvalidDataException e)
        {
            Require(!(c.Pristine && c.Supported), $"a well-formed {c.Descr} file was refused: {e.Message}");
            return "refused";
        }
        catch (Exception e)
        {
            throw new PropertyViolation($"NpyFile.Open threw {e.GetType().FullName} (only InvalidDataException may escape): {e.Message}");
        }
        using (file)
        {
            Require(!c.Pristine || c.Supported, $"an unsupported file was accepted (descr {c.Descr}, fortran {c.Fortran}, {c.DataDelta} extra bytes)");
            long? offset = DataOffset(bytes);
            Require(offset is not null && offset <= bytes.Length, $"opened, but the prefix says version {(bytes.Length > 6 ? bytes[6] : -1)} or a header past the end");
            long dataBytes = bytes.Length - offset!.Value;
            Require(file.Shape.All(d => d >= 0), $"negative dimension in ({string.Join(", ", file.Shape)})");
            Require(file.ElementType is LogitsElementType.Float32 or LogitsElementType.Float16, $"element type {file.ElementType}");
            Require(file.ElementSize == (file.ElementType == LogitsElementType.Float32 ? 4 : 2), $"element size {file.ElementSize} for {file.ElementType}");
            BigInteger elements = file.Shape.Aggregate(BigInteger.One, (p, d) => p * d);
            Require(elements * file.ElementSize == dataBytes,
                $"shape ({string.Join(", ", file.Shape)}) x {file.ElementSize} bytes = {elements * file.ElementSize}, but the file holds {dataBytes} data bytes");
            if (c.Pristine)
            {
                Require(file.Shape.SequenceEqual(c.Shape), $"shape ({string.Join(", ", file.Shape)}), written ({string.Join(", ", c.Shape)})");
                Require(file.ElementType == (c.Descr == "<f4" ? LogitsElementType.Float32 : LogitsElementType.Float16), $"element type {file.ElementType} for {c.Descr}");
            }
            // Every element reads back as the bytes at the data offset.
            int count = (int)elements;
            var read = new float[count];
            if (file.ElementType == LogitsElementType.Float32)
                file.CopyTo<float>(0, read);
            else
            {
                var halves = new Half[count];
                file.CopyTo<Half>(0, halves);
                for (int i = 0; i < count; i++) read[i] = (float)halves[i];
            }
            for (int i = 0; i < count; i++)
                Require(read[i].Equals(ElementAt(bytes, offset.Value, file.ElementSize, i)), $"element {i} reads {read[i]}, the file holds {ElementAt(bytes, offset.Value, file.ElementSize, i)}");
        }
        return "opened";
    }

    private static string CheckReplay(NpyCase c, string path, byte[] bytes, int maskId)
    {
        bool expectOpen = c.Pristine && c.Supported && c.Shape.Length == 3 && c.Shape.All(d => d > 0) && maskId >= 0 && maskId < c.Shape[2];
        ReplayDenoiser replay;
        try
        {
            replay = new ReplayDenoiser(path, maskId);
        }
        catch (InvalidDataException e)
        {
            Require(!expectOpen, $"ReplayDenoiser refused a well-formed [steps, L, V] file: {e.Message}");
            return "refused";
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == "maskId")
        {
            Require(!expectOpen, $"ReplayDenoiser refused mask id {maskId} for V = {(c.Shape.Length == 3 ? c.Shape[2] : -1)}");
            // The file itself must be a valid rank-3 array whose V excludes the mask id.
            using NpyFile file = NpyFile.Open(path);
            Require(file.Shape.Count == 3 && (maskId < 0 || maskId >= file.Shape[2]), $"mask id {maskId} refused for shape ({string.Join(", ", file.Shape)})");
            return "refused the mask id";
        }
        catch (Exception e)
        {
            throw new PropertyViolation($"new ReplayDenoiser(path, {maskId}) threw {e.GetType().FullName} (only InvalidDataException, or ArgumentOutOfRangeException for the mask id, may escape): {e.Message}");
        }
        using (replay)
        {
            Require(!c.Pristine || expectOpen, $"ReplayDenoiser accepted shape ({string.Join(", ", c.Shape)}) with mask id {maskId}");
            Require(replay.Steps >= 1 && replay.Length >= 1 && replay.VocabularySize >= 1, $"opened with steps {replay.Steps}, L {replay.Length}, V {replay.VocabularySize}");
            Require(maskId >= 0 && maskId < replay.VocabularySize && replay.MaskId == maskId, $"mask id {maskId} accepted for V {replay.VocabularySize}");
            IReadOnlyList<SequenceLogits> logits;
            try
            {
                logits = replay.ForwardAsync(new DenoiseRequest(1, [0], [new int[replay.Length]]), CancellationToken.None).AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                throw new PropertyViolation($"ForwardAsync(step 1) on an opened replay threw {e.GetType().FullName}: {e.Message}");
            }
            Require(logits.Count == 1 && logits[0].Rows == replay.Length && logits[0].Vocabulary == replay.VocabularySize,
                $"step 1 gave {logits.Count} x [{logits[0].Rows}, {logits[0].Vocabulary}] for L {replay.Length}, V {replay.VocabularySize}");
            long offset = DataOffset(bytes)!.Value;
            int size = logits[0].ElementType == LogitsElementType.Float32 ? 4 : 2;
            for (int row = 0; row < replay.Length; row++)
                for (int v = 0; v < replay.VocabularySize; v++)
                {
                    float expected = ElementAt(bytes, offset, size, (long)row * replay.VocabularySize + v);
                    Require(logits[0][row, v].Equals(expected), $"step 1 logit [{row}, {v}] is {logits[0][row, v]}, the file holds {expected}");
                }
        }
        return "opened";
    }

    [Test]
    public void NpyFilesOpenOrSayWhy()
    {
        using var scratch = new Fuzz.Scratch();
        Fuzz.Sample(CaseGen, c => Check(c, scratch), cases: 3000, print: c => c.ToString());
    }

    /// <summary>Shapes whose element count or byte count does not fit in 64 bits, in every header version: refused, not overflowed.</summary>
    [Test]
    public void HugeDimensionsAreRefused()
    {
        Gen<NpyCase> huge =
            from version in Gen.Int[1, 3]
            from descr in Gen.OneOf("<f4", "<f2")
            from big in Gen.OneOf(9223372036854775807L, 4611686018427387904L, 2305843009213693952L, 1L << 40, 1L << 31, long.MaxValue / 2 + 1)
            from rank in Gen.Int[1, 4]
            from others in Gen.Long[1, 4].Array[4]
            from at in Gen.Int[0, 3]
            from twice in Gen.Bool
            from longSuffix in Gen.Bool
            select new NpyCase(version, descr, false,
                Enumerable.Range(0, rank).Select(i => i == at % rank || (twice && i == (at + 1) % rank) ? big : others[i]).ToArray(),
                longSuffix ? 2 : 0, null, null, 0, 1, [], 0);
        using var scratch = new Fuzz.Scratch();
        Fuzz.Sample(huge, c =>
        {
            byte[] bytes = Build(c);
            string path = scratch.NewPath(".npy");
            File.WriteAllBytes(path, bytes);
            try
            {
                try
                {
                    using NpyFile file = NpyFile.Open(path);
                    throw new PropertyViolation($"opened a file of {bytes.Length} bytes as shape ({string.Join(", ", file.Shape)})");
                }
                catch (InvalidDataException)
                {
                }
                catch (Exception e) when (e is not PropertyViolation)
                {
                    throw new PropertyViolation($"NpyFile.Open threw {e.GetType().FullName} (only InvalidDataException may escape): {e.Message}");
                }
            }
            finally
            {
                File.Delete(path);
            }
        }, cases: 200, print: c => c.ToString());
    }
}
