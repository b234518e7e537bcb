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

    /// <summary>
    /// Every id where generated text ends (e.g. LLaDA-Instruct's <c>&lt;|eot_id|&gt;</c> and <c>&lt;|endoftext|&gt;</c>):
    /// text ends before the first occurrence of any. By default <see cref="EosId"/> alone.
    /// </summary>
    IReadOnlyList<int> EndOfTextIds => EosId is int eos ? [eos] : [];
}

/// <summary>Helpers over <see cref="ITextTokenizer"/>.</summary>
public static class TextTokenizerExtensions
{
    /// <summary>The index of the first end-of-text id in <paramref name="tokens"/> (<see cref="ITextTokenizer.EndOfTextIds"/>), or -1.</summary>
    public static int IndexOfEndOfText(this ITextTokenizer tokenizer, ReadOnlySpan<int> tokens)
    {
        IReadOnlyList<int> ends = tokenizer.EndOfTextIds;
        for (int i = 0; i < tokens.Length; i++)
            for (int e = 0; e < ends.Count; e++)
                if (tokens[i] == ends[e]) return i;
        return -1;
    }
}
