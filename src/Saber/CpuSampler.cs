using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Saber;

/// <summary>
/// The CPU reference sampler: exact to the specification, rows of logits in parallel, one pass
/// over each row. It is the oracle the CUDA sampler is tested against.
/// </summary>
public sealed partial class CpuSampler : ISampler
{
    private readonly ILogger logger;
    private readonly int maxDegreeOfParallelism;

    /// <param name="logger">Receives a summary per decode (Information) and one line per step (Trace).</param>
    /// <param name="maxDegreeOfParallelism">Threads for row computation; -1 uses every core.</param>
    public CpuSampler(ILogger<CpuSampler>? logger = null, int maxDegreeOfParallelism = -1)
    {
        if (maxDegreeOfParallelism == 0 || maxDegreeOfParallelism < -1)
            throw new ArgumentOutOfRangeException(nameof(maxDegreeOfParallelism), maxDegreeOfParallelism, "Use -1 (all cores) or a positive thread count.");
        this.logger = logger ?? NullLogger<CpuSampler>.Instance;
        this.maxDegreeOfParallelism = maxDegreeOfParallelism;
    }

    /// <inheritdoc />
    public async Task<DecodeResult> DecodeAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default)
    {
        using DecodeBatch batch = Begin(denoiser, prompts, options);
        var clock = Stopwatch.StartNew();
        while (!batch.Finished)
            await StepAsync(denoiser, batch, snapshots: false, cancellationToken).ConfigureAwait(false);
        DecodeResult result = batch.ToResult(clock.Elapsed);
        LogDecoded(result, options);
        return result;
    }

    /// <inheritdoc />
    public IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default)
    {
        // Validate now, not at the first MoveNextAsync; the caches are made when the enumeration starts (and released when
        // it ends), so an enumerable never enumerated holds none.
        ArgumentNullException.ThrowIfNull(denoiser);
        DecodeInputs.Validate(prompts, options, denoiser.VocabularySize, denoiser.MaskId, denoiser.MaxSequenceLength);
        foreach (ReadOnlyMemory<int> prompt in prompts)
            CachingDenoisers.CheckFits(denoiser, options.Cache, prompt.Length + options.GenerationLength);
        return Stream(denoiser, prompts, options, cancellationToken);
    }

    private async IAsyncEnumerable<DecodeStepUpdate> Stream(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using DecodeBatch batch = Begin(denoiser, prompts, options);
        var clock = Stopwatch.StartNew();
        while (!batch.Finished)
            yield return await StepAsync(denoiser, batch, snapshots: true, cancellationToken).ConfigureAwait(false);
        LogDecoded(batch.ToResult(clock.Elapsed), batch.Options);
    }

    private DecodeBatch Begin(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(denoiser);
        return DecodeBatch.Create(denoiser, prompts, options, maxDegreeOfParallelism);
    }

    private async ValueTask<DecodeStepUpdate> StepAsync(IDenoiser denoiser, DecodeBatch batch, bool snapshots, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        DenoiseRequest request = batch.NextRequest();
        IReadOnlyList<SequenceLogits> logits = await denoiser.ForwardAsync(request, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<SequenceStep> steps = batch.Apply(logits, snapshots);
        if (logger.IsEnabled(LogLevel.Trace))
            foreach (SequenceStep s in steps)
                LogStep(request.Step, s.Sequence, s.Trace.Committed.Count, s.Trace.Remasked.Count, s.Trace.Tau);
        return new DecodeStepUpdate(request.Step, steps);
    }

    private void LogDecoded(DecodeResult result, DecodeOptions options)
    {
        if (!logger.IsEnabled(LogLevel.Information)) return;
        int tokens = result.Sequences.Sum(s => s.Tokens.Length);
        double nfe = result.Sequences.Count == 0 ? 0 : result.Sequences.Average(s => s.Nfe);
        LogSummary(result.Sequences.Count, options.Strategy.GetType().Name, nfe, tokens, result.Elapsed.TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Decoded {Sequences} sequence(s) with {Strategy}: mean NFE {Nfe:F1}, {Tokens} tokens in {ElapsedMs:F1} ms")]
    private partial void LogSummary(int sequences, string strategy, double nfe, int tokens, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Trace, Message = "Step {Step}, sequence {Sequence}: committed {Committed}, re-masked {Remasked}, tau {Tau}")]
    private partial void LogStep(int step, int sequence, int committed, int remasked, double? tau);
}
