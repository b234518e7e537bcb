namespace Saber.Onnx;

/// <summary>
/// <see cref="ITextTokenizer"/> over the shipped models' <see cref="CharacterTokenizer"/> (one id per Unicode scalar value).
/// Characters outside the vocabulary encode to its unknown id, as in the CLI; so would a character whose id is the
/// mask id (only possible with a one-character mask token), since a prompt must not hold masks.
/// </summary>
public sealed class CharacterTextTokenizer(CharacterTokenizer tokenizer) : ITextTokenizer
{
    private readonly CharacterTokenizer tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <summary>The wrapped tokenizer.</summary>
    public CharacterTokenizer Tokenizer => tokenizer;

    /// <inheritdoc />
    public int? EosId => tokenizer.EosId;

    /// <inheritdoc />
    public int[] Encode(string text) => ((ITextTokenizer)tokenizer).Encode(text);

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> tokens) => tokenizer.Decode(tokens);
}
