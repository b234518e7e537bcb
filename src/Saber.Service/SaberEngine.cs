using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Saber.Service;

/// <summary>
/// Serves decode requests from any number of threads on one <see cref="IDenoiser"/> with step-level continuous
/// batching: one background loop runs the steps; between two steps it retires finished and cancelled requests and
/// admits waiting ones (first come, first served), so one forward pass serves every active sequence.
/// </summary>
/// <remarks>
/// <para><b>Batch invariance.</b> Each request keeps its own decode state (<see cref="DecodeOptions"/>, strategy, commit
/// confidences, τ, block) and its own step counter, 1, 2, 3, ... from its admission. Its random draws (T &gt; 0, the
/// random metric) are keyed by (its seed, its own step, sequence 0, position): a request is decoded as the only
/// sequence of a batch would be by <see cref="CpuSampler"/>. So its tokens, NFE and trace are bit-identical to
/// <c>CpuSampler.DecodeAsync(denoiser, [prompt], options)</c>, whenever it was admitted and whatever ran beside
/// it, provided the denoiser's logits for a canvas do not depend on the other canvases of the call.</para>
/// <para><b>The denoiser.</b> The engine is its only caller: one <see cref="IDenoiser.ForwardAsync"/> at a time, from
/// the loop, and every row of the returned logits is consumed before the next call. In one call,
/// <see cref="DenoiseRequest.SequenceIds"/> holds each canvas's slot in the engine (unique among the active requests,
/// stable for a request's lifetime, reused after it), and <see cref="DenoiseRequest.Step"/> the smallest own step among
/// the call's sequences (their common step under <see cref="SaberEngineOptions.GroupByStep"/>).</para>
/// <para><b>Failures.</b> Invalid options or prompts, a canvas longer than the model takes, a full engine or a disposed
/// one fail the submission alone, before admission. An exception from the denoiser fails every request of that forward
/// pass with that exception; a logits count that does not match the call fails them with
/// <see cref="InvalidLogitsException"/>; a bad row (shape, NaN) fails only its request. The engine keeps serving.</para>
/// <para><b>Cancellation and disposal.</b> A cancelled waiting request leaves the queue at once; a cancelled active one
/// leaves at the next step boundary; its task is cancelled and nothing else changes. <see cref="DisposeAsync"/> stops
/// admissions, cancels the forward pass in flight (through its token), and when it returns every request not
/// finished before is cancelled.</para>
/// <para><b>Metrics.</b> Requests by outcome, queue and active counts, steps, forward passes, NFE, re-masks and durations go to
/// the <c>Saber.Service</c> meter (<see cref="SaberEngineMetrics"/>).</para>
/// </remarks>
public sealed partial class SaberEngine : IAsyncDisposable
{
    /// <summary>Below this many logits per step, rows are computed on the loop thread (as <c>DecodeBatch</c> does).</summary>
    private const long ParallelThreshold = 1 << 16;

    private readonly IDenoiser denoiser;
    private readonly SaberEngineOptions options;
    private readonly ILogger logger;
    private readonly SaberEngineMetrics metrics;
    private readonly object gate = new();
    private readonly LinkedList<Request> waiting = new();   // under gate
    private readonly CancellationTokenSource shutdown = new();
    private readonly Task loop;
    private int outstanding;                                 // waiting + active, under gate
    private int active;                                      // under gate
    private bool disposed;                                   // under gate: no more submissions; the loop stops
    private bool disposeCalled;                              // under gate
    private TaskCompletionSource? idle;                      // under gate: the loop sleeps on it
    private long nextId;
    private long forwardPasses;
    private long steps;

    /// <param name="denoiser">The model. The engine becomes its only caller.</param>
    /// <param name="options">Limits and grouping; null takes the defaults.</param>
    /// <param name="logger">Admissions, completions and failures (Debug), rejections (Warning), denoiser failures (Error), steps (Trace).</param>
    public SaberEngine(IDenoiser denoiser, SaberEngineOptions? options = null, ILogger<SaberEngine>? logger = null)
        : this(denoiser, options, logger, meterFactory: null)
    {
    }

