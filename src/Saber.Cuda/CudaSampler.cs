using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Saber.Native;

namespace Saber.Cuda;

/// <summary>
/// The CUDA sampler: the same options, results, streaming and cancellation as <see cref="CpuSampler"/>,
/// with each step's row confidences and decision computed by libsaber_native's kernels. Two kinds of
/// model: an <see cref="IGpuDenoiser"/> writes logits into device memory on the context's stream (the
/// normal path: logits never reach the host, and a decode without streaming or trace waits only for
/// the small status block each step), and a host <see cref="IDenoiser"/>, whose logits are uploaded.
/// <para><b>Re-mask statistics.</b> The decode state stays on the device, and the native step keeps no re-mask counts:
/// <see cref="SequenceResult.RemaskStatistics"/> and <see cref="SequenceStep.RemaskStatistics"/> are counted from the
/// per-step trace read back (with <see cref="DecodeOptions.Trace"/>, Trace-level logging, and in every stream), and are null
/// for a decode that read no trace.</para>
/// </summary>
public sealed partial class CudaSampler(CudaContext context, ILogger<CudaSampler>? logger = null) : ISampler
{
    private readonly CudaContext context = context ?? throw new ArgumentNullException(nameof(context));
    private readonly ILogger logger = logger ?? NullLogger<CudaSampler>.Instance;

