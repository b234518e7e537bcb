using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Saber.Service;

/// <summary>
/// The names of the instruments of every <see cref="SaberEngine"/> on one <see cref="Meter"/> named <see cref="MeterName"/>: the
/// meter of the engine's <see cref="IMeterFactory"/> (one set of instruments per factory), or a process-wide meter for an
/// engine built without one. Engines sharing a meter add into the same instruments (the queue and active counts are
/// up-down counters, so they sum over engines). Collect them with OpenTelemetry's <c>AddMeter("Saber.Service")</c>,
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

    /// <summary>Duration of one engine step, its forward passes and row computations (histogram, <c>s</c>).</summary>
    public const string StepDurationName = "saber.step.duration";

    /// <summary>From submission to completion, failure or cancellation, queueing included (histogram, <c>s</c>, tag <see cref="OutcomeTag"/>).</summary>
    public const string RequestDurationName = "saber.request.duration";

    /// <summary>The tag of <see cref="RequestsName"/> and <see cref="RequestDurationName"/>: <c>completed</c>, <c>cancelled</c>, <c>failed</c> or <c>rejected</c>.</summary>
    public const string OutcomeTag = "outcome";

    private static readonly ConditionalWeakTable<Meter, SaberEngineMetrics> PerMeter = new();
    private static readonly Lazy<SaberEngineMetrics> Shared = new(() => new SaberEngineMetrics(new Meter(MeterName)));

    private static readonly KeyValuePair<string, object?> Completed = new(OutcomeTag, "completed");
    private static readonly KeyValuePair<string, object?> Cancelled = new(OutcomeTag, "cancelled");
    private static readonly KeyValuePair<string, object?> Failed = new(OutcomeTag, "failed");
    private static readonly KeyValuePair<string, object?> Rejected = new(OutcomeTag, "rejected");

    private static readonly double[] SecondsBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
    private static readonly int[] CountBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

    private readonly Counter<long> requests;
    private readonly UpDownCounter<long> queueLength;
    private readonly UpDownCounter<long> activeSequences;
    private readonly Counter<long> steps;
    private readonly Counter<long> forwardPasses;
    private readonly Histogram<int> forwardPassSequences;
    private readonly Histogram<int> requestNfe;
    private readonly Histogram<double> stepDuration;
    private readonly Histogram<double> requestDuration;

    private SaberEngineMetrics(Meter meter)
    {
        Meter = meter;
        requests = meter.CreateCounter<long>(RequestsName, "{request}", "Decode requests by outcome: completed, cancelled, failed or rejected (engine full or disposed).");
        queueLength = meter.CreateUpDownCounter<long>(QueueLengthName, "{request}", "Requests waiting for admission.");
        activeSequences = meter.CreateUpDownCounter<long>(ActiveSequencesName, "{sequence}", "Requests decoding (admitted, not finished).");
        steps = meter.CreateCounter<long>(StepsName, "{step}", "Engine steps; one step serves every active request.");
        forwardPasses = meter.CreateCounter<long>(ForwardPassesName, "{pass}", "Denoiser forward passes, failed ones included.");
        forwardPassSequences = meter.CreateHistogram(ForwardPassSequencesName, "{sequence}", "Canvases in one forward pass.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = CountBuckets });
        requestNfe = meter.CreateHistogram(RequestNfeName, "{pass}", "Forward passes (NFE) a completed request took.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = CountBuckets });
        stepDuration = meter.CreateHistogram(StepDurationName, "s", "Duration of one engine step (its forward passes and row computations).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
        requestDuration = meter.CreateHistogram(RequestDurationName, "s", "Time from submission to completion, failure or cancellation.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
    }

    internal Meter Meter { get; }

    /// <summary>The instruments on <paramref name="meterFactory"/>'s <see cref="MeterName"/> meter, or on the process-wide meter when it is null.</summary>
    internal static SaberEngineMetrics For(IMeterFactory? meterFactory)
    {
        if (meterFactory is null) return Shared.Value;
        Meter meter = meterFactory.Create(new MeterOptions(MeterName));   // the factory returns one meter per name
        return PerMeter.GetValue(meter, static m => new SaberEngineMetrics(m));
    }

    internal void RequestCompleted(long submitted, int nfe)
    {
        requests.Add(1, Completed);
        requestNfe.Record(nfe);
        requestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, Completed);
    }

    internal void RequestCancelled(long submitted)
    {
        requests.Add(1, Cancelled);
        requestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, Cancelled);
    }

    internal void RequestFailed(long submitted)
    {
        requests.Add(1, Failed);
        requestDuration.Record(Stopwatch.GetElapsedTime(submitted).TotalSeconds, Failed);
    }

    /// <summary>Refused before queueing: the engine was full or disposed.</summary>
    internal void RequestRejected() => requests.Add(1, Rejected);

    internal void QueueChanged(long delta)
    {
        if (delta != 0) queueLength.Add(delta);
    }

    internal void ActiveChanged(long delta)
    {
        if (delta != 0) activeSequences.Add(delta);
    }

    internal void StepDone(long started)
    {
        steps.Add(1);
        stepDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    internal void ForwardPass(int sequences)
    {
        forwardPasses.Add(1);
        forwardPassSequences.Record(sequences);
    }
}
