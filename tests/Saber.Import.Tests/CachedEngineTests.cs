using Saber.Checkpoints.Fixtures;
using Saber.Onnx;

namespace Saber.Import.Tests;

/// <summary>
/// <see cref="OnnxDenoiser"/>'s cache windows on imported LLaDA and Dream models: a full pass (refresh) gives the plain
/// graph's rows, a window on the unchanged canvas gives the same rows for its queries (Dream's shift applied through the
/// computed set), and a cached decode runs end to end with its caches released.
/// </summary>
public sealed class CachedEngineTests
{
    private static string root = "";

    [OneTimeSetUp]
    public void CreateRoot() => root = Directory.CreateTempSubdirectory("saber-cached-engine-").FullName;

    [OneTimeTearDown]
    public void DeleteRoot() => Directory.Delete(root, recursive: true);

    private static string Import(Family family)
    {
        string checkpoint = Path.Combine(root, $"{family}-checkpoint"), model = Path.Combine(root, $"{family}-model");
        if (Directory.Exists(model)) return model;
        CheckpointFixture.Write(checkpoint, new FixtureOptions { Family = family });
        new ModelImporter().Import(checkpoint, model, new ImportOptions());
        return model;
    }

    private static int[] Canvas(OnnxDenoiser denoiser, int length)
    {
        var rng = new Random(7);
        return Enumerable.Range(0, length).Select(i => i >= length - 6 ? denoiser.MaskId : (denoiser.MaskId + 1 + rng.Next(denoiser.VocabularySize - 1)) % denoiser.VocabularySize).ToArray();
    }

    private static async Task<SequenceLogits> Forward(OnnxDenoiser denoiser, int[] canvas, int from, CacheWindow? window) =>
        (await denoiser.ForwardAsync(new DenoiseRequest(1, [0], [canvas]) { LogitsFrom = [from], Windows = window is null ? null : [window] },
            CancellationToken.None))[0];

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public async Task AFullPassThenAWindowGiveThePlainGraphsRowsBitForBit(Family family)
    {
        using LocalModel model = LocalModel.Open(Import(family));
        var denoiser = (OnnxDenoiser)model.Denoiser;
        Assert.That(denoiser.CacheUnavailable, Is.Null, "saber import writes the cache graph");
        int[] canvas = Canvas(denoiser, 24);
        const int from = 10;
        SequenceLogits plain = await Forward(denoiser, canvas, from, null);
        float[][] expected = Enumerable.Range(from, canvas.Length - from).Select(p => plain.Float32Row(p).ToArray()).ToArray();

        using IDenoiserCache cache = denoiser.CreateCache(canvas.Length);
        SequenceLogits full = await Forward(denoiser, canvas, from, new CacheWindow(cache, Refresh: true, []));
        Assert.That(full.Positions.ToArray(), Is.EqualTo(Enumerable.Range(from, canvas.Length - from).ToArray()));
        for (int p = from; p < canvas.Length; p++)
            Assert.That(full.Float32Row(p).ToArray(), Is.EqualTo(expected[p - from]), $"{family}: refresh row {p}");

        int[] queries = [3, 12, 16, 17, 18, 19, 23];   // a prompt position (no row), a stray one and a block
        SequenceLogits window = await Forward(denoiser, canvas, from, new CacheWindow(cache, Refresh: false, queries));
        Assert.That(window.Positions.ToArray(), Is.EqualTo(queries.Where(q => q >= from).ToArray()));
        foreach (int p in queries.Where(q => q >= from))
            Assert.That(window.Float32Row(p).ToArray(), Is.EqualTo(expected[p - from]), $"{family}: window row {p}");
        Assert.That(denoiser.CacheBytesInUse, Is.EqualTo(cache.Bytes));
        Assert.That(cache.Bytes, Is.EqualTo(canvas.Length * denoiser.CacheBytesPerPosition));
        Assert.That(denoiser.CacheBytesPerPosition, Is.EqualTo(denoiser.Architecture!.Layers * 2L * denoiser.Architecture.KvHeads * denoiser.Architecture.HeadDim * 4));
    }

    [TestCase(Family.LLaDA, CachePolicy.Prefix)]
    [TestCase(Family.Dream, CachePolicy.Dual)]
    public async Task ACachedDecodeRunsEndToEndAndReleasesItsCaches(Family family, CachePolicy policy)
    {
        using LocalModel model = LocalModel.Open(Import(family));
        var denoiser = (OnnxDenoiser)model.Denoiser;
        int[][] prompts = [Canvas(denoiser, 20)[..6], Canvas(denoiser, 20)[2..6]];
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 4, Strategy = new SaberStrategy(), Cache = new CacheOptions(policy), Trace = true };
        DecodeResult result = await new CpuSampler().DecodeAsync(denoiser, prompts.Select(p => (ReadOnlyMemory<int>)p).ToArray(), options);
        Assert.That(denoiser.CacheBytesInUse, Is.Zero);
        foreach (SequenceResult s in result.Sequences)
        {
            Assert.That(s.Tokens.ToArray(), Has.None.EqualTo(denoiser.MaskId));
            Assert.That(s.Cache!.Passes, Is.EqualTo(s.Nfe));
            Assert.That(s.Cache.FullPasses, Is.InRange(1, s.Nfe));
            Assert.That(s.ForwardFlops, Is.GreaterThan(0));
        }
        DecodeResult alone = await new CpuSampler().DecodeAsync(denoiser, [prompts[1]], options);
        Assert.That(alone.Sequences[0].Canvas, Is.EqualTo(result.Sequences[1].Canvas), "the same decode alone and beside another");
    }

    [Test]
    public void AModelWithoutACacheGraphRunsPolicyNoneOnlyAndSaysHowToGetOne()
    {
        string dir = Path.Combine(root, "plain-only");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(AppContext.BaseDirectory, "models", "tiny", "model.onnx"), Path.Combine(dir, "model.onnx"), overwrite: true);
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(Path.Combine(dir, "model.onnx"));
        Assert.That(denoiser.CacheUnavailable, Does.Contain("has no cache graph").And.Contain("saber import --cache-graph DIR"));
        Assert.That(denoiser.PassFlops(10, 10, 10), Is.Null, "without the cache graph's sizes the engine does not know its FLOPs");
        var e = Assert.ThrowsAsync<CacheUnavailableException>(() => new CpuSampler().DecodeAsync(denoiser, [new[] { 5, 6 }],
            new DecodeOptions { GenerationLength = 8, Cache = new CacheOptions(CachePolicy.Prefix) }));
        Assert.That(e!.Message, Does.StartWith("Cache policy 'prefix' needs a model with a cache graph: '").And.Contain("model.cache.onnx' does not exist"));
        Assert.That(() => OnnxDenoiser.Load(Path.Combine(dir, "model.onnx"), new OnnxEngineOptions { CacheGraphPath = Path.Combine(dir, "nope.onnx") }),
            Throws.TypeOf<FileNotFoundException>().With.Message.Contains("No cache graph at"));
    }
}