    /// <param name="denoiser">The model. The engine becomes its only caller.</param>
    /// <param name="options">Limits and grouping; null takes the defaults.</param>
    /// <param name="logger">As in the other constructor; null logs nothing.</param>
    /// <param name="meterFactory">
    /// Creates the <see cref="SaberEngineMetrics.MeterName"/> meter the engine reports to (see <see cref="SaberEngineMetrics"/>);
    /// null reports to a process-wide meter of that name.
    /// </param>
    public SaberEngine(IDenoiser denoiser, SaberEngineOptions? options, ILogger<SaberEngine>? logger, IMeterFactory? meterFactory)
    {
        ArgumentNullException.ThrowIfNull(denoiser);
        options ??= new SaberEngineOptions();
        options.Validate();
        this.denoiser = denoiser;
        this.options = options;
        this.logger = logger ?? NullLogger<SaberEngine>.Instance;
        metrics = SaberEngineMetrics.For(meterFactory, options.ModelId);
        loop = Task.Run(RunAsync);
    }

    /// <summary>The options in force.</summary>
    public SaberEngineOptions Options => options;

    /// <summary>Requests waiting for admission (a snapshot).</summary>
    public int WaitingCount { get { lock (gate) return waiting.Count; } }

    /// <summary>Requests decoding (a snapshot).</summary>
    public int ActiveCount { get { lock (gate) return active; } }

    /// <summary>Forward passes (denoiser calls) made so far.</summary>
    public long ForwardPasses => Interlocked.Read(ref forwardPasses);

    /// <summary>Engine steps run so far (one step serves every active request, in one or more forward passes).</summary>
    public long Steps => Interlocked.Read(ref steps);

