namespace Saber.Extensions.AI;

/// <summary>
/// A request whose prompt and output do not fit the model's positions (<see cref="SaberChatClientOptions.MaxSequenceLength"/>):
/// the prompt plus G, the output limit rounded up to a multiple of the block length, is more than the model takes.
/// Carries the numbers, so that a caller (the server) can say in its own words how much fits.
/// </summary>
public sealed class ContextLengthExceededException : ArgumentOutOfRangeException
{
    internal ContextLengthExceededException(string paramName, int maxOutputTokens, int promptTokens, int maxSequenceLength, int blockLength, int largestFit, string message)
        : base(paramName, maxOutputTokens, message)
    {
        MaxOutputTokens = maxOutputTokens;
        PromptTokens = promptTokens;
        MaxSequenceLength = maxSequenceLength;
        BlockLength = blockLength;
        LargestFit = largestFit;
    }

    /// <summary>The output limit L asked for.</summary>
    public int MaxOutputTokens { get; }

    /// <summary>The prompt's tokens, after the template.</summary>
    public int PromptTokens { get; }

    /// <summary>The model's positions.</summary>
    public int MaxSequenceLength { get; }

    /// <summary>K, the block length the request used.</summary>
    public int BlockLength { get; }

    /// <summary>The largest output limit that fits with this prompt (and the explicit block length, if any); 0 when none does.</summary>
    public int LargestFit { get; }
}
