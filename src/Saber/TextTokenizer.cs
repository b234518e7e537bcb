namespace Saber;

/// <summary>
/// The text side of a model: prompt text to token ids and generated ids back to text (what a chat client over a
/// sampler needs, e.g. Saber.Extensions.AI's SaberChatClient).
/// </summary>
/// <remarks>
/// <para><b>Prefix stability.</b> A client that streams text before a decode ends emits the text of a final token
/// prefix, so <see cref="Decode"/> must be prefix-stable: for ids <c>t</c> without an end-of-text id and every
/// <c>k</c>, <c>Decode(t[..k])</c> is a prefix of <c>Decode(t)</c>. A character vocabulary has this property; a
/// byte-level BPE that can split a character across ids does not unless its <c>Decode</c> holds back an incomplete
/// character. SaberChatClient checks the property on every response and fails the stream with
/// <see cref="InvalidOperationException"/> if it is broken.</para>
/// </remarks>
public interface ITextTokenizer
{
    /// <summary>The ids of <paramref name="text"/>. They must be valid prompt tokens: inside the model's vocabulary and never its mask id.</summary>
    int[] Encode(string text);

    /// <summary>The text of <paramref name="tokens"/> (no end-of-text id among them: clients cut there first).</summary>
    string Decode(ReadOnlySpan<int> tokens);

    /// <summary>The end-of-text id: generated text ends before its first occurrence. Null when the model has none.</summary>
    int? EosId { get; }
}
