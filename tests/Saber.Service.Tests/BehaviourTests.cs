using Microsoft.Extensions.Logging;
using Saber.Denoisers;

namespace Saber.Service.Tests;

/// <summary>Admission, backpressure, cancellation, failures, disposal and streaming; every wait is on the gate, none on time.</summary>
public class BehaviourTests
{
    private const int Vocabulary = 32;
    private static readonly DecodeOptions Options = new() { GenerationLength = 8, Strategy = new SaberStrategy(), Trace = true };

    private static async Task<SequenceResult> AloneAsync(SyntheticDenoiser denoiser, int[] prompt, DecodeOptions options) =>
        (await new CpuSampler().DecodeAsync(denoiser, [prompt], options)).Sequences[0];

    /// <summary>
    /// Awaits the engine's result first, then decodes the prompt alone on the route's own denoiser: the reference must not
    /// run while the engine still calls that denoiser (its logits buffers are reused per call, the hazard the engine avoids).
    /// </summary>
    private static async Task MatchesAloneAsync(Task<SequenceResult> served, (int[] Prompt, SyntheticDenoiser Denoiser) route, DecodeOptions options, string what)
    {
        SequenceResult result = await served;
        Same.Result(await AloneAsync(route.Denoiser, route.Prompt, options), result, what);
    }

