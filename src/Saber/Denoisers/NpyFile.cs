using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.RegularExpressions;

namespace Saber.Denoisers;

/// <summary>
/// A NumPy <c>.npy</c> array of little-endian float32 (<c>&lt;f4</c>) or float16 (<c>&lt;f2</c>) in C order,
/// memory-mapped so that files larger than memory work. Format: magic <c>\x93NUMPY</c>, version,
/// header length (2 bytes in v1, 4 in v2/v3), a Python dict literal with <c>descr</c>,
/// <c>fortran_order</c> and <c>shape</c>, then the raw data.
/// </summary>
public sealed partial class NpyFile : IDisposable
{
    // Bytes, not a u8 string literal: "\x93" in C# would be U+0093, which UTF-8 encodes as two bytes.
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>The longest header read (NumPy writes well under 1 KiB; its own reader stops at 10,000 bytes by default).</summary>
    public const int MaxHeaderLength = 1 << 16;

    /// <summary>The highest rank read.</summary>
    public const int MaxRank = 32;

    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;
    private readonly long dataOffset;

    public string Path { get; }
    public IReadOnlyList<long> Shape { get; }
    public LogitsElementType ElementType { get; }
    public int ElementSize => ElementType == LogitsElementType.Float32 ? 4 : 2;

    private NpyFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataOffset, long[] shape, LogitsElementType type)
    {
        Path = path;
        this.map = map;
        this.view = view;
        this.dataOffset = dataOffset;
        Shape = shape;
        ElementType = type;
    }

    /// <summary>Opens and validates a file.</summary>
    /// <exception cref="InvalidDataException">Not a .npy file, an unsupported dtype or layout, or truncated data; the message says which.</exception>
    public static NpyFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
            throw new InvalidDataException($"{path} is a directory, not a .npy file.");
        long headerEnd;
        long[] shape;
        LogitsElementType type;
        using (var stream = File.OpenRead(path))
        {
            (headerEnd, shape, type) = ReadHeader(stream, path);
            long needed = DataBytes(shape, type == LogitsElementType.Float32 ? 4 : 2)
                ?? throw new InvalidDataException($"{path}: shape ({string.Join(", ", shape)}) holds more elements than any file can.");
            long available = stream.Length - headerEnd;
            if (available < needed)
                throw new InvalidDataException($"{path}: truncated: shape ({string.Join(", ", shape)}) needs {needed} bytes of data; the file holds {available}.");
            if (available > needed)
                throw new InvalidDataException($"{path}: {available - needed} bytes follow the data of shape ({string.Join(", ", shape)}).");
        }
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            return new NpyFile(path, map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read), headerEnd, shape, type);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Copies <paramref name="destination"/>.Length elements starting at element <paramref name="firstElement"/>.</summary>
    public unsafe void CopyTo<T>(long firstElement, Span<T> destination) where T : unmanaged
    {
        if (sizeof(T) != ElementSize)
            throw new ArgumentException($"{typeof(T).Name} does not match the file's {ElementType} elements.");
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            new ReadOnlySpan<T>(pointer + view.PointerOffset + dataOffset + firstElement * ElementSize, destination.Length).CopyTo(destination);
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    public void Dispose()
    {
        view.Dispose();
        map.Dispose();
    }

    /// <summary>
    /// The bytes of data a shape holds, or null when the product of its non-zero dimensions (times the element
    /// size) overflows a long: such a shape is rejected even where a zero dimension makes it empty, so that any
    /// product of its dimensions can be computed afterwards without overflow.
    /// </summary>
    private static long? DataBytes(long[] shape, int elementSize)
    {
        long product = elementSize;
        bool empty = false;
        foreach (long d in shape)
        {
            if (d == 0)
            {
                empty = true;
                continue;
            }
            if (product > long.MaxValue / d) return null;
            product *= d;
        }
        return empty ? 0 : product;
    }

    private static (long HeaderEnd, long[] Shape, LogitsElementType Type) ReadHeader(Stream stream, string path)
    {
        Span<byte> prefix = stackalloc byte[12];
        int got = stream.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        if (got < 10 || !prefix[..6].SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a NumPy .npy file (missing the \\x93NUMPY magic).");
        byte major = prefix[6];
        long headerLength, headerStart;
        switch (major)
        {
            case 1:
                headerLength = prefix[8] | (prefix[9] << 8);
                headerStart = 10;
                break;
            case 2 or 3 when got == 12:
                headerLength = (uint)(prefix[8] | (prefix[9] << 8) | (prefix[10] << 16) | (prefix[11] << 24));
                headerStart = 12;
                break;
            default:
                throw new InvalidDataException($"{path}: unsupported .npy format version {major}.{prefix[7]} (1.0, 2.0 and 3.0 are read).");
        }
        if (headerLength > MaxHeaderLength)
            throw new InvalidDataException($"{path}: header of {headerLength} bytes is longer than the {MaxHeaderLength} read.");
        if (headerStart + headerLength > stream.Length)
            throw new InvalidDataException($"{path}: header of {headerLength} bytes runs past the end of the file.");
        var headerBytes = new byte[headerLength];
        stream.Position = headerStart;
        stream.ReadExactly(headerBytes);
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes).Trim();

        Match descr = DescrPattern().Match(header);
        Match fortran = FortranPattern().Match(header);
        Match shape = ShapePattern().Match(header);
        if (!header.StartsWith('{') || !header.EndsWith('}') || !descr.Success || !fortran.Success || !shape.Success)
            throw new InvalidDataException($"{path}: malformed .npy header {header}");

        LogitsElementType type = descr.Groups[1].Value switch
        {
            "<f4" => LogitsElementType.Float32,
            "<f2" => LogitsElementType.Float16,
            var other => throw new InvalidDataException(
                $"{path}: dtype '{other}' is not supported; save little-endian float32 ('<f4', np.float32) or float16 ('<f2')."),
        };
        if (fortran.Groups[1].Value == "True")
            throw new InvalidDataException($"{path}: Fortran-ordered arrays are not supported; save a C-ordered array (np.ascontiguousarray).");

        var dims = new List<long>();
        foreach (string part in shape.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!long.TryParse(part.TrimEnd('L'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long d))
                throw new InvalidDataException($"{path}: bad dimension '{part}' in shape ({shape.Groups[1].Value}): dimensions are integers in [0, {long.MaxValue}].");
            dims.Add(d);
        }
        if (dims.Count > MaxRank)
            throw new InvalidDataException($"{path}: shape of rank {dims.Count}; at most {MaxRank} dimensions are read.");
        return (headerStart + headerLength, dims.ToArray(), type);
    }

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
