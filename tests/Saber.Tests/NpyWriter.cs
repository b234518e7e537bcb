using System.Text;

namespace Saber.Tests;

/// <summary>Writes .npy files byte by byte as NumPy's format description says (kept apart from the reader).</summary>
internal static class NpyWriter
{
    public static string Write(string path, string descr, long[] shape, byte[] data, bool fortran = false, int version = 1, string? header = null)
    {
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        header ??= $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({dims}), }}";
        int prefix = version == 1 ? 10 : 12;
        // Pad with spaces so that the data starts at a multiple of 64, ending the header with '\n'.
        int total = (prefix + header.Length + 1 + 63) / 64 * 64;
        header = header.PadRight(total - prefix - 1) + "\n";
        using var stream = File.Create(path);
        stream.Write([0x93, .. "NUMPY"u8, (byte)version, 0]);
        if (version == 1) stream.Write(BitConverter.GetBytes((ushort)header.Length));
        else stream.Write(BitConverter.GetBytes((uint)header.Length));
        stream.Write(Encoding.Latin1.GetBytes(header));
        stream.Write(data);
        return path;
    }

    public static string WriteFloat32(string path, long[] shape, float[] values) =>
        Write(path, "<f4", shape, values.SelectMany(BitConverter.GetBytes).ToArray());
}
