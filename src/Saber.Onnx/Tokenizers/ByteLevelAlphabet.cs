namespace Saber.Onnx.Tokenizers;

/// <summary>
/// GPT-2's byte-level alphabet, which Hugging Face's ByteLevel pre-tokenizer and decoder use: each of the 256 byte
/// values is shown as one printable character (printable Latin-1 bytes as themselves, the rest as U+0100 upwards, so a
/// space is 'Ġ'), which is how byte-level BPE vocabularies and merges spell their tokens.
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>The character of each byte value.</summary>
    public static IReadOnlyList<char> CharacterOfByte { get; } = BuildCharacters();

    private static readonly Dictionary<char, byte> ByteOfCharacter =
        Enumerable.Range(0, 256).ToDictionary(b => CharacterOfByte[b], b => (byte)b);

    /// <summary>The byte a vocabulary character stands for; false for a character outside the alphabet.</summary>
    public static bool TryGetByte(char character, out byte value) => ByteOfCharacter.TryGetValue(character, out value);

    private static char[] BuildCharacters()
    {
        var characters = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            characters[b] = printable ? (char)b : (char)next++;
        }
        return characters;
    }
}
