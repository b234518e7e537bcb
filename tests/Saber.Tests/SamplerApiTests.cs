using Microsoft.Extensions.Logging;

namespace Saber.Tests;

/// <summary>Batches, streaming, cancellation and logging of <see cref="CpuSampler"/>.</summary>
public class SamplerApiTests
{
    private static readonly DecodeOptions Options = new() { GenerationLength = 12, BlockLength = 4, Strategy = new SaberStrategy(), Trace = true };

    private static ReadOnlyMemory<int>[] Prompts(params int[][] prompts) => prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray();

    [Test]
    public async Task RaggedBatchDecodesEachSequenceAsIfAlone()
    {
        // At T = 0 a sequence's decode depends only on its own canvas; batching must not change it.
        var denoiser = new RandomDenoiser(3, 29, 28, LogitsElementType.BFloat16);
        int[][] prompts = [[], [1, 2, 3], [4, 5, 6, 7, 8, 9, 10]];
        DecodeResult batch = await new CpuSampler().DecodeAsync(denoiser, Prompts(prompts), Options);

        Assert.That(batch.Sequences, Has.Count.EqualTo(3));
        for (int b = 0; b < prompts.Length; b++)
        {
            SequenceResult alone = (await new CpuSampler().DecodeAsync(denoiser, Prompts(prompts[b]), Options)).Sequences[0];
            Assert.That(batch.Sequences[b].Canvas, Is.EqualTo(alone.Canvas), $"sequence {b}");
            Assert.That(batch.Sequences[b].Nfe, Is.EqualTo(alone.Nfe), $"sequence {b}");
            Assert.That(batch.Sequences[b].PromptLength, Is.EqualTo(prompts[b].Length));
        }
        Assert.That(batch.Steps, Is.EqualTo(batch.Sequences.Max(s => s.Nfe)));
        Assert.That(batch.Sequences.Select(s => s.Nfe).Distinct().Count(), Is.GreaterThan(1), "test set-up: NFEs should differ so that early finishers are exercised");
    }

    [Test]
    public async Task EmptyBatchMakesNoModelCall()
    {
        var denoiser = new CountingDenoiser(new RandomDenoiser(3, 29, 28));
        DecodeResult result = await new CpuSampler().DecodeAsync(denoiser, [], Options);
        Assert.That(result.Sequences, Is.Empty);
        Assert.That(denoiser.Calls, Is.Zero);
    }

    [Test]
    public async Task StreamingYieldsEveryStepAndEndsWithTheDecodeResult()
    {
        var denoiser = new RandomDenoiser(4, 29, 28);
        int[][] prompts = [[1], [2, 3, 4, 5]];
        DecodeResult whole = await new CpuSampler().DecodeAsync(denoiser, Prompts(prompts), Options);

        var last = new int[prompts.Length][];
        var finishedAt = new int[prompts.Length];
        int steps = 0;
        await foreach (DecodeStepUpdate update in new CpuSampler().DecodeStepsAsync(denoiser, Prompts(prompts), Options))
        {
            Assert.That(update.Step, Is.EqualTo(++steps));
            foreach (SequenceStep s in update.Sequences)
            {
                Assert.That(finishedAt[s.Sequence], Is.Zero, $"sequence {s.Sequence} reported after it finished");
                Assert.That(s.Trace, Is.EqualTo(whole.Sequences[s.Sequence].Trace[update.Step - 1]).Using<StepTrace>(SameStep));
                last[s.Sequence] = s.Canvas;
                if (s.Finished) finishedAt[s.Sequence] = update.Step;
            }
        }
        for (int b = 0; b < prompts.Length; b++)
        {
            Assert.That(last[b], Is.EqualTo(whole.Sequences[b].Canvas));
            Assert.That(finishedAt[b], Is.EqualTo(whole.Sequences[b].Nfe));
        }
        Assert.That(steps, Is.EqualTo(whole.Steps));
    }

    [Test]
    public async Task StreamedCanvasesAreSnapshots()
    {
        var snapshots = new List<int[]>();
        await foreach (DecodeStepUpdate update in new CpuSampler().DecodeStepsAsync(new RandomDenoiser(4, 29, 28), Prompts([1]), Options))
            snapshots.Add(update.Sequences[0].Canvas);
        int masks(int[] c) => c.Count(t => t == 28);
        Assert.That(masks(snapshots[0]), Is.GreaterThan(masks(snapshots[^1])), "earlier snapshots were overwritten by later steps");
    }

    [Test]
    public void CancellationBeforeTheFirstStepMakesNoModelCall()
    {
        var denoiser = new CountingDenoiser(new RandomDenoiser(4, 29, 28));
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.CatchAsync<OperationCanceledException>(() => new CpuSampler().DecodeAsync(denoiser, Prompts([1]), Options, cancel.Token));
        Assert.That(denoiser.Calls, Is.Zero);
    }

    [Test]
    public async Task CancellationBetweenStepsStopsTheStream()
    {
        var denoiser = new CountingDenoiser(new RandomDenoiser(4, 29, 28));
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        var e = Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (DecodeStepUpdate _ in new CpuSampler().DecodeStepsAsync(denoiser, Prompts([1]), Options, cancel.Token))
                if (++seen == 2) cancel.Cancel();
        });
        Assert.That(e, Is.Not.Null);
        Assert.That(denoiser.Calls, Is.EqualTo(2));
        await Task.CompletedTask;
    }

    [Test]
    public async Task LogsASummaryAtInformationAndEachStepAtTrace()
    {
        var sink = new ListLogger();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(sink));
        DecodeResult result = await new CpuSampler(factory.CreateLogger<CpuSampler>()).DecodeAsync(new RandomDenoiser(4, 29, 28), Prompts([1]), Options);

        var info = sink.Entries.Where(e => e.Level == LogLevel.Information).ToList();
        Assert.That(info, Has.Count.EqualTo(1));
        Assert.That(info[0].Message, Does.Contain($"mean NFE {result.Sequences[0].Nfe:F1}").And.Contain("12 tokens"));
        Assert.That(sink.Entries.Count(e => e.Level == LogLevel.Trace), Is.EqualTo(result.Sequences[0].Nfe));
    }

    [TestCase(0)]
    [TestCase(-2)]
    public void BadDegreeOfParallelism(int degree) =>
        Assert.That(() => new CpuSampler(maxDegreeOfParallelism: degree), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contain("positive thread count"));

    private static bool SameStep(StepTrace a, StepTrace b) =>
        a.Step == b.Step && a.Tau == b.Tau && a.Committed.SequenceEqual(b.Committed) && a.Remasked.SequenceEqual(b.Remasked);

    private sealed class ListLogger : ILoggerProvider, ILogger
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];
        public ILogger CreateLogger(string categoryName) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, formatter(state, exception)));
        }
        public void Dispose() { }
    }
}
