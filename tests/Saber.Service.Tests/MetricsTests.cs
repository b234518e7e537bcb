using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Saber.Service.Tests;

/// <summary>The "Saber.Service" meter: instruments, units and values after decodes, a cancellation, a rejection and a failure.</summary>
public class MetricsTests
{
    private const int Vocabulary = 32;
    private static readonly DecodeOptions Options = new() { GenerationLength = 8, Strategy = new SaberStrategy() };

    /// <summary>Collects every measurement of the Saber.Service instruments on one meter scope (a factory, or null for the process-wide meter).</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener listener = new();
        private readonly List<(string Name, double Value, string? Outcome, string? Model)> measurements = [];

        public Recorder(object? scope)
        {
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == SaberEngineMetrics.MeterName && instrument.Meter.Scope == scope)
                {
                    lock (Instruments) Instruments[instrument.Name] = instrument;
                    l.EnableMeasurementEvents(instrument);
                }
            };
            listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
            listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            listener.Start();
        }

        public Dictionary<string, Instrument> Instruments { get; } = [];

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? outcome = null, model = null;
            foreach (var tag in tags)
            {
                if (tag.Key == SaberEngineMetrics.OutcomeTag) outcome = (string?)tag.Value;
                if (tag.Key == SaberEngineMetrics.ModelTag) model = (string?)tag.Value;
            }
            lock (measurements) measurements.Add((instrument.Name, value, outcome, model));
        }

        /// <summary>Every measurement's instrument and model tag (null: none).</summary>
        public (string Name, string? Model)[] Models()
        {
            lock (measurements) return measurements.Select(m => (m.Name, m.Model)).ToArray();
        }

        public double[] Values(string name, string? outcome = null)
        {
            lock (measurements)
                return measurements.Where(m => m.Name == name && (outcome is null || m.Outcome == outcome)).Select(m => m.Value).ToArray();
        }

        public double Sum(string name, string? outcome = null) => Values(name, outcome).Sum();

        /// <summary>The largest running total of an up-down counter.</summary>
        public double Peak(string name)
        {
            double total = 0, peak = 0;
            foreach (double v in Values(name)) peak = Math.Max(peak, total += v);
            return peak;
        }

        public void Dispose() => listener.Dispose();
    }

    private static async Task SettledAsync(SaberEngine engine)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (engine.ActiveCount + engine.WaitingCount > 0)
            await Task.Delay(5, timeout.Token);
    }

    [Test]
    public async Task TheInstrumentsCountDecodesCancellationsRejectionsAndFailures()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var routes = Enumerable.Range(0, 6).Select(k => routing.Add(k, 10 + k, 4, 8, 1)).ToArray();
        var gate = new GatedDenoiser(routing);
        var services = new ServiceCollection().AddMetrics().AddSingleton<IDenoiser>(gate);
        services.AddSaber(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Saber:Capacity"] = "2", ["Saber:MaxBatchSize"] = "1",
        }).Build().GetSection("Saber"));
        await using ServiceProvider provider = services.BuildServiceProvider();
        using var recorder = new Recorder(provider.GetRequiredService<IMeterFactory>());
        var engine = provider.GetRequiredService<SaberEngine>();

        // A decodes while B waits (MaxBatchSize 1); C finds the engine full (Capacity 2); B is cancelled while waiting.
        using var cancelB = new CancellationTokenSource();
        Task<SequenceResult> a = engine.DecodeAsync(routes[0].Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> b = engine.DecodeAsync(routes[1].Prompt, Options, cancelB.Token);
        Assert.That(recorder.Sum(SaberEngineMetrics.QueueLengthName), Is.EqualTo(1), "B waits");
        Assert.That(recorder.Sum(SaberEngineMetrics.ActiveSequencesName), Is.EqualTo(1), "A decodes");
        Task<SequenceResult> c = engine.DecodeAsync(routes[2].Prompt, Options);
        Assert.That(async () => await c, Throws.TypeOf<SaberEngineFullException>());
        cancelB.Cancel();
        Assert.That(b.IsCanceled);
        Assert.That(recorder.Sum(SaberEngineMetrics.QueueLengthName), Is.Zero, "B left the queue");
        // Invalid input fails before admission; an already-cancelled token never queues.
        Assert.That(async () => await engine.DecodeAsync(routes[3].Prompt, Options with { GenerationLength = 0 }), Throws.InstanceOf<ArgumentException>());
        Assert.That(async () => await engine.DecodeAsync(routes[3].Prompt, Options, new CancellationToken(true)), Throws.InstanceOf<OperationCanceledException>());
        gate.Open();
        var results = new List<SequenceResult> { await a };
        foreach (var route in routes.Skip(3))
            results.Add(await engine.DecodeAsync(route.Prompt, Options));
        await SettledAsync(engine);

        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "completed"), Is.EqualTo(4));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "cancelled"), Is.EqualTo(2));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "rejected"), Is.EqualTo(1));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "failed"), Is.EqualTo(1));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName), Is.EqualTo(8));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestNfeName), Is.EquivalentTo(results.Select(r => (double)r.Nfe)));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestDurationName, "completed"), Has.Length.EqualTo(4).And.All.GreaterThanOrEqualTo(0));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestDurationName, "cancelled"), Has.Length.EqualTo(2));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestDurationName, "failed"), Has.Length.EqualTo(1));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestDurationName, "rejected"), Is.Empty, "a rejection has no duration");
        Assert.That(recorder.Sum(SaberEngineMetrics.StepsName), Is.EqualTo(engine.Steps));
        Assert.That(recorder.Values(SaberEngineMetrics.StepDurationName), Has.Length.EqualTo(engine.Steps).And.All.GreaterThanOrEqualTo(0));
        Assert.That(recorder.Sum(SaberEngineMetrics.ForwardPassesName), Is.EqualTo(engine.ForwardPasses));
        Assert.That(engine.ForwardPasses, Is.EqualTo(results.Sum(r => r.Nfe)), "one sequence a pass (MaxBatchSize 1)");
        Assert.That(recorder.Values(SaberEngineMetrics.ForwardPassSequencesName), Has.Length.EqualTo(engine.ForwardPasses).And.All.EqualTo(1.0));
        Assert.That(recorder.Sum(SaberEngineMetrics.QueueLengthName), Is.Zero);
        Assert.That(recorder.Sum(SaberEngineMetrics.ActiveSequencesName), Is.Zero);
        Assert.That(recorder.Peak(SaberEngineMetrics.ActiveSequencesName), Is.EqualTo(1));
    }

    [Test]
    public async Task AForwardPassFailureAndDisposalAreCounted()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 1);
        var b = routing.Add(1, 2, 4, 8, 1);
        var gate = new GatedDenoiser(new FailingDenoiser(routing, 2));
        var options = Options with { Strategy = new LowConfidenceStrategy(8) };   // eight passes: the second fails
        var services = new ServiceCollection().AddMetrics().AddSingleton<IDenoiser>(gate).AddSaber();
        services.Configure<SaberServiceOptions>(o => o.MaxBatchSize = 1);
        ServiceProvider provider = services.BuildServiceProvider();
        using var recorder = new Recorder(provider.GetRequiredService<IMeterFactory>());
        var engine = provider.GetRequiredService<SaberEngine>();

        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, options);
        await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, options);
        gate.Release();
        await gate.NextCallAsync();           // A's second pass: it fails
        gate.Release();
        Assert.That(async () => await ta, Throws.InvalidOperationException);
        await gate.NextCallAsync();           // B admitted; hold its pass and dispose the container
        Assert.That(recorder.Sum(SaberEngineMetrics.ActiveSequencesName), Is.EqualTo(1));
        await provider.DisposeAsync();
        Assert.That(tb.IsCanceled);

        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "failed"), Is.EqualTo(1));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "cancelled"), Is.EqualTo(1));
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "completed"), Is.Zero);
        Assert.That(recorder.Sum(SaberEngineMetrics.ActiveSequencesName), Is.Zero, "disposal takes the active ones off");
        Assert.That(recorder.Sum(SaberEngineMetrics.QueueLengthName), Is.Zero);
        Assert.That(recorder.Sum(SaberEngineMetrics.ForwardPassesName), Is.EqualTo(3), "the failed pass and the cancelled one count");
    }

    [Test]
    public async Task TheInstrumentsHaveTheDocumentedNamesTypesAndUnits()
    {
        var services = new ServiceCollection().AddMetrics().AddSingleton<IDenoiser>(new RoutingDenoiser(Vocabulary)).AddSaber();
        await using ServiceProvider provider = services.BuildServiceProvider();
        using var recorder = new Recorder(provider.GetRequiredService<IMeterFactory>());
        _ = provider.GetRequiredService<SaberEngine>();
        var expected = new Dictionary<string, (Type Type, string Unit)>
        {
            ["saber.requests"] = (typeof(Counter<long>), "{request}"),
            ["saber.queue.length"] = (typeof(UpDownCounter<long>), "{request}"),
            ["saber.active_sequences"] = (typeof(UpDownCounter<long>), "{sequence}"),
            ["saber.steps"] = (typeof(Counter<long>), "{step}"),
            ["saber.forward_passes"] = (typeof(Counter<long>), "{pass}"),
            ["saber.forward_pass.sequences"] = (typeof(Histogram<int>), "{sequence}"),
            ["saber.request.nfe"] = (typeof(Histogram<int>), "{pass}"),
            ["saber.remasks"] = (typeof(Counter<long>), "{remask}"),
            ["saber.remasks.changed"] = (typeof(Counter<long>), "{remask}"),
            ["saber.remasks.positions_remasked_twice"] = (typeof(Counter<long>), "{position}"),
            ["saber.step.duration"] = (typeof(Histogram<double>), "s"),
            ["saber.request.duration"] = (typeof(Histogram<double>), "s"),
        };
        Dictionary<string, Instrument> published;
        lock (recorder.Instruments) published = new(recorder.Instruments);
        Assert.That(published.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, (type, unit)) in expected)
        {
            Assert.That(published[name].GetType(), Is.EqualTo(type), name);
            Assert.That(published[name].Unit, Is.EqualTo(unit), name);
            Assert.That(published[name].Description, Is.Not.Empty, name);
        }
        string readme = File.ReadAllText(Path.Combine(DependencyInjectionTests.RepositoryRoot(), "README.md"));
        foreach (var (name, (_, unit)) in expected)
            Assert.That(readme, Does.Contain($"`{name}`").And.Contain($"`{unit}`"), $"README documents {name}");
    }

    [Test]
    public async Task TheReMaskCountersAddTheStatisticsOfEachCompletedRequestWithTheModelTag()
    {
        // Planted traps: Saber commits wrong tokens first, so that re-masks happen and some come back changed.
        var routing = new RoutingDenoiser(Vocabulary);
        var routes = Enumerable.Range(0, 4).Select(k => routing.Add(k, 20 + k, 3, 16, 4)).ToArray();
        await using ServiceProvider provider = new ServiceCollection().AddMetrics().BuildServiceProvider();
        IMeterFactory meters = provider.GetRequiredService<IMeterFactory>();
        using var recorder = new Recorder(meters);
        var options = Options with { GenerationLength = 16, BlockLength = 8 };
        var results = new List<SequenceResult>();
        await using (var engine = new SaberEngine(routing, new SaberEngineOptions { ModelId = "m" }, null, meters))
        {
            results.AddRange(await Task.WhenAll(routes.Select(r => engine.DecodeAsync(r.Prompt, options))));
            await SettledAsync(engine);
        }

        RemaskStatistics[] statistics = results.Select(r => r.RemaskStatistics!).ToArray();
        Assert.That(statistics.Sum(s => s.Remasks), Is.GreaterThan(0), "test set-up: the decodes re-mask");
        Assert.That(recorder.Sum(SaberEngineMetrics.RemasksName), Is.EqualTo(statistics.Sum(s => s.Remasks)));
        Assert.That(recorder.Sum(SaberEngineMetrics.RemasksChangedName), Is.EqualTo(statistics.Sum(s => s.RemasksChanged)));
        Assert.That(recorder.Sum(SaberEngineMetrics.PositionsRemaskedTwiceName), Is.EqualTo(statistics.Sum(s => s.PositionsRemaskedTwice)));
        Assert.That(recorder.Values(SaberEngineMetrics.RemasksName), Has.Length.EqualTo(4), "one measurement per completed request");
        string[] names = [SaberEngineMetrics.RemasksName, SaberEngineMetrics.RemasksChangedName, SaberEngineMetrics.PositionsRemaskedTwiceName];
        Assert.That(recorder.Models().Where(m => names.Contains(m.Name)).Select(m => m.Model), Has.All.EqualTo("m"));
    }

    [Test]
    public async Task AnEngineWithoutAMeterFactoryReportsToTheProcessWideMeter()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var route = routing.Add(0, 3, 4, 8, 1);
        using var recorder = new Recorder(scope: null);
        await using var engine = new SaberEngine(routing);
        SequenceResult result = await engine.DecodeAsync(route.Prompt, Options);
        await SettledAsync(engine);
        Assert.That(recorder.Sum(SaberEngineMetrics.RequestsName, "completed"), Is.GreaterThanOrEqualTo(1));
        Assert.That(recorder.Values(SaberEngineMetrics.RequestNfeName), Does.Contain((double)result.Nfe));
    }

    [Test]
    public async Task EveryMeasurementOfAnEngineWithAModelIdCarriesIt()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var first = routing.Add(0, 3, 4, 8, 1);
        var second = routing.Add(1, 4, 4, 8, 1);
        var services = new ServiceCollection().AddMetrics();
        await using ServiceProvider provider = services.BuildServiceProvider();
        IMeterFactory meters = provider.GetRequiredService<IMeterFactory>();
        using var recorder = new Recorder(meters);
        // Two engines on one meter, as a server with two models has them.
        await using (var a = new SaberEngine(routing, new SaberEngineOptions { ModelId = "a" }, null, meters))
        await using (var b = new SaberEngine(routing, new SaberEngineOptions { ModelId = "b" }, null, meters))
        {
            await a.DecodeAsync(first.Prompt, Options);
            await b.DecodeAsync(second.Prompt, Options);
            await b.DecodeAsync(second.Prompt, Options);
            await SettledAsync(a);
            await SettledAsync(b);
        }

        var measured = recorder.Models();
        Assert.That(measured.Select(m => m.Name).Distinct(), Is.SupersetOf(new[]
        {
            SaberEngineMetrics.RequestsName, SaberEngineMetrics.QueueLengthName, SaberEngineMetrics.ActiveSequencesName, SaberEngineMetrics.StepsName,
            SaberEngineMetrics.ForwardPassesName, SaberEngineMetrics.ForwardPassSequencesName, SaberEngineMetrics.RequestNfeName,
            SaberEngineMetrics.StepDurationName, SaberEngineMetrics.RequestDurationName,
        }));
        Assert.That(measured.Where(m => m.Model is not ("a" or "b")), Is.Empty, "every measurement names its engine's model");
        Assert.That(measured.Count(m => m.Name == SaberEngineMetrics.RequestNfeName && m.Model == "a"), Is.EqualTo(1));
        Assert.That(measured.Count(m => m.Name == SaberEngineMetrics.RequestNfeName && m.Model == "b"), Is.EqualTo(2));
    }

    [Test]
    public async Task AnEngineWithoutAModelIdTagsNoModel()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var route = routing.Add(0, 3, 4, 8, 1);
        await using ServiceProvider provider = new ServiceCollection().AddMetrics().BuildServiceProvider();
        IMeterFactory meters = provider.GetRequiredService<IMeterFactory>();
        using var recorder = new Recorder(meters);
        await using (var engine = new SaberEngine(routing, null, null, meters))
        {
            await engine.DecodeAsync(route.Prompt, Options);
            await SettledAsync(engine);
        }
        Assert.That(recorder.Models(), Is.Not.Empty.And.All.Matches<(string Name, string? Model)>(m => m.Model is null));
    }
}
