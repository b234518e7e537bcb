namespace Saber.Onnx;

/// <summary>
/// A model directory's tokenizer as the CLI, the server and the chat client use it: the shipped models'
/// <see cref="CharacterTokenizer"/> or an imported checkpoint's byte-level BPE tokenizer.
/// </summary>
public interface IModelTokenizer : ITextTokenizer
{
    /// <summary>Ids the tokenizer knows, <c>[0, VocabularySize)</c>; a model's logits may be wider (LLaDA's padded embedding).</summary>
    int VocabularySize { get; }

    /// <summary>The [MASK] id.</summary>
    int MaskId { get; }

    /// <summary>How a masked position is shown in text: a glyph that no token decodes to.</summary>
    string MaskGlyph { get; }

    /// <summary>
    /// Like <see cref="ITextTokenizer.Encode"/>; <paramref name="unknown"/> lists the distinct characters the vocabulary
    /// cannot represent (encoded as an unknown id), in order of appearance: always empty for a byte-level tokenizer.
    /// </summary>
    int[] Encode(string text, out IReadOnlyList<string> unknown);

    /// <summary>The text of <paramref name="tokens"/> up to the first end-of-text id, masks shown as <paramref name="mask"/> (default: <see cref="MaskGlyph"/>).</summary>
    string Decode(ReadOnlySpan<int> tokens, string? mask);
}
