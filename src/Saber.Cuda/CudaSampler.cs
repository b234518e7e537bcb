using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>
/// The CUDA sampler: the same options, results, streaming and cancellation as <see cref="CpuSampler"/>,
/// with each step's row confidences and decision computed by libsaber_native's kernels. This first
/// version serves host denoisers: their logits are uploaded each step (device engines that write
/// logits in place arrive with the engines).
/// </summary>
public sealed partial class CudaSampler(CudaContext context, ILogger<CudaSampler>? logger = null) : ISampler
{
    private readonly CudaContext context = context ?? throw new ArgumentNullException(nameof(context));
    private readonly ILogger logger = logger ?? NullLogger<CudaSampler>.Instance;

    /// <inheritdoc />
    public async Task<DecodeResult> DecodeAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default)
    {
        Validate(denoiser, prompts, options);
        var clock = Stopwatch.StartNew();
        var traces = prompts.Select(_ => new List<StepTrace>()).ToArray();
        int[][] canvases = [];
        int[] nfe = [];
        await foreach (StepResult step in Run(denoiser, prompts, options, readTraces: options.Trace || logger.IsEnabled(LogLevel.Trace), cancellationToken).ConfigureAwait(false))
        {
            if (options.Trace)
                foreach (SequenceStep s in step.Update.Sequences) traces[s.Sequence].Add(s.Trace);
            canvases = step.Canvases;
            nfe = step.Nfe;
        }
        if (prompts.Count > 0 && canvases.Length == 0)
            throw new InvalidOperationException("the decode made no step");
        var result = new DecodeResult(prompts.Select((p, b) => new SequenceResult(canvases[b], p.Length, nfe[b], traces[b].ToArray())).ToArray(), clock.Elapsed);
        if (logger.IsEnabled(LogLevel.Information))
            LogSummary(result.Sequences.Count, options.Strategy.GetType().Name, result.Sequences.Count == 0 ? 0 : result.Sequences.Average(s => s.Nfe),
                result.Sequences.Sum(s => s.Tokens.Length), clock.Elapsed.TotalMilliseconds);
        return result;
    }

    /// <inheritdoc />
    public IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default)
    {
        Validate(denoiser, prompts, options);
        return Updates(denoiser, prompts, options, cancellationToken);
    }

    private async IAsyncEnumerable<DecodeStepUpdate> Updates(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (StepResult step in Run(denoiser, prompts, options, readTraces: true, cancellationToken).ConfigureAwait(false))
            yield return step.Update;
    }

    private static void Validate(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(denoiser);
        // The same checks and messages as the CPU sampler; the native layer checks again.
        DecodeInputs.Validate(prompts, options, denoiser.VocabularySize, denoiser.MaskId);
    }

    private sealed record StepResult(DecodeStepUpdate Update, int[][] Canvases, int[] Nfe);

    /// <param name="readTraces">Copy each step's trace back from the device (streaming, or a decode asked for its trace).</param>
    private async IAsyncEnumerable<StepResult> Run(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, bool readTraces,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (prompts.Count == 0) yield break;
        using var decode = NativeDecode.Create(context, options, denoiser.VocabularySize, denoiser.MaskId, prompts);
        decode.Read();   // afterwards, each step's read-back gives the next step's canvases
        for (int step = 1; ; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            List<int> active = Enumerable.Range(0, prompts.Count).Where(b => !decode.Done[b]).ToList();
            if (active.Count == 0) yield break;

            var request = new DenoiseRequest(step, active, active.Select(b => (ReadOnlyMemory<int>)decode.Canvas(b)).ToArray());
            IReadOnlyList<SequenceLogits> logits = await denoiser.ForwardAsync(request, cancellationToken).ConfigureAwait(false);
            decode.Upload(request, logits);
            decode.Step(step);

            decode.Read();
            var sequences = new List<SequenceStep>(active.Count);
            foreach (int b in active)
                sequences.Add(new SequenceStep(b, decode.Canvas(b), readTraces ? decode.Trace(b, step) : new StepTrace(step, null, [], []), decode.Done[b]));
            if (logger.IsEnabled(LogLevel.Trace))
                foreach (SequenceStep s in sequences)
                    LogStep(step, s.Sequence, s.Trace.Committed.Count, s.Trace.Remasked.Count, s.Trace.Tau);
            yield return new StepResult(new DecodeStepUpdate(step, sequences), Enumerable.Range(0, prompts.Count).Select(decode.Canvas).ToArray(),
                (int[])decode.Nfe.Clone());
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Decoded {Sequences} sequence(s) with {Strategy} on CUDA: mean NFE {Nfe:F1}, {Tokens} tokens in {ElapsedMs:F1} ms")]
    private partial void LogSummary(int sequences, string strategy, double nfe, int tokens, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Trace, Message = "Step {Step}, sequence {Sequence}: committed {Committed}, re-masked {Remasked}, tau {Tau}")]
    private partial void LogStep(int step, int sequence, int committed, int remasked, double? tau);
}
