using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Saber.Service;

/// <summary>
/// The names of the instruments of every <see cref="SaberEngine"/> on one <see cref="Meter"/> named <see cref="MeterName"/>: the
/// meter of the engine's <see cref="IMeterFactory"/> (one set of instruments per factory), or a process-wide meter for an
/// engine built without one. Engines sharing a meter add into the same instruments (the queue and active counts are
/// up-down counters, so they sum over engines); an engine with a <see cref="SaberEngineOptions.ModelId"/> tags every
/// measurement with it (<see cref="ModelTag"/>), so each model's series stand apart. Collect them with OpenTelemetry's <c>AddMeter("Saber.Service")</c>,
/// <c>dotnet-counters monitor --counters Saber.Service</c> or a <see cref="MeterListener"/>.
/// </summary>
public sealed class SaberEngineMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Saber.Service";

    /// <summary>Requests by outcome (counter, <c>{request}</c>, tag <see cref="OutcomeTag"/>).</summary>
    public const string RequestsName = "saber.requests";

    /// <summary>Requests waiting for admission (up-down counter, <c>{request}</c>).</summary>
    public const string QueueLengthName = "saber.queue.length";

    /// <summary>Requests decoding (up-down counter, <c>{sequence}</c>).</summary>
    public const string ActiveSequencesName = "saber.active_sequences";

    /// <summary>Engine steps (counter, <c>{step}</c>); one step serves every active request.</summary>
    public const string StepsName = "saber.steps";

    /// <summary>Denoiser calls (counter, <c>{pass}</c>), failed ones included.</summary>
    public const string ForwardPassesName = "saber.forward_passes";

    /// <summary>Canvases sent in one forward pass (histogram, <c>{sequence}</c>).</summary>
    public const string ForwardPassSequencesName = "saber.forward_pass.sequences";

    /// <summary>NFE (the request's forward passes) of each completed request (histogram, <c>{pass}</c>).</summary>
    public const string RequestNfeName = "saber.request.nfe";

    /// <summary>Re-masks of the completed requests (counter, <c>{remask}</c>): decoded tokens set back to the mask (<see cref="RemaskStatistics.Remasks"/>).</summary>
    public const string RemasksName = "saber.remasks";

    /// <summary>Re-masks of the completed requests whose position came back as a different token (counter, <c>{remask}</c>, <see cref="RemaskStatistics.RemasksChanged"/>).</summary>
    public const string RemasksChangedName = "saber.remasks.changed";

    /// <summary>Positions of the completed requests re-masked more than once (counter, <c>{position}</c>, <see cref="RemaskStatistics.PositionsRemaskedTwice"/>).</summary>
    public const string PositionsRemaskedTwiceName = "saber.remasks.positions_remasked_twice";

    /// <summary>Duration of one engine step, its forward passes and row computations (histogram, <c>s</c>).</summary>
    public const string StepDurationName = "saber.step.duration";

    /// <summary>From submission to completion, failure or cancellation, queueing included (histogram, <c>s</c>, tag <see cref="OutcomeTag"/>).</summary>
    public const string RequestDurationName = "saber.request.duration";

    /// <summary>The tag of <see cref="RequestsName"/> and <see cref="RequestDurationName"/>: <c>completed</c>, <c>cancelled</c>, <c>failed</c> or <c>rejected</c>.</summary>
    public const string OutcomeTag = "outcome";

    /// <summary>
    /// The tag of every measurement of an engine that serves a named model (<see cref="SaberEngineOptions.ModelId"/>):
    /// engines on one meter share its instruments, and this tells their series apart. Absent for an engine without a model id.
    /// </summary>
    public const string ModelTag = "model";

    private static readonly ConditionalWeakTable<Meter, Instruments> PerMeter = new();
    private static readonly Lazy<Instruments> Shared = new(() => new Instruments(new Meter(MeterName)));

    private static readonly double[] SecondsBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
    private static readonly int[] CountBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

    /// <summary>The instruments of one meter, shared by every engine that reports to it.</summary>
    private sealed class Instruments
    {
        public readonly Counter<long> Requests;
        public readonly UpDownCounter<long> QueueLength;
        public readonly UpDownCounter<long> ActiveSequences;
        public readonly Counter<long> Steps;
        public readonly Counter<long> ForwardPasses;
        public readonly Histogram<int> ForwardPassSequences;
        public readonly Histogram<int> RequestNfe;
        public readonly Counter<long> Remasks;
        public readonly Counter<long> RemasksChanged;
        public readonly Counter<long> PositionsRemaskedTwice;
        public readonly Histogram<double> StepDuration;
        public readonly Histogram<double> RequestDuration;

        public Instruments(Meter meter)
        {
            Requests = meter.CreateCounter<long>(RequestsName, "{request}", "Decode requests by outcome: completed, cancelled, failed or rejected (engine full or disposed).");
            QueueLength = meter.CreateUpDownCounter<long>(QueueLengthName, "{request}", "Requests waiting for admission.");
            ActiveSequences = meter.CreateUpDownCounter<long>(ActiveSequencesName, "{sequence}", "Requests decoding (admitted, not finished).");
            Steps = meter.CreateCounter<long>(StepsName, "{step}", "Engine steps; one step serves every active request.");
            ForwardPasses = meter.CreateCounter<long>(ForwardPassesName, "{pass}", "Denoiser forward passes, failed ones included.");
            ForwardPassSequences = meter.CreateHistogram(ForwardPassSequencesName, "{sequence}", "Canvases in one forward pass.",
                advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = CountBuckets });
            RequestNfe = meter.CreateHistogram(RequestNfeName, "{pass}", "Forward passes (NFE) a completed request took.",
                advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = CountBuckets });
            Remasks = meter.CreateCounter<long>(RemasksName, "{remask}", "Re-masks of the completed requests: decoded tokens set back to the mask.");
            RemasksChanged = meter.CreateCounter<long>(RemasksChangedName, "{remask}",
                "Re-masks of the completed requests whose position was next committed to a different token.");
            PositionsRemaskedTwice = meter.CreateCounter<long>(PositionsRemaskedTwiceName, "{position}",
                "Positions of the completed requests re-masked more than once.");
            StepDuration = meter.CreateHistogram(StepDurationName, "s", "Duration of one engine step (its forward passes and row computations).",
                advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
            RequestDuration = meter.CreateHistogram(RequestDurationName, "s", "Time from submission to completion, failure or cancellation.",
                advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        }
    }

    private readonly Instruments instruments;
    // One engine's tags, built once: its model (if any), with each outcome.
    private readonly TagList plain, completed, cancelled, failed, rejected;

    private SaberEngineMetrics(Instruments instruments, string? modelId)
    {
        this.instruments = instruments;
        plain = modelId is null ? default : new TagList { { ModelTag, modelId } };
        TagList With(string outcome)
        {
            TagList tags = plain;
            tags.Add(OutcomeTag, outcome);
            return tags;
        }
        completed = With("completed");
        cancelled = With("cancelled");
        failed = With("failed");
        rejected = With("rejected");
    }

    /// <summary>
    /// One engine's view of the instruments on <paramref name="meterFactory"/>'s <see cref="MeterName"/> meter (the
    /// process-wide meter when it is null), tagging its measurements with <paramref name="modelId"/> when given.
    /// </summary>
    internal static SaberEngineMetrics For(IMeterFactory? meterFactory, string? modelId)
    {
        if (meterFactory is null) return new SaberEngineMetrics(Shared.Value, modelId);
        Meter meter = meterFactory.Create(new MeterOptions(MeterName));   // the factory returns one meter per name
        return new SaberEngineMetrics(PerMeter.GetValue(meter, static m => new Instruments(m)), modelId);
    }

    internal void RequestCompleted(long submitted, int nfe, RemaskStatistics? remasks)
    {
        instruments.Requests.Add(1, completed);
        instruments.RequestNfe.Record(nfe, plain);
        if (remasks is not null)
        {
            // Every completed request adds, zeros included, so that the counters exist as soon as one request completed.
            instruments.Remasks.Add(remasks.Remasks, plain);
            instruments.RemasksChanged.Add(remasks.RemasksChanged, plain);
            instruments.PositionsRemaskedTwice.Add(remasks.PositionsRemaskedTwice, plain);
        }
        instruments.RequestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, completed);
    }

    internal void RequestCancelled(long submitted)
    {
        instruments.Requests.Add(1, cancelled);
        instruments.RequestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, cancelled);
    }

    internal void RequestFailed(long submitted)
    {
        instruments.Requests.Add(1, failed);
        instruments.RequestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, failed);
    }

    /// <summary>Refused before queueing: the engine was full or disposed.</summary>
    internal void RequestRejected() => instruments.Requests.Add(1, rejected);

    internal void QueueChanged(long delta)
    {
        if (delta != 0) instruments.QueueLength.Add(delta, plain);
    }

    internal void ActiveChanged(long delta)
    {
        if (delta != 0) instruments.ActiveSequences.Add(delta, plain);
    }

    internal void StepDone(long started)
    {
        instruments.Steps.Add(1, plain);
        instruments.StepDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, plain);
    }

    internal void ForwardPass(int sequences)
    {
        instruments.ForwardPasses.Add(1, plain);
        instruments.ForwardPassSequences.Record(sequences, plain);
    }
}