    /// <summary>Decodes one prompt to completion alongside whatever else the engine serves.</summary>
    /// <returns>
    /// The sequence's result, bit-identical to <see cref="CpuSampler"/> decoding this prompt alone. The task faults with
    /// <see cref="ArgumentException"/> (invalid input, spec §7), <see cref="SaberEngineFullException"/>,
    /// <see cref="ObjectDisposedException"/>, or the denoiser's exception; it is cancelled when
    /// <paramref name="cancellationToken"/> fires or the engine is disposed first.
    /// </returns>
    public Task<SequenceResult> DecodeAsync(ReadOnlyMemory<int> prompt, DecodeOptions options, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            metrics.RequestCancelled(Stopwatch.GetTimestamp());
            return Task.FromCanceled<SequenceResult>(cancellationToken);
        }
        try
        {
            return Submit(prompt, options, cancellationToken, streamSteps: false).Completion.Task;
        }
        catch (Exception e)
        {
            return Task.FromException<SequenceResult>(e);
        }
    }

    /// <summary>
    /// Submits one prompt now and streams what each of its steps did (<see cref="SequenceStep.Sequence"/> is 0, steps
    /// are its own); the last update has <see cref="SequenceStep.Finished"/> set. Updates are buffered until read.
    /// Leaving the enumeration early cancels the request; a failure or cancellation is thrown after the updates before it.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid input (spec §7), thrown by this call.</exception>
    /// <exception cref="SaberEngineFullException">The engine is full, thrown by this call.</exception>
    public IAsyncEnumerable<SequenceStep> DecodeStepsAsync(ReadOnlyMemory<int> prompt, DecodeOptions options, CancellationToken cancellationToken = default)
    {
        var abandon = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Request request;
        try
        {
            request = Submit(prompt, options, abandon.Token, streamSteps: true);
        }
        catch
        {
            abandon.Dispose();
            throw;
        }
        return Stream(request, abandon);
    }

    private static async IAsyncEnumerable<SequenceStep> Stream(Request request, CancellationTokenSource abandon,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        try
        {
            await foreach (SequenceStep step in request.Updates!.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return step;
            await request.Completion.Task.ConfigureAwait(false);   // its failure or cancellation, if any
        }
        finally
        {
            if (!request.Completion.Task.IsCompleted)
                abandon.Cancel();
            abandon.Dispose();
        }
    }

    private Request Submit(ReadOnlyMemory<int> prompt, DecodeOptions options, CancellationToken cancellationToken, bool streamSteps)
    {
        long submitted = Stopwatch.GetTimestamp();
        SequenceState state;
        try
        {
            ArgumentNullException.ThrowIfNull(options);
            DecodeInputs.Validate([prompt], options, denoiser.VocabularySize, denoiser.MaskId, denoiser.MaxSequenceLength);
            CachingDenoisers.CheckFits(denoiser, options.Cache, prompt.Length + options.GenerationLength);
            state = new SequenceState(prompt.Span, options, denoiser.MaskId);   // its cache is made when it starts running
        }
        catch
        {
            metrics.RequestFailed(submitted);   // invalid input
            throw;
        }
        var request = new Request(Interlocked.Increment(ref nextId), state, options, cancellationToken, streamSteps, metrics, submitted);
        // Registered before it is queued: the callback ignores a request that is not waiting.
        request.Registration = cancellationToken.UnsafeRegister(static (state, _) =>
        {
            var (engine, r) = ((SaberEngine, Request))state!;
            engine.CancelWaiting(r);
        }, (this, request));
        lock (gate)
        {
            if (disposed)
            {
                request.Registration.Unregister();
                metrics.RequestRejected();
                throw new ObjectDisposedException(nameof(SaberEngine));
            }
            if (outstanding >= this.options.Capacity)
            {
                request.Registration.Unregister();
                LogRejected(request.Id, this.options.Capacity);
                metrics.RequestRejected();
                throw new SaberEngineFullException(this.options.Capacity);
            }
            outstanding++;
            request.WaitingNode = waiting.AddLast(request);
            metrics.QueueChanged(+1);
            WakeLoop();
        }
        LogQueued(request.Id, prompt.Length, options.GenerationLength);
        if (cancellationToken.IsCancellationRequested)
            CancelWaiting(request);
        return request;
    }

    /// <summary>Called under <see cref="gate"/>.</summary>
    private void WakeLoop()
    {
        idle?.TrySetResult();
        idle = null;
    }

    private void CancelWaiting(Request request)
    {
        lock (gate)
        {
            if (request.WaitingNode is null) return;   // active (the loop retires it) or already done
            waiting.Remove(request.WaitingNode);
            request.WaitingNode = null;
            outstanding--;
            metrics.QueueChanged(-1);
        }
        request.Registration.Unregister();
        LogCancelled(request.Id, 0);
        request.Cancel();
    }

    private async Task RunAsync()
    {
        var running = new List<Request>();
        var freeSlots = new PriorityQueue<int, int>();
        for (int s = 0; s < options.MaxBatchSize; s++) freeSlots.Enqueue(s, s);
        try
        {
            while (true)
            {
                RetireCancelled(running, freeSlots);
                Task? sleep = null;
                lock (gate)
                {
                    if (disposed) break;
                    while (running.Count < options.MaxBatchSize && waiting.First is { } node)
                    {
                        Request r = node.Value;
                        waiting.RemoveFirst();
                        r.WaitingNode = null;
                        r.Slot = freeSlots.Dequeue();
                        running.Add(r);
                        active++;
                        metrics.QueueChanged(-1);
                        metrics.ActiveChanged(+1);
                        LogAdmitted(r.Id, r.Slot, running.Count);
                    }
                    if (running.Count == 0)
                    {
                        idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        sleep = idle.Task;
                    }
                }
                if (sleep is not null)
                {
                    await sleep.ConfigureAwait(false);
                    continue;
                }
                RetireCancelled(running, freeSlots);
                AttachCaches(running, freeSlots);
                if (running.Count == 0) continue;
                long stepStarted = Stopwatch.GetTimestamp();
                await StepAsync(running).ConfigureAwait(false);
                Interlocked.Increment(ref steps);
                metrics.StepDone(stepStarted);
                for (int i = running.Count - 1; i >= 0; i--)
                    if (running[i].Completion.Task.IsCompleted)
                        Release(running, i, freeSlots);
            }
        }
        catch (Exception e)
        {
            // Not expected: every failure is given to the requests it concerns. Fail everything rather than hang.
            LogLoopFailed(e);
            lock (gate) disposed = true;
            foreach (Request r in running) r.Fail(e);
            running.Clear();
        }
        finally
        {
            // Disposed: whatever is still running or waiting is cancelled.
            foreach (Request r in running)
            {
                r.Registration.Unregister();
                r.Cancel();
            }
            List<Request> left;
            lock (gate)
            {
                left = [.. waiting];
                waiting.Clear();
                foreach (Request r in left) r.WaitingNode = null;
                metrics.QueueChanged(-left.Count);
                metrics.ActiveChanged(-active);
                outstanding = 0;
                active = 0;
            }
            foreach (Request r in left)
            {
                r.Registration.Unregister();
                r.Cancel();
            }
        }
    }

    private void RetireCancelled(List<Request> running, PriorityQueue<int, int> freeSlots)
    {
        for (int i = running.Count - 1; i >= 0; i--)
        {
            Request r = running[i];
            if (!r.Token.IsCancellationRequested) continue;
            LogCancelled(r.Id, r.Step);
            r.Cancel();
            Release(running, i, freeSlots);
        }
    }

    /// <summary>
    /// Makes the cache of each request that just started running and asks for one. Only running requests hold caches; one
    /// that does not fit beside the running ones fails with the denoiser's error (which states the sizes).
    /// </summary>
    private void AttachCaches(List<Request> running, PriorityQueue<int, int> freeSlots)
    {
        for (int i = running.Count - 1; i >= 0; i--)
        {
            Request r = running[i];
            if (!r.Options.Cache.Enabled || r.State.Cache is not null) continue;
            try
            {
                r.State.AttachCache(CachingDenoisers.CreateCache(denoiser, r.Options.Cache, r.State.Canvas.Length)!);
            }
            catch (Exception e)
            {
                LogRequestFailed(e, r.Id, 0);
                r.Fail(e);
                Release(running, i, freeSlots);
            }
        }
    }

    private void Release(List<Request> running, int index, PriorityQueue<int, int> freeSlots)
    {
        Request r = running[index];
        running.RemoveAt(index);
        freeSlots.Enqueue(r.Slot, r.Slot);
        r.Registration.Unregister();
        lock (gate)
        {
            outstanding--;
            active--;
            metrics.ActiveChanged(-1);
        }
    }

    /// <summary>One step for every running request: its forward passes, then each request's rows and step rule.</summary>
    private async Task StepAsync(List<Request> running)
    {
        foreach (Request[] pass in Passes(running))
        {
            var request = new DenoiseRequest(pass.Min(r => r.Step) + 1, pass.Select(r => r.Slot).ToArray(),
                pass.Select(r => (ReadOnlyMemory<int>)r.State.Canvas).ToArray())
            {
                LogitsFrom = pass.Select(r => r.State.PromptLength).ToArray(),
                Windows = pass.Any(r => r.Options.Cache.Enabled) ? pass.Select(r => r.State.PlanWindow()).ToArray() : null,
            };
            IReadOnlyList<SequenceLogits>? logits;
            try
            {
                logits = await denoiser.ForwardAsync(request, shutdown.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
            {
                return;   // disposing: the loop cancels every request
            }
            catch (Exception e)
            {
                LogForwardFailed(e, pass.Length, request.Step);
                foreach (Request r in pass) r.Fail(e);
                continue;
            }
            finally
            {
                Interlocked.Increment(ref forwardPasses);
                metrics.ForwardPass(pass.Length);
            }
            if (logits is null || logits.Count != pass.Length)
            {
                var e = new InvalidLogitsException($"The model returned logits for {logits?.Count ?? 0} sequences; {pass.Length} canvases were sent.");
                LogForwardFailed(e, pass.Length, request.Step);
                foreach (Request r in pass) r.Fail(e);
                continue;
            }
            // The logits are valid only until the next forward pass: consume them now.
            ComputeRows(pass, logits, request.Windows);
            foreach (Request r in pass)
            {
                if (r.Error is not null)
                {
                    LogRequestFailed(r.Error, r.Id, r.Step + 1);
                    r.Fail(r.Error);
                }
                else
                {
                    try
                    {
                        Advance(r);
                    }
                    catch (Exception e)
                    {
                        LogRequestFailed(e, r.Id, r.Step);
                        r.Fail(e);
                    }
                }
            }
        }
    }

    /// <summary>The forward passes of one step: running requests in admission order, grouped as the options ask.</summary>
    private IEnumerable<Request[]> Passes(List<Request> running)
    {
        int max = options.MaxRowsPerForward ?? int.MaxValue;
        if (!options.GroupByCanvasLength && !options.GroupByStep)
            return running.Chunk(max);
        return running.GroupBy(r => (options.GroupByCanvasLength ? r.State.Canvas.Length : 0, options.GroupByStep ? r.Step : 0))
            .SelectMany(g => g.Chunk(max));
    }

    private void ComputeRows(Request[] pass, IReadOnlyList<SequenceLogits> logits, IReadOnlyList<CacheWindow?>? windows)
    {
        int vocabulary = denoiser.VocabularySize, maskId = denoiser.MaskId;
        var work = new List<(int Index, int Position)>();
        for (int i = 0; i < pass.Length; i++)
        {
            Request r = pass[i];
            r.Error = null;
            if (DecodeInputs.ShapeError(r.Step + 1, 0, r.State.Canvas.Length, r.State.PromptLength, vocabulary, logits[i], windows?[i]) is string error)
            {
                r.Error = new InvalidLogitsException(error);
                continue;
            }
            r.State.CountPass(denoiser, windows?[i], logits[i].Rows);
            for (int pos = r.State.FirstRowToRead(); pos < r.State.ActiveEnd; pos++)
                if (r.State.NeedsRow(pos))
                    work.Add((i, pos));
        }

        void Row(int w)
        {
            var (i, pos) = work[w];
            Request r = pass[i];
            if (r.Error is not null) return;
            SequenceState s = r.State;
            try
            {
                // The invariance rule: the request's own step and sequence 0, as if it were decoded alone.
                s.Rows[pos - s.PromptLength] = RowConfidenceKernel.Compute(logits[i], pos, maskId, s.TokenToScore(pos), s.Metric,
                    r.Options.Temperature, r.Options.Seed, new RowCoordinates(r.Step + 1, 0, pos));
            }
            catch (Exception e)   // InvalidLogitsException for a NaN or +inf logit; anything else fails this request too
            {
                lock (r) r.Error ??= e;
            }
        }

        if ((long)work.Count * vocabulary < ParallelThreshold || work.Count == 1)
            for (int w = 0; w < work.Count; w++) Row(w);
        else
            Parallel.For(0, work.Count, new ParallelOptions { MaxDegreeOfParallelism = options.MaxDegreeOfParallelism }, Row);
    }

    private void Advance(Request r)
    {
        int step = ++r.Step;
        StepTrace trace = r.State.Decide(step);
        if (r.Options.Trace)
            r.State.Trace.Add(trace);
        LogStep(r.Id, step, trace.Committed.Count, trace.Remasked.Count, trace.Tau);
        bool finished = r.State.Finished;
        r.Updates?.Writer.TryWrite(new SequenceStep(0, (int[])r.State.Canvas.Clone(), trace, finished) { RemaskStatistics = r.State.RemaskStatistics });
        if (finished)
        {
            LogFinished(r.Id, r.State.Nfe);
            r.Complete(r.State.ToResult());
        }
    }

    /// <summary>
    /// Stops admissions, cancels the forward pass in flight and every request not finished, and waits for the loop to
    /// end. Disposes the denoiser when <see cref="SaberEngineOptions.DisposeDenoiser"/> is set. Idempotent.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        bool first;
        lock (gate)
        {
            first = !disposeCalled;
            disposeCalled = true;
            disposed = true;
            WakeLoop();
        }
        if (!first)
        {
            await loop.ConfigureAwait(false);   // a concurrent or later call returns once the first one's loop has ended
            return;
        }
        await shutdown.CancelAsync().ConfigureAwait(false);
        await loop.ConfigureAwait(false);
        if (options.DisposeDenoiser)
        {
            if (denoiser is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync().ConfigureAwait(false);
            else if (denoiser is IDisposable disposable) disposable.Dispose();
        }
        shutdown.Dispose();
    }

    private sealed class Request(long id, SequenceState state, DecodeOptions options, CancellationToken token, bool streamSteps,
        SaberEngineMetrics metrics, long submitted)
    {
        public long Id { get; } = id;
        public SequenceState State { get; } = state;
        public DecodeOptions Options { get; } = options;
        public CancellationToken Token { get; } = token;
        public TaskCompletionSource<SequenceResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Channel<SequenceStep>? Updates { get; } = streamSteps
            ? Channel.CreateUnbounded<SequenceStep>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true })
            : null;
        public CancellationTokenRegistration Registration { get; set; }
        public LinkedListNode<Request>? WaitingNode { get; set; }   // under the engine's gate
        public int Slot { get; set; } = -1;
        public int Step { get; set; }                               // own steps applied
        public Exception? Error { get; set; }

        // Each end releases the cache first, so a caller that sees the result sees the memory back too (disposing is idempotent).
        public void Complete(SequenceResult result)
        {
            State.Cache?.Dispose();
            if (Completion.TrySetResult(result)) metrics.RequestCompleted(submitted, result.Nfe, result.RemaskStatistics);
            Updates?.Writer.TryComplete();
        }

        public void Fail(Exception e)
        {
            State.Cache?.Dispose();
            if (Completion.TrySetException(e)) metrics.RequestFailed(submitted);
            Updates?.Writer.TryComplete();
        }

        public void Cancel()
        {
            State.Cache?.Dispose();
            if (Token.IsCancellationRequested ? Completion.TrySetCanceled(Token) : Completion.TrySetCanceled())
                metrics.RequestCancelled(submitted);
            Updates?.Writer.TryComplete();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Request {Id} queued: prompt {PromptLength}, G {GenerationLength}")]
    private partial void LogQueued(long id, int promptLength, int generationLength);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Request {Id} rejected: the engine holds {Capacity} requests (its capacity)")]
    private partial void LogRejected(long id, int capacity);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Request {Id} admitted to slot {Slot}; {Active} active")]
    private partial void LogAdmitted(long id, int slot, int active);

    [LoggerMessage(Level = LogLevel.Trace, Message = "Request {Id}, step {Step}: committed {Committed}, re-masked {Remasked}, tau {Tau}")]
    private partial void LogStep(long id, int step, int committed, int remasked, double? tau);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Request {Id} finished: NFE {Nfe}")]
    private partial void LogFinished(long id, int nfe);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Request {Id} cancelled after {Steps} step(s)")]
    private partial void LogCancelled(long id, int steps);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Request {Id} failed at its step {Step}")]
    private partial void LogRequestFailed(Exception e, long id, int step);

    [LoggerMessage(Level = LogLevel.Error, Message = "A forward pass of {Sequences} sequence(s) (step {Step}) failed; its requests fail, the engine goes on")]
    private partial void LogForwardFailed(Exception e, int sequences, int step);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The engine loop failed; every request fails")]
    private partial void LogLoopFailed(Exception e);
}