    [Test]
    public async Task ACancelledRequestLeavesAtTheNextStepAndNoOtherIsAffected()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 16, 1);
        var b = routing.Add(1, 2, 4, 16, 1);
        var options = Options with { GenerationLength = 16, Strategy = new LowConfidenceStrategy(16) };
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate);
        using var cancel = new CancellationTokenSource();

        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, options, cancel.Token);
        await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, options);
        gate.Release();
        Assert.That((await gate.NextCallAsync()).Canvases, Has.Count.EqualTo(2));
        cancel.Cancel();                       // mid-decode, while the pass of both is in flight
        gate.Release();
        DenoiseRequest next = await gate.NextCallAsync();
        Assert.That(next.Canvases, Has.Count.EqualTo(1), "A left at the step boundary");
        Assert.That(next.Canvases[0].Span.StartsWith(b.Prompt));
        Assert.That(async () => await ta, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(ta.IsCanceled);
        gate.Open();
        await MatchesAloneAsync(tb, b, options, "B");
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero, "nothing left behind");
    }

    [Test]
    public async Task ACancelledWaitingRequestLeavesTheQueueAtOnce()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 0);
        var b = routing.Add(1, 2, 4, 8, 0);
        var c = routing.Add(2, 3, 4, 8, 0);
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 1 });
        using var cancel = new CancellationTokenSource();

        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, Options, cancel.Token);
        Task<SequenceResult> tc = engine.DecodeAsync(c.Prompt, Options);
        Assert.That(engine.WaitingCount, Is.EqualTo(2));
        cancel.Cancel();
        Assert.That(tb.IsCanceled, "cancelled while waiting, before any further step");
        Assert.That(engine.WaitingCount, Is.EqualTo(1));
        gate.Open();
        await MatchesAloneAsync(ta, a, Options, "A");
        await MatchesAloneAsync(tc, c, Options, "C");
        Assert.That(gate.Calls.Any(call => call.Canvases.Any(x => x.Span.StartsWith(b.Prompt))), Is.False, "B never ran");
    }

    [Test]
    public async Task AnAlreadyCancelledTokenNeverQueues()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 0);
        await using var engine = new SaberEngine(routing);
        Task<SequenceResult> task = engine.DecodeAsync(a.Prompt, Options, new CancellationToken(canceled: true));
        Assert.That(task.IsCanceled);
        Assert.That(engine.WaitingCount + engine.ActiveCount, Is.Zero);
    }

    [Test]
    public async Task AFullEngineRejectsNamingItsCapacityAndAcceptsAgainOnceARequestLeaves()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var routes = Enumerable.Range(0, 5).Select(i => routing.Add(i, i, 3, 8, 0)).ToArray();
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { Capacity = 3, MaxBatchSize = 2 });

        Task<SequenceResult> t0 = engine.DecodeAsync(routes[0].Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> t1 = engine.DecodeAsync(routes[1].Prompt, Options);
        Task<SequenceResult> t2 = engine.DecodeAsync(routes[2].Prompt, Options);
        Task<SequenceResult> rejected = engine.DecodeAsync(routes[3].Prompt, Options);
        Assert.That(rejected.IsFaulted);
        var full = (SaberEngineFullException)rejected.Exception!.InnerException!;
        Assert.That(full.Capacity, Is.EqualTo(3));
        Assert.That(full.Message, Does.Contain("3").And.Contain("Capacity"));
        Assert.That(() => engine.DecodeStepsAsync(routes[3].Prompt, Options), Throws.TypeOf<SaberEngineFullException>());

        gate.Open();
        await Task.WhenAll(t0, t1, t2);
        await MatchesAloneAsync(engine.DecodeAsync(routes[4].Prompt, Options), routes[4], Options, "after the queue drained");
    }

    [Test]
    public async Task AdmissionIsFirstComeFirstServed()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var routes = Enumerable.Range(0, 6).Select(i => routing.Add(i, i, 3, 8, 0)).ToArray();
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 1 });
        Task<SequenceResult> first = engine.DecodeAsync(routes[0].Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult>[] rest = routes.Skip(1).Select(r => engine.DecodeAsync(r.Prompt, Options)).ToArray();
        gate.Open();
        await Task.WhenAll(rest.Append(first));
        int[] order = gate.Calls.Select(c => c.Canvases[0].Span[0]).Distinct().ToArray();
        Assert.That(order, Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
    }

    [Test]
    public async Task InvalidRequestsFailAloneBeforeAdmission()
    {
        var routing = new RoutingDenoiser(Vocabulary) { MaxSequenceLength = 16 };
        var good = routing.Add(0, 1, 4, 8, 1);
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate);

        Task<SequenceResult> ok = engine.DecodeAsync(good.Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> noGeneration = engine.DecodeAsync(good.Prompt, Options with { GenerationLength = 0 });
        Task<SequenceResult> maskInPrompt = engine.DecodeAsync(new[] { 1, routing.MaskId }, Options);
        Task<SequenceResult> tooLong = engine.DecodeAsync(Enumerable.Repeat(1, 9).ToArray(), Options);
        Task<SequenceResult> badBlock = engine.DecodeAsync(good.Prompt, Options with { BlockLength = 3 });
        Assert.That(async () => await noGeneration, Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("G"));
        Assert.That(async () => await maskInPrompt, Throws.InstanceOf<ArgumentException>().With.Message.Contains("mask"));
        Assert.That(async () => await tooLong, Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("at most 16"));
        Assert.That(async () => await badBlock, Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("K"));
        Assert.That(() => engine.DecodeStepsAsync(good.Prompt, Options with { Temperature = -1 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(engine.WaitingCount, Is.Zero);
        gate.Open();
        await MatchesAloneAsync(ok, good, Options, "the valid request");
    }

    [Test]
    public async Task ADenoiserExceptionFailsThatPassOnlyAndTheEngineGoesOn()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 0);
        var b = routing.Add(1, 2, 4, 8, 0);
        var c = routing.Add(2, 3, 4, 8, 0);
        var gate = new GatedDenoiser(new FailingDenoiser(routing, 2));
        await using var engine = new SaberEngine(gate);

        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, Options);
        gate.Release();
        Assert.That((await gate.NextCallAsync()).Canvases, Has.Count.EqualTo(2));
        gate.Release();                        // call 2 throws
        Assert.That(async () => await ta, Throws.InvalidOperationException.With.Message.Contains("call 2"));
        Assert.That(async () => await tb, Throws.InvalidOperationException.With.Message.Contains("call 2"));
        gate.Open();
        await MatchesAloneAsync(engine.DecodeAsync(c.Prompt, Options), c, Options, "a later request");
    }

    [Test]
    public async Task BadLogitsForOneRequestFailThatRequestAlone()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 0);
        var b = routing.Add(1, 2, 4, 8, 0);
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate);
        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, Options);
        await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, Options);
        routing.PoisonKey = 1;
        gate.Open();
        Assert.That(async () => await tb, Throws.TypeOf<InvalidLogitsException>());
        await MatchesAloneAsync(ta, a, Options, "A");
    }

    [Test]
    public async Task DisposalCancelsTheForwardPassInFlightAndEveryRequestLeft()
    {
        var hanging = new HangingDenoiser(Vocabulary);
        var engine = new SaberEngine(hanging, new SaberEngineOptions { MaxBatchSize = 1 });
        Task<SequenceResult> running = engine.DecodeAsync(new[] { 1, 2, 3 }, Options);
        await hanging.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Task<SequenceResult> waiting = engine.DecodeAsync(new[] { 4, 5 }, Options);

        await engine.DisposeAsync();

        Assert.That(running.IsCanceled && waiting.IsCanceled, "settled when DisposeAsync returns");
        Assert.That(async () => await engine.DecodeAsync(new[] { 1 }, Options), Throws.TypeOf<ObjectDisposedException>());
        await engine.DisposeAsync();   // idempotent
    }

    [Test]
    public async Task DisposalDisposesTheDenoiserOnlyWhenAskedTo()
    {
        var owned = new DisposableDenoiser(Vocabulary);
        await new SaberEngine(owned, new SaberEngineOptions { DisposeDenoiser = true }).DisposeAsync();
        var borrowed = new DisposableDenoiser(Vocabulary);
        await new SaberEngine(borrowed).DisposeAsync();
        Assert.That((owned.Disposed, borrowed.Disposed), Is.EqualTo((true, false)));
    }

    [Test]
    public async Task StreamedStepsAreTheRequestsOwnAndEndWithItsResult()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 16, 2);
        var b = routing.Add(1, 2, 3, 16, 2);
        var options = Options with { GenerationLength = 16, Temperature = 0.8f, Seed = 42 };
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate);
        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, options);
        await gate.NextCallAsync();
        IAsyncEnumerable<SequenceStep> stream = engine.DecodeStepsAsync(b.Prompt, options);
        gate.Open();
        var steps = new List<SequenceStep>();
        await foreach (SequenceStep step in stream) steps.Add(step);
        await ta;

        SequenceResult alone = await AloneAsync(b.Denoiser, b.Prompt, options);
        Assert.That(steps, Has.Count.EqualTo(alone.Nfe));
        Assert.That(steps.Select(s => s.Finished), Is.EqualTo(Enumerable.Range(1, alone.Nfe).Select(i => i == alone.Nfe)));
        for (int i = 0; i < steps.Count; i++)
            Same.Step(alone.Trace[i], steps[i].Trace, $"streamed step {i + 1}");
        Assert.That(steps[^1].Canvas, Is.EqualTo(alone.Canvas));
        // Each step carries the re-mask counts so far: its own re-masks added to the previous step's.
        for (int i = 0; i < steps.Count; i++)
            Assert.That(steps[i].RemaskStatistics!.Remasks, Is.EqualTo(alone.Trace.Take(i + 1).Sum(t => t.Remasked.Count)), $"re-masks after step {i + 1}");
        Assert.That(steps[^1].RemaskStatistics, Is.EqualTo(alone.RemaskStatistics));
    }

    [Test]
    public async Task LeavingAStreamEarlyCancelsItsRequest()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 16, 0);
        var b = routing.Add(1, 2, 4, 8, 0);
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 1 });
        IAsyncEnumerator<SequenceStep> steps = engine.DecodeStepsAsync(a.Prompt, Options with { GenerationLength = 16, Strategy = new LowConfidenceStrategy(16) })
            .GetAsyncEnumerator();
        ValueTask<bool> first = steps.MoveNextAsync();
        await gate.NextCallAsync();
        gate.Release();
        Assert.That(await first, Is.True);
        Assert.That(steps.Current.Trace.Step, Is.EqualTo(1));
        await steps.DisposeAsync();            // leaves after one step, while the gate holds any second pass
        gate.Open();

        await MatchesAloneAsync(engine.DecodeAsync(b.Prompt, Options).WaitAsync(TimeSpan.FromSeconds(30)), b, Options, "B, after A's slot was freed");
        Assert.That(gate.Calls.Count(c => c.Canvases.Any(x => x.Span[0] == 0)), Is.LessThanOrEqualTo(2), "A left at the next step boundary");
    }

    [Test]
    public async Task EngineLogsThroughILogger()
    {
        var sink = new ListLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(sink));
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 4, 8, 0);
        await using (var engine = new SaberEngine(routing, null, factory.CreateLogger<SaberEngine>()))
            await engine.DecodeAsync(a.Prompt, Options);
        Assert.That(sink.Lines, Has.Some.Contains("admitted").And.Some.Contains("finished"));
    }

    [Test]
    public void OptionsAreValidated()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        Assert.That(() => new SaberEngine(routing, new SaberEngineOptions { Capacity = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Capacity"));
        Assert.That(() => new SaberEngine(routing, new SaberEngineOptions { MaxBatchSize = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxBatchSize"));
        Assert.That(() => new SaberEngine(routing, new SaberEngineOptions { MaxRowsPerForward = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    private sealed class DisposableDenoiser(int vocabulary) : IDenoiser, IDisposable
    {
        public bool Disposed { get; private set; }
        public int VocabularySize => vocabulary;
        public int MaskId => vocabulary - 1;
        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken) => throw new NotSupportedException();
        public void Dispose() => Disposed = true;
    }

    private sealed class ListLoggerProvider : ILoggerProvider
    {
        public List<string> Lines { get; } = [];
        public ILogger CreateLogger(string categoryName) => new Logger(this);
        public void Dispose() { }

        private sealed class Logger(ListLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner.Lines) owner.Lines.Add(formatter(state, exception));
            }
        }
    }
}
