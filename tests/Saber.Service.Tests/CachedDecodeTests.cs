using Saber.Onnx;

namespace Saber.Service.Tests;

/// <summary>
/// Cached decodes on the shipped model's cache graph through the engine: requests with policies none, prefix and dual share
/// the engine's passes (windows of different canvases and query counts batched in one run), and each decodes exactly as it
/// does alone on the CPU sampler (batch invariance with a cache on); every cache is released at the end.
/// </summary>
public class CachedDecodeTests
{
    private static string TinyDirectory => Path.Combine(AppContext.BaseDirectory, "models", "tiny");

    private static readonly string[] Prompts = ["def fibonacci(n):\n", "class Stack:\n\tdef push(self, item):\n", "import os\n\n\ndef main():\n", "x = "];

    private static DecodeOptions OptionsFor(int i) => new()
    {
        GenerationLength = 32,
        BlockLength = 8,
        Strategy = (i % 4) switch
        {
            0 => new SaberStrategy(),
            1 => new SaberStrategy(SaberVariant.Paper),
            2 => new LowConfidenceStrategy(16),
            _ => new ThresholdStrategy(0.7f),
        },
        Cache = (i % 3) switch
        {
            0 => CacheOptions.None,
            1 => new CacheOptions(CachePolicy.Prefix, RefreshEvery: 4),
            _ => new CacheOptions(CachePolicy.Dual, OnRemask: i % 2 == 0 ? RemaskRefresh.Positions : RemaskRefresh.Block),
        },
        Temperature = i % 2 == 0 ? 0f : 0.9f,
        Seed = (ulong)(2000 + i),
        Trace = true,
    };

    [Test]
    public async Task CachedRequestsSharingTheEngineDecodeAsTheyDoAlone()
    {
        var tokenizer = CharacterTokenizer.Load(Path.Combine(TinyDirectory, "tokenizer.json"));
        string model = Path.Combine(TinyDirectory, "model.onnx");
        var options = new OnnxEngineOptions { IntraOpThreads = 1 };
        using OnnxDenoiser shared = OnnxDenoiser.Load(model, options);
        using OnnxDenoiser alone = OnnxDenoiser.Load(model, options);
        Assert.That(shared.CacheUnavailable, Is.Null, "models/tiny ships a cache graph");

        const int count = 12;
        int[][] prompts = Enumerable.Range(0, count).Select(i => tokenizer.Encode(Prompts[i % Prompts.Length] + new string('\t', i / Prompts.Length))).ToArray();
        SequenceResult[] results;
        await using (var engine = new SaberEngine(shared, new SaberEngineOptions { MaxBatchSize = 6 }))
            results = await Task.WhenAll(Enumerable.Range(0, count).Select(i => engine.DecodeAsync(prompts[i], OptionsFor(i)))).WaitAsync(TimeSpan.FromMinutes(3));

        Assert.That(shared.CacheBytesInUse, Is.Zero, "every cache is released when its request ends");
        Assert.That(shared.Runs, Is.LessThan(results.Sum(r => r.Nfe)), "requests shared runs");
        Assert.That(shared.WindowsRun, Is.GreaterThan(shared.WindowRuns * 3 / 2), "cache windows of several requests shared runs");
        var sampler = new CpuSampler();
        for (int i = 0; i < count; i++)
        {
            DecodeResult reference = await sampler.DecodeAsync(alone, [prompts[i]], OptionsFor(i));
            Same.Result(reference.Sequences[0], results[i], $"request {i} ({OptionsFor(i).Strategy}, {OptionsFor(i).Cache})");
            Assert.That(results[i].Cache?.Policy, Is.EqualTo(OptionsFor(i).Cache.Enabled ? OptionsFor(i).Cache.Policy : (CachePolicy?)null));
            Assert.That(results[i].ForwardFlops, Is.EqualTo(reference.Sequences[0].ForwardFlops).And.GreaterThan(0));
        }
        double Computed(int i) => results[i].Cache is { } c ? (double)c.ComputedPositions / c.CanvasPositions : 1;
        Assert.That(Enumerable.Range(0, count).Where(i => OptionsFor(i).Cache.Policy == CachePolicy.Dual).Max(Computed), Is.LessThan(0.6),
            "a dual cache computes a fraction of the canvas");
    }

    [Test]
    public async Task ARequestWhoseCacheCannotFitIsRefusedWithTheSizes()
    {
        var tokenizer = CharacterTokenizer.Load(Path.Combine(TinyDirectory, "tokenizer.json"));
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(Path.Combine(TinyDirectory, "model.onnx"), new OnnxEngineOptions { IntraOpThreads = 1, MaxCacheBytes = 100_000 });
        await using var engine = new SaberEngine(denoiser);
        int[] prompt = tokenizer.Encode("def f(x):\n");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            engine.DecodeAsync(prompt, new DecodeOptions { GenerationLength = 32, Cache = new CacheOptions(CachePolicy.Dual) }).GetAwaiter().GetResult());
        Assert.That(e!.Message, Does.Contain($"takes {(prompt.Length + 32) * 4096} bytes (4096 a position)").And.Contain("the engine's cache limit is 100000 bytes"));
        SequenceResult fits = await engine.DecodeAsync(prompt, new DecodeOptions { GenerationLength = 8, Cache = new CacheOptions(CachePolicy.Dual) });
        Assert.That(fits.Cache!.Passes, Is.EqualTo(fits.Nfe));
        Assert.That(denoiser.CacheBytesInUse, Is.Zero);
    }

    [TestCase(CachePolicy.Prefix)]
    [TestCase(CachePolicy.Dual)]
    public async Task ACacheRefreshedEveryCallDecodesExactlyAsNoCache(CachePolicy policy)
    {
        // R = 1 makes every call a full pass on the cache graph, whose logits equal the plain graph's bit for bit: the decode
        // must be the uncached one, for every strategy (what is approximate is the window, nothing else).
        var tokenizer = CharacterTokenizer.Load(Path.Combine(TinyDirectory, "tokenizer.json"));
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(Path.Combine(TinyDirectory, "model.onnx"), new OnnxEngineOptions { IntraOpThreads = 1 });
        ReadOnlyMemory<int>[] prompts = Prompts.Select(p => (ReadOnlyMemory<int>)tokenizer.Encode(p)).ToArray();
        DecodingStrategy[] strategies = [new SaberStrategy(), new SaberStrategy(SaberVariant.Paper), new LowConfidenceStrategy(16), new ThresholdStrategy(0.7f), new FactorStrategy(2f)];
        foreach (DecodingStrategy strategy in strategies)
        {
            var exact = new DecodeOptions { GenerationLength = 32, BlockLength = 8, Strategy = strategy, Temperature = 0.5f, Seed = 9, Trace = true };
            DecodeResult none = await new CpuSampler().DecodeAsync(denoiser, prompts, exact);
            DecodeResult refreshed = await new CpuSampler().DecodeAsync(denoiser, prompts, exact with { Cache = new CacheOptions(policy, RefreshEvery: 1) });
            for (int b = 0; b < prompts.Length; b++)
            {
                Same.Result(none.Sequences[b], refreshed.Sequences[b], $"{strategy}, prompt {b}");
                Assert.That(refreshed.Sequences[b].Cache!.FullPasses, Is.EqualTo(refreshed.Sequences[b].Nfe));
            }
        }
    }
}
