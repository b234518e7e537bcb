namespace Saber.Checkpoints.Fixtures;

/// <summary>The families the fixtures imitate.</summary>
public enum Family
{
    LLaDA,
    Dream,
}

/// <summary>
/// The token ids of the fixture tokenizers, fixed so that configs, tokenizers and tests agree: ids 0-255 are the 256
/// byte-level symbols, 256 to 256 + <see cref="Merges"/> - 1 the merges, then each family's special tokens in the order below.
/// </summary>
public static class FixtureVocabulary
{
    /// <summary>How many BPE merges the fixture tokenizers have.</summary>
    public const int Merges = 64;

    /// <summary>The first special token's id.</summary>
    public const int FirstSpecial = 256 + Merges;

    /// <summary>LLaDA's special tokens (text, id) as LLaDA-8B spells them; mask <c>&lt;|mdm_mask|&gt;</c>.</summary>
    public static class LLaDA
    {
        public const int Bos = FirstSpecial;            // <|startoftext|>
        public const int Eos = FirstSpecial + 1;        // <|endoftext|>
        public const int Mask = FirstSpecial + 2;       // <|mdm_mask|>
        public const int StartHeader = FirstSpecial + 3; // <|start_header_id|>
        public const int EndHeader = FirstSpecial + 4;   // <|end_header_id|>
        public const int Eot = FirstSpecial + 5;         // <|eot_id|>
        /// <summary>config.json vocab_size: every id the tokenizer knows.</summary>
        public const int VocabSize = FirstSpecial + 6;
        /// <summary>config.json embedding_size: the logits width, padded past vocab_size as OLMo configs allow.</summary>
        public const int EmbeddingSize = VocabSize + 10;
    }

    /// <summary>Dream's special tokens as Dream-v0 spells them; mask <c>&lt;|mask|&gt;</c>.</summary>
    public static class Dream
    {
        public const int EndOfText = FirstSpecial;      // <|endoftext|> (bos, eos and pad of Dream's config)
        public const int ImStart = FirstSpecial + 1;    // <|im_start|>
        public const int ImEnd = FirstSpecial + 2;      // <|im_end|>
        public const int Mask = FirstSpecial + 3;       // <|mask|>
        /// <summary>config.json vocab_size (Dream's logits width too).</summary>
        public const int VocabSize = FirstSpecial + 4;
    }
}