    /// <inheritdoc />
    public async Task<DecodeResult> DecodeAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default) =>
        // Invalid input faults the task, as with CpuSampler.
        await Decode(Model.Host(denoiser, prompts, options), prompts, options, cancellationToken).ConfigureAwait(false);

    /// <summary>Decodes with a GPU engine; see <see cref="ISampler.DecodeAsync"/> for the contract.</summary>
    public async Task<DecodeResult> DecodeAsync(IGpuDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default) =>
        await Decode(Model.Gpu(denoiser, prompts, options, context), prompts, options, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default) =>
        Updates(Model.Host(denoiser, prompts, options), prompts, options, cancellationToken);

    /// <summary>Streams the steps of a decode with a GPU engine; see <see cref="ISampler.DecodeStepsAsync"/>.</summary>
    public IAsyncEnumerable<DecodeStepUpdate> DecodeStepsAsync(IGpuDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        CancellationToken cancellationToken = default) =>
        Updates(Model.Gpu(denoiser, prompts, options, context), prompts, options, cancellationToken);

    private async Task<DecodeResult> Decode(Model model, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var traces = prompts.Select(_ => new List<StepTrace>()).ToArray();
        bool readTraces = options.Trace || logger.IsEnabled(LogLevel.Trace);
        StepResult? last = null;
        await foreach (StepResult step in Run(model, prompts, options, everyStep: readTraces, readTraces, cancellationToken).ConfigureAwait(false))
        {
            if (options.Trace && step.Update is not null)
                foreach (SequenceStep s in step.Update.Sequences) traces[s.Sequence].Add(s.Trace);
            last = step;
        }
        if (prompts.Count > 0 && last is null)
            throw new InvalidOperationException("the decode made no step");
        var result = new DecodeResult(prompts.Select((p, b) => new SequenceResult(last!.Canvases[b], p.Length, last.Nfe[b], traces[b].ToArray())
        {
            RemaskStatistics = last.Remasks?[b].Statistics,
        }).ToArray(), clock.Elapsed);
        if (logger.IsEnabled(LogLevel.Information))
            LogSummary(result.Sequences.Count, options.Strategy.GetType().Name, result.Sequences.Count == 0 ? 0 : result.Sequences.Average(s => s.Nfe),
                result.Sequences.Sum(s => s.Tokens.Length), clock.Elapsed.TotalMilliseconds);
        return result;
    }

    private async IAsyncEnumerable<DecodeStepUpdate> Updates(Model model, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (StepResult step in Run(model, prompts, options, everyStep: true, readTraces: true, cancellationToken).ConfigureAwait(false))
            yield return step.Update!;
    }

    /// <summary>A model and how one step's logits reach the device buffer.</summary>
    private sealed class Model
    {
        public required int Vocabulary { get; init; }
        public required int MaskId { get; init; }

        /// <summary>The model reads canvases on the host: they are copied back after every step.</summary>
        public required bool NeedsHostCanvases { get; init; }

        /// <summary>Writes the logits of (step, active sequences) into the decode's logits buffer.</summary>
        public required Func<NativeDecode, int, IReadOnlyList<int>, CancellationToken, ValueTask> Forward { get; init; }

        /// <summary>The cache plan needs the decode state on the host each step; this sampler keeps it on the device.</summary>
        private static void RefuseCache(DecodeOptions options)
        {
            if (options.Cache.Enabled)
                throw new NotSupportedException(
                    $"The CUDA sampler runs cache policy 'none' only (got '{options.Cache.Policy}'): its decode state stays on the device, and the " +
                    "cache plan reads it on the host every step. Cached decodes run on CpuSampler and SaberEngine (docs/caching.md).");
        }

        public static Model Host(IDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options)
        {
            ArgumentNullException.ThrowIfNull(denoiser);
            // The same checks and messages as the CPU sampler; the native layer checks again.
            DecodeInputs.Validate(prompts, options, denoiser.VocabularySize, denoiser.MaskId, denoiser.MaxSequenceLength);
            RefuseCache(options);
            return new Model
            {
                Vocabulary = denoiser.VocabularySize,
                MaskId = denoiser.MaskId,
                NeedsHostCanvases = true,
                Forward = async (decode, step, active, cancellationToken) =>
                {
                    var request = new DenoiseRequest(step, active, active.Select(b => (ReadOnlyMemory<int>)decode.Canvas(b)).ToArray())
                    {
                        LogitsFrom = active.Select(decode.PromptLength).ToArray(),
                    };
                    IReadOnlyList<SequenceLogits> logits = await denoiser.ForwardAsync(request, cancellationToken).ConfigureAwait(false);
                    decode.Upload(request, logits);
                },
            };
        }

        public static Model Gpu(IGpuDenoiser denoiser, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, CudaContext context)
        {
            ArgumentNullException.ThrowIfNull(denoiser);
            DecodeInputs.Validate(prompts, options, denoiser.VocabularySize, denoiser.MaskId, denoiser.MaxSequenceLength);
            RefuseCache(options);
            if (!Enum.IsDefined(denoiser.ElementType))
                throw new ArgumentOutOfRangeException(nameof(denoiser), denoiser.ElementType, "The engine's ElementType is not a LogitsElementType.");
            nint stream = context.Stream;
            return new Model
            {
                Vocabulary = denoiser.VocabularySize,
                MaskId = denoiser.MaskId,
                NeedsHostCanvases = false,
                Forward = (decode, step, _, cancellationToken) => denoiser.ForwardAsync(
                    new GpuForwardRequest(step, decode.Batch, decode.Length, decode.SequenceLengths, decode.CanvasPointer,
                        decode.LogitsPointer(denoiser.ElementType, step), stream) { LogitsFrom = decode.PromptLengths }, cancellationToken),
            };
        }
    }

    /// <summary>
    /// The update of a step (null when only the final state was read) and the state read after it; the re-mask counts of
    /// every sequence when each step's trace was read, else null.
    /// </summary>
    private sealed record StepResult(DecodeStepUpdate? Update, int[][] Canvases, int[] Nfe, RemaskCounter[]? Remasks = null);

    /// <param name="everyStep">Read canvases, NFE and done flags back after every step and yield an update per step;
    /// otherwise wait only for each step's status and yield once, after the last step.</param>
    /// <param name="readTraces">Copy each step's trace back from the device (with <paramref name="everyStep"/>).</param>
    private async IAsyncEnumerable<StepResult> Run(Model model, IReadOnlyList<ReadOnlyMemory<int>> prompts, DecodeOptions options, bool everyStep,
        bool readTraces, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (prompts.Count == 0) yield break;
        using var decode = NativeDecode.Create(context, options, model.Vocabulary, model.MaskId, prompts);
        bool readEveryStep = everyStep || model.NeedsHostCanvases;
        decode.Read();   // the initial canvases; afterwards each step's read-back gives the next step's
        int[] everySequence = Enumerable.Range(0, prompts.Count).ToArray();
        // Counted from the traces; the device keeps no counts (see the class remarks).
        RemaskCounter[]? remasks = everyStep && readTraces
            ? prompts.Select(p => new RemaskCounter(p.Length, options.GenerationLength)).ToArray()
            : null;
        if (!readEveryStep)
        {
            // A device model and only the final state wanted: stay one step ahead. Step k + 1's forward pass and step are
            // queued before step k's status is awaited, so the GPU never waits for the host between steps. A step queued
            // after every sequence has finished changes nothing (finished sequences take no step, count no NFE); it only
            // costs that forward pass.
            for (int step = 1; ; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await model.Forward(decode, step, everySequence, cancellationToken).ConfigureAwait(false);
                decode.Queue(step);
                if (step > 1 && await WaitForStepAsync(decode, step - 1, cancellationToken).ConfigureAwait(false) == 0) break;
            }
            decode.Poll();
            decode.Read();
            yield return new StepResult(null, Enumerable.Range(0, prompts.Count).Select(decode.Canvas).ToArray(), (int[])decode.Nfe.Clone());
            yield break;
        }
        for (int step = 1; ; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // The unfinished sequences are known only with a read-back; a GPU engine runs the whole batch anyway.
            IReadOnlyList<int> active = everySequence.Where(b => !decode.Done[b]).ToArray();
            await model.Forward(decode, step, active, cancellationToken).ConfigureAwait(false);
            int unfinished = decode.Step(step);

            decode.Read();
            if (everyStep)
            {
                var sequences = new List<SequenceStep>(active.Count);
                foreach (int b in active)
                {
                    StepTrace trace = readTraces ? decode.Trace(b, step) : new StepTrace(step, null, [], []);
                    remasks?[b].Add(trace);
                    sequences.Add(new SequenceStep(b, decode.Canvas(b), trace, decode.Done[b]) { RemaskStatistics = remasks?[b].Statistics });
                }
                if (logger.IsEnabled(LogLevel.Trace))
                    foreach (SequenceStep s in sequences)
                        LogStep(step, s.Sequence, s.Trace.Committed.Count, s.Trace.Remasked.Count, s.Trace.Tau);
                yield return new StepResult(new DecodeStepUpdate(step, sequences), Enumerable.Range(0, prompts.Count).Select(decode.Canvas).ToArray(),
                    (int[])decode.Nfe.Clone(), remasks);
            }
            else if (unfinished == 0)
            {
                yield return new StepResult(null, Enumerable.Range(0, prompts.Count).Select(decode.Canvas).ToArray(), (int[])decode.Nfe.Clone());
            }
            if (unfinished == 0) yield break;
        }
    }

    /// <summary>
    /// Waits until the device has finished <paramref name="step"/> without blocking a thread in the driver: queries (which
    /// never wait) with a short spin, then yielding the thread between queries; returns the sequences still unfinished.
    /// </summary>
    private static async ValueTask<int> WaitForStepAsync(NativeDecode decode, int step, CancellationToken cancellationToken)
    {
        var spinner = new SpinWait();
        int unfinished;
        while (!decode.TryFinished(step, out unfinished))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (spinner.NextSpinWillYield) await Task.Yield();
            else spinner.SpinOnce();
        }
        return unfinished;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Decoded {Sequences} sequence(s) with {Strategy} on CUDA: mean NFE {Nfe:F1}, {Tokens} tokens in {ElapsedMs:F1} ms")]
    private partial void LogSummary(int sequences, string strategy, double nfe, int tokens, double elapsedMs);

    [LoggerMessage(Level = LogLevel.Trace, Message = "Step {Step}, sequence {Sequence}: committed {Committed}, re-masked {Remasked}, tau {Tau}")]
    private partial void LogStep(int step, int sequence, int committed, int remasked, double? tau);
}
