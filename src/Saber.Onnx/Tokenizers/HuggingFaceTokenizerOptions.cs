namespace Saber.Onnx.Tokenizers;

/// <summary>What <see cref="HuggingFaceTokenizer.Load"/> cannot read from the tokenizer files alone, or should override.</summary>
public sealed record HuggingFaceTokenizerOptions
{
    /// <summary>
    /// The ids that end generated text (all of them: a model may end a turn with any). Null: the eos ids of
    /// <c>tokenizer_config.json</c>, <c>generation_config.json</c> and <c>config.json</c> in the directory, plus the
    /// chat end-of-turn tokens <c>&lt;|eot_id|&gt;</c> and <c>&lt;|im_end|&gt;</c> where the vocabulary has them.
    /// </summary>
    public IReadOnlyList<int>? EndOfTextIds { get; init; }

    /// <summary>The primary end-of-text id (<see cref="ITextTokenizer.EosId"/>). Null: <c>tokenizer_config.json</c>'s <c>eos_token</c>, else the first end-of-text id.</summary>
    public int? EosId { get; init; }

    /// <summary>The mask id (e.g. from config.json's <c>mask_token_id</c>). Null: looked up from <see cref="MaskToken"/>.</summary>
    public int? MaskId { get; init; }

    /// <summary>
    /// The mask token's text. Null: <c>tokenizer_config.json</c>'s <c>mask_token</c>, else <c>&lt;|mdm_mask|&gt;</c>
    /// (LLaDA) or <c>&lt;|mask|&gt;</c> (Dream) if the vocabulary has one of them.
    /// </summary>
    public string? MaskToken { get; init; }
}
