using Saber.Denoisers;

namespace Saber.Service.Tests;

/// <summary>
/// Batch invariance: whatever ran beside it and whenever it was admitted, a request's tokens, NFE and trace are
/// bit-identical to <see cref="CpuSampler"/> decoding its prompt alone.
/// </summary>
public class InvarianceTests
{
    private const int Vocabulary = 40;

    private static DecodeOptions RandomOptions(Random rng, int generation)
    {
        int[] divisors = Enumerable.Range(1, generation).Where(k => generation % k == 0 && k >= 2).ToArray();
        int k = divisors[rng.Next(divisors.Length)];
        int blocks = generation / k;
        DecodingStrategy strategy = rng.Next(5) switch
        {
            0 => new SaberStrategy(SaberVariant.Reference, MinTokensPerStep: rng.Next(1, 4), RemaskDivisor: rng.Next(1, 9)),
            1 => new SaberStrategy(SaberVariant.Paper, MinTokensPerStep: rng.Next(1, 4), RemaskDivisor: rng.Next(1, 9)),
            2 => new LowConfidenceStrategy(blocks * rng.Next(1, Math.Max(2, k / 2 + 1)), (ConfidenceMetric)rng.Next(4)),
            3 => new ThresholdStrategy(0.3f + 0.6f * (float)rng.NextDouble()),
            _ => new FactorStrategy(0.5f + 3f * (float)rng.NextDouble()),
        };
        return new DecodeOptions
        {
            GenerationLength = generation,
            BlockLength = k,
            Strategy = strategy,
            Temperature = rng.Next(2) == 0 ? 0f : 0.25f + 1.5f * (float)rng.NextDouble(),
            Seed = (ulong)rng.NextInt64(),
            Trace = true,
        };
    }

    private static SaberEngineOptions RandomEngineOptions(Random rng) => new()
    {
        MaxBatchSize = new[] { 1, 2, 3, 5, 32 }[rng.Next(5)],
        GroupByCanvasLength = rng.Next(2) == 0,
        GroupByStep = rng.Next(3) == 0,
        MaxRowsPerForward = rng.Next(3) == 0 ? rng.Next(1, 4) : null,
        MaxDegreeOfParallelism = rng.Next(2) == 0 ? 1 : -1,
    };

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    [TestCase(5)]
    [TestCase(6)]
    [TestCase(7)]
    [TestCase(8)]
    public async Task SyntheticRequestsAdmittedAtRandomStepsMatchTheirLoneDecode(int scenario)
    {
        var rng = new Random(1000 + scenario);
        var routing = new RoutingDenoiser(Vocabulary);
        int count = rng.Next(4, 11);
        var plan = new List<Planned>();
        var references = new List<SyntheticDenoiser>();
        for (int i = 0; i < count; i++)
        {
            int generation = new[] { 8, 12, 16, 24 }[rng.Next(4)];
            var (prompt, denoiser) = routing.Add(key: i, seed: rng.Next(), promptLength: rng.Next(1, 9), generation, traps: rng.Next(0, 3));
            plan.Add(new Planned(prompt, RandomOptions(rng, generation), AtCall: rng.Next(0, 14)));
            references.Add(denoiser);
        }
        // Logits live in one buffer that every call poisons first: the engine must consume a pass before the next.
        var gate = new GatedDenoiser(new BufferReusingDenoiser(routing));
        SaberEngineOptions engineOptions = RandomEngineOptions(rng);
        await using var engine = new SaberEngine(gate, engineOptions);

        SequenceResult[] results = await Driver.RunAsync(engine, gate, plan);

        Assert.That(gate.Overlapped, Is.False, "the engine never overlaps forward passes");
        Assert.That(gate.Calls.Max(c => c.Canvases.Count), Is.LessThanOrEqualTo(Math.Min(engineOptions.MaxBatchSize, engineOptions.MaxRowsPerForward ?? int.MaxValue)));
        if (engineOptions.GroupByCanvasLength)
            Assert.That(gate.Calls.All(c => c.Canvases.Select(x => x.Length).Distinct().Count() == 1), "one canvas length per pass");
        Assert.That(gate.Calls.Any(c => c.Canvases.Count > 1) || engineOptions.MaxBatchSize == 1 || engineOptions.MaxRowsPerForward == 1
            || engineOptions.GroupByStep || engineOptions.GroupByCanvasLength, "requests shared passes");
        var sampler = new CpuSampler(maxDegreeOfParallelism: 1);
        for (int i = 0; i < count; i++)
        {
            DecodeResult alone = await sampler.DecodeAsync(references[i], [plan[i].Prompt], plan[i].Options);
            Same.Result(alone.Sequences[0], results[i], $"scenario {scenario}, request {i} ({plan[i].Options.Strategy}, T={plan[i].Options.Temperature}, at call {plan[i].AtCall})");
        }
    }

