using Saber.Onnx;

namespace Saber.Extensions.AI;

/// <summary>
/// The text side of a model, as <see cref="SaberChatClient"/> needs it: prompt text to token ids and generated ids back
/// to text.
/// </summary>
/// <remarks>
/// <para><b>Prefix stability.</b> Streaming (<see cref="SaberChatClient.GetStreamingResponseAsync"/>) emits the text of a
/// final token prefix before the decode ends, so <see cref="Decode"/> must be prefix-stable: for ids <c>t</c> without an
/// end-of-text id and every <c>k</c>, <c>Decode(t[..k])</c> is a prefix of <c>Decode(t)</c>. A character vocabulary has
/// this property; a byte-level BPE that can split a character across ids does not unless its <c>Decode</c> holds back an
/// incomplete character. The client checks the property on every response and fails the stream with
/// <see cref="InvalidOperationException"/> if it is broken.</para>
/// </remarks>
public interface ITextTokenizer
{
    /// <summary>The ids of <paramref name="text"/>. They must be valid prompt tokens: inside the model's vocabulary and never its mask id.</summary>
    int[] Encode(string text);

    /// <summary>The text of <paramref name="tokens"/> (no end-of-text id among them: the client cuts there first).</summary>
    string Decode(ReadOnlySpan<int> tokens);

    /// <summary>The end-of-text id: generated text ends before its first occurrence. Null when the model has none.</summary>
    int? EosId { get; }
}

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
    public int[] Encode(string text)
    {
        int[] ids = tokenizer.Encode(text);
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] == tokenizer.MaskId) ids[i] = tokenizer.UnknownId;
        return ids;
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> tokens) => tokenizer.Decode(tokens);
}
