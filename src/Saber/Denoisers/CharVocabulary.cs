namespace Saber.Denoisers;

/// <summary>
/// A character vocabulary for small demo models: printable ASCII (32..126) as ids 0..94,
/// newline as 95 and [MASK] as 96.
/// </summary>
public static class CharVocabulary
{
    public const int Size = 97;
    public const int MaskId = 96;
    private const int Newline = 95;

    public static int Encode(char c) => c switch
    {
        '\n' => Newline,
        >= ' ' and <= '~' => c - ' ',
        _ => throw new ArgumentOutOfRangeException(nameof(c), c, $"Character U+{(int)c:X4} is outside the demo vocabulary (printable ASCII and newline)."),
    };

    public static int[] Encode(string text) => text.Select(Encode).ToArray();

    /// <summary>The default glyph of a mask: not a character of the vocabulary ('_' is one).</summary>
    public const char MaskGlyph = '\u2591';

    /// <summary>Decodes one id; the mask shows as <paramref name="mask"/>.</summary>
    public static char Decode(int id, char mask = MaskGlyph) => id switch
    {
        MaskId => mask,
        Newline => '\n',
        >= 0 and < Newline => (char)(' ' + id),
        _ => throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside [0, {Size})."),
    };

    public static string Decode(ReadOnlySpan<int> ids, char mask = MaskGlyph)
    {
        var chars = new char[ids.Length];
        for (int i = 0; i < ids.Length; i++) chars[i] = Decode(ids[i], mask);
        return new string(chars);
    }
}