    [Test]
    public async Task OneForwardPassServesEveryActiveSequenceAtItsOwnStep()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var a = routing.Add(0, 1, 3, 16, 1);
        var b = routing.Add(1, 2, 5, 16, 1);
        var c = routing.Add(2, 3, 2, 8, 0);
        var options = new DecodeOptions { GenerationLength = 16, Strategy = new LowConfidenceStrategy(16), Trace = true };
        var gate = new GatedDenoiser(routing);
        await using var engine = new SaberEngine(gate);

        Task<SequenceResult> ta = engine.DecodeAsync(a.Prompt, options);
        DenoiseRequest first = await gate.NextCallAsync();
        Task<SequenceResult> tb = engine.DecodeAsync(b.Prompt, options);
        Task<SequenceResult> tc = engine.DecodeAsync(c.Prompt, options with { GenerationLength = 8, Strategy = new LowConfidenceStrategy(8) });
        Assert.That(ta.IsCompleted || tb.IsCompleted || tc.IsCompleted, Is.False, "submission returns before any decode ran");
        gate.Release();
        DenoiseRequest second = await gate.NextCallAsync();
        gate.Open();
        SequenceResult[] results = await Task.WhenAll(ta, tb, tc);

        Assert.That(first.Canvases, Has.Count.EqualTo(1));
        Assert.That(second.Canvases, Has.Count.EqualTo(3), "one pass for the running request and both admitted ones");
        Assert.That(second.SequenceIds, Is.Unique);
        Assert.That(second.Step, Is.EqualTo(1), "the smallest own step of the pass");
        Assert.That(results[0].Nfe, Is.EqualTo(16));
        Assert.That(results[1].Trace.Select(t => t.Step), Is.EqualTo(Enumerable.Range(1, 16)), "steps count from the request's admission");
        Assert.That(results[2].Nfe, Is.EqualTo(8));
        Assert.That(engine.ForwardPasses, Is.EqualTo(17), "16 steps of A; B and C ride along from A's second step");
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public async Task ReplayedRequestsMatchTheirLoneDecode(int scenario)
    {
        const int steps = 40, length = 20, vocabulary = 24;
        var rng = new Random(2000 + scenario);
        float[] values = new float[steps * length * vocabulary];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 8 - 4);
        string path = Path.Combine(Path.GetTempPath(), $"saber-service-replay-{Environment.ProcessId}-{scenario}.npy");
        Npy.WriteFloat32(path, [steps, length, vocabulary], values);
        try
        {
            using var replay = new ReplayDenoiser(path, maskId: vocabulary - 1);
            using var alone = new ReplayDenoiser(path, maskId: vocabulary - 1);
            var plan = new List<Planned>();
            for (int i = 0; i < 6; i++)
            {
                int promptLength = rng.Next(2) == 0 ? 4 : 8;
                int[] prompt = Enumerable.Range(0, promptLength).Select(_ => rng.Next(vocabulary - 1)).ToArray();
                plan.Add(new Planned(prompt, RandomOptions(rng, length - promptLength), AtCall: rng.Next(0, 20)));
            }
            var gate = new GatedDenoiser(replay);
            // A replay answers one canvas at the step it recorded: one sequence per pass, grouped by own step.
            await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 4, GroupByStep = true, MaxRowsPerForward = 1 });
            SequenceResult[] results = await Driver.RunAsync(engine, gate, plan);

            var sampler = new CpuSampler();
            for (int i = 0; i < plan.Count; i++)
            {
                DecodeResult reference = await sampler.DecodeAsync(alone, [plan[i].Prompt], plan[i].Options);
                Same.Result(reference.Sequences[0], results[i], $"replay scenario {scenario}, request {i} ({plan[i].Options.Strategy})");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public async Task ThirtyTwoConcurrentSubmittersFromManyThreads()
    {
        var rng = new Random(77);
        var routing = new RoutingDenoiser(Vocabulary);
        var plan = new List<(int[] Prompt, DecodeOptions Options, SyntheticDenoiser Reference)>();
        for (int i = 0; i < 36; i++)
        {
            int generation = new[] { 8, 16 }[rng.Next(2)];
            var (prompt, denoiser) = routing.Add(i, rng.Next(), rng.Next(1, 7), generation, rng.Next(0, 3));
            plan.Add((prompt, RandomOptions(rng, generation), denoiser));
        }
        var gate = new GatedDenoiser(new BufferReusingDenoiser(routing));
        gate.Open();
        await using var engine = new SaberEngine(gate, new SaberEngineOptions { MaxBatchSize = 8, Capacity = 64 });

        using var start = new Barrier(plan.Count);
        Task<SequenceResult>[] tasks = plan.Select(p => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            return engine.DecodeAsync(p.Prompt, p.Options);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap()).ToArray();
        SequenceResult[] results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.That(gate.Overlapped, Is.False);
        var sampler = new CpuSampler();
        for (int i = 0; i < plan.Count; i++)
        {
            DecodeResult alone = await sampler.DecodeAsync(plan[i].Reference, [plan[i].Prompt], plan[i].Options);
            Same.Result(alone.Sequences[0], results[i], $"request {i}");
        }
        Assert.That(engine.ActiveCount + engine.WaitingCount, Is.Zero);
    }
}
