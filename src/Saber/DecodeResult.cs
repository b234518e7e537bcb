namespace Saber;

/// <summary>A position that received a token this step.</summary>
/// <param name="Position">Absolute canvas index.</param>
/// <param name="Token">The committed token id.</param>
/// <param name="Confidence"><c>c</c>, the probability of the token under the noise-free softmax.</param>
public readonly record struct CommittedToken(int Position, int Token, float Confidence);

/// <summary>A position that was masked again this step.</summary>
/// <param name="Position">Absolute canvas index.</param>
/// <param name="Delta">Its confidence change <c>Δ</c> (+∞ where not finite).</param>
public readonly record struct RemaskedToken(int Position, float Delta);

/// <summary>What one step did to one sequence. Both lists are sorted by position.</summary>
/// <param name="Step">1-based step number.</param>
/// <param name="Tau">The threshold the draft used (Saber only; null for other strategies).</param>
public sealed record StepTrace(int Step, double? Tau, IReadOnlyList<CommittedToken> Committed, IReadOnlyList<RemaskedToken> Remasked);

/// <summary>One sequence's outcome.</summary>
/// <param name="Canvas">The final canvas: prompt followed by the generation region.</param>
/// <param name="PromptLength"><c>P</c>.</param>
/// <param name="Nfe">Number of steps (model calls) this sequence was active for.</param>
/// <param name="Trace">Per-step trace, or empty when tracing was off.</param>
public sealed record SequenceResult(int[] Canvas, int PromptLength, int Nfe, IReadOnlyList<StepTrace> Trace)
{
    /// <summary>The generation region <c>[P, P+G)</c> of <see cref="Canvas"/>.</summary>
    public ReadOnlySpan<int> Tokens => Canvas.AsSpan(PromptLength);
}

/// <summary>The outcome of a batch decode, one entry per prompt in input order.</summary>
public sealed record DecodeResult(IReadOnlyList<SequenceResult> Sequences, TimeSpan Elapsed)
{
    /// <summary>Model calls made for the whole batch (the largest per-sequence NFE).</summary>
    public int Steps => Sequences.Count == 0 ? 0 : Sequences.Max(s => s.Nfe);
}

/// <summary>One sequence's change in a streamed step.</summary>
/// <param name="Sequence">Index of the sequence in the batch.</param>
/// <param name="Canvas">Snapshot of its canvas after the step.</param>
/// <param name="Trace">What the step committed and re-masked.</param>
/// <param name="Finished">True when this step decoded its last mask.</param>
public sealed record SequenceStep(int Sequence, int[] Canvas, StepTrace Trace, bool Finished);

/// <summary>One step of a streamed decode: the sequences that were active in it.</summary>
public sealed record DecodeStepUpdate(int Step, IReadOnlyList<SequenceStep> Sequences);

/// <summary>Decodes prompts with a masked diffusion model. The CPU reference and the CUDA sampler implement it.</summary>
public interface ISampler
{
    /// <summary>Decodes every prompt to completion.</summary>
    /// <exception cref="ArgumentException">Invalid options or prompts (spec §7); nothing has run.</exception>
    /// <exception cref="InvalidLogitsException">The model returned unusable logits; the decode stops.</exception>
    Task<DecodeResult> DecodeAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CancellationToken cancellationToken = default);

    /// <summary>Decodes every prompt, yielding after each step; cancellation is honoured between steps.</summary>
    IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CancellationToken cancellationToken = default);
}
