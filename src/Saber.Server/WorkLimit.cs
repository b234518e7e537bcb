using Saber.Extensions.AI;

namespace Saber.Server;

/// <summary>
/// The bound on the work of one generation request: its worst-case forward passes, at most
/// <see cref="SaberServerOptions.MaxForwardPassesPerToken"/> per generated position. Checked when the request's decode
/// options are known and before it is submitted, so that a refused request costs the engine nothing.
/// </summary>
/// <remarks>
/// The worst case comes from the specification (SABER_SPEC.md §3–5): low-confidence runs exactly its <c>S</c> steps,
/// one forward pass each, and may take up to 16 per position (<see cref="LowConfidenceStrategy.MaxStepsPerPosition"/>);
/// Saber (re-masking at most <c>|D| − 1</c> of a step's <c>|D|</c> commits), threshold and factor (each committing at
/// least one position a step, never re-masking) commit at least one token net per step, so they take at most <c>G</c>.
/// A cache adds no passes: its full pass (refresh) is that step's own decoding call (docs/caching.md).
/// </remarks>
public static class WorkLimit
{
    /// <summary>The most forward passes a decode with <paramref name="options"/> can take (its NFE at worst).</summary>
    public static long WorstCaseForwardPasses(DecodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Strategy is LowConfidenceStrategy lowConfidence ? lowConfidence.Steps : options.GenerationLength;
    }

    /// <summary>Refuses, with a 400 naming the setting and both counts, a request whose worst case is above the limit.</summary>
    internal static void Check(DecodeOptions options, SaberServerOptions limits)
    {
        long passes = WorstCaseForwardPasses(options);
        long limit = (long)limits.MaxForwardPassesPerToken * options.GenerationLength;
        if (passes <= limit) return;
        throw OpenAIErrorException.BadRequest(
            $"This request may take {passes} forward passes, above this server's limit of {limit} for its {options.GenerationLength} generated positions " +
            $"({SaberServerOptions.SectionName}:{nameof(SaberServerOptions.MaxForwardPassesPerToken)} = {limits.MaxForwardPassesPerToken} per position); " +
            $"lower \"{SaberChatOptionKeys.Steps}\".",
            options.Strategy is LowConfidenceStrategy ? SaberChatOptionKeys.Steps : "max_tokens", "too_much_work");
    }
}
