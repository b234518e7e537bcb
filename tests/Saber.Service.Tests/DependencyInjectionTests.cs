using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Saber.Denoisers;

namespace Saber.Service.Tests;

/// <summary><c>services.AddSaber(...)</c>: resolution, binding of every key, startup validation and disposal with the container.</summary>
public class DependencyInjectionTests
{
    private const int Vocabulary = 32;

    private static IConfigurationSection Section(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>("Saber:" + v.Key, v.Value)))
            .Build()
            .GetSection(SaberServiceOptions.SectionName);

    /// <summary>What the generic host does at start (IAsyncStartupValidator, which runs the ValidateOnStart validations), without a host.</summary>
    private static void Start(IServiceProvider provider) =>
        provider.GetRequiredService<IAsyncStartupValidator>().ValidateAsync(CancellationToken.None).GetAwaiter().GetResult();

    private static async Task<SequenceResult> AloneAsync(SyntheticDenoiser denoiser, int[] prompt, DecodeOptions options) =>
        (await new CpuSampler().DecodeAsync(denoiser, [prompt], options)).Sequences[0];

    [Test]
    public async Task AddSaberResolvesOneEngineOverTheRegisteredDenoiserThatDecodesWithTheConfiguredDefaults()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var route = routing.Add(0, 7, 4, 16, 1);
        var services = new ServiceCollection();
        services.AddSingleton<IDenoiser>(routing);
        services.AddSaber(Section(("MaxBatchSize", "4"), ("Decode:GenerationLength", "16"), ("Decode:BlockLength", "8"),
            ("Decode:Strategy:Type", "low-confidence"), ("Decode:Strategy:Steps", "8"), ("Decode:Trace", "true")));
        services.AddSaber();   // a second call adds nothing
        await using ServiceProvider provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        Start(provider);

        var engine = provider.GetRequiredService<SaberEngine>();
        Assert.That(provider.GetRequiredService<SaberEngine>(), Is.SameAs(engine));
        Assert.That(provider.GetServices<SaberEngine>().Count(), Is.EqualTo(1));
        Assert.That(engine.Options.MaxBatchSize, Is.EqualTo(4));
        Assert.That(engine.Options.DisposeDenoiser, Is.False, "the container owns a registered denoiser");
        DecodeOptions defaults = provider.GetRequiredService<DecodeOptions>();
        Assert.That(defaults, Is.EqualTo(new DecodeOptions
        {
            GenerationLength = 16, BlockLength = 8, Strategy = new LowConfidenceStrategy(8), Trace = true,
        }));

        SequenceResult served = await engine.DecodeAsync(route.Prompt, defaults);
        Same.Result(await AloneAsync(route.Denoiser, route.Prompt, defaults), served, "served through DI");
    }

    [Test]
    public async Task EveryKeyBindsFromConfiguration()
    {
        var services = new ServiceCollection();
        services.AddSaber(Section(
            ("Capacity", "17"), ("MaxBatchSize", "5"), ("GroupByCanvasLength", "true"), ("GroupByStep", "true"),
            ("MaxRowsPerForward", "3"), ("MaxDegreeOfParallelism", "2"),
            ("Decode:GenerationLength", "64"), ("Decode:BlockLength", "16"), ("Decode:Temperature", "0.75"),
            ("Decode:Seed", "18446744073709551615"), ("Decode:Trace", "true"),
            ("Decode:Strategy:Type", "saber"), ("Decode:Strategy:Variant", "paper"), ("Decode:Strategy:MinTokensPerStep", "3"),
            ("Decode:Strategy:RemaskDivisor", "4"), ("Decode:Strategy:Backtracking", "false"), ("Decode:Strategy:FixedThreshold", "0.5")),
            _ => new RoutingDenoiser(Vocabulary));
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);

        SaberServiceOptions o = provider.GetRequiredService<IOptions<SaberServiceOptions>>().Value;
        Assert.That(provider.GetRequiredService<SaberEngine>().Options, Is.EqualTo(new SaberEngineOptions
        {
            Capacity = 17, MaxBatchSize = 5, GroupByCanvasLength = true, GroupByStep = true, MaxRowsPerForward = 3,
            MaxDegreeOfParallelism = 2, DisposeDenoiser = true,
        }));
        Assert.That(o.ToEngineOptions(), Is.EqualTo(provider.GetRequiredService<SaberEngine>().Options with { DisposeDenoiser = false }));
        Assert.That(provider.GetRequiredService<DecodeOptions>(), Is.EqualTo(new DecodeOptions
        {
            GenerationLength = 64, BlockLength = 16, Temperature = 0.75f, Seed = ulong.MaxValue, Trace = true,
            Strategy = new SaberStrategy(SaberVariant.Paper, 3, 4, false, 0.5f),
        }));
    }

    [TestCase("low-confidence", "Steps=32", "Metric=negentropy")]
    [TestCase("Low-Confidence", "Steps=64", "Metric=RANDOM")]
    [TestCase("threshold", "Threshold=0.8")]
    [TestCase("threshold")]
    [TestCase("factor", "Factor=2.5")]
    [TestCase("Factor")]
    [TestCase("saber")]
    public void EachStrategyBindsWithItsParameters(string type, params string[] parameters)
    {
        var values = new List<(string, string?)> { ("Decode:GenerationLength", "32"), ("Decode:BlockLength", "16"), ("Decode:Strategy:Type", type) };
        values.AddRange(parameters.Select(p => ("Decode:Strategy:" + p.Split('=')[0], (string?)p.Split('=')[1])));
        using ServiceProvider provider = new ServiceCollection().AddSaber(Section([.. values])).BuildServiceProvider();
        Start(provider);
        DecodingStrategy expected = type.ToLowerInvariant() switch
        {
            "low-confidence" when type == "low-confidence" => new LowConfidenceStrategy(32, ConfidenceMetric.NegEntropy),
            "low-confidence" => new LowConfidenceStrategy(64, ConfidenceMetric.Random),
            "threshold" when parameters.Length > 0 => new ThresholdStrategy(0.8f),
            "threshold" => new ThresholdStrategy(),
            "factor" when parameters.Length > 0 => new FactorStrategy(2.5f),
            "factor" => new FactorStrategy(),
            _ => new SaberStrategy(),
        };
        Assert.That(provider.GetRequiredService<IOptions<SaberServiceOptions>>().Value.Decode.ToDecodeOptions().Strategy, Is.EqualTo(expected));
    }

    /// <summary>The appsettings.json example of the README, verbatim.</summary>
    [Test]
    public async Task TheReadmeExampleBindsAndValidates()
    {
        const string appsettings = """
            {
              "Saber": {
                "Capacity": 256,
                "MaxBatchSize": 32,
                "GroupByCanvasLength": false,
                "GroupByStep": false,
                "MaxRowsPerForward": null,
                "MaxDegreeOfParallelism": -1,
                "Decode": {
                  "GenerationLength": 128,
                  "BlockLength": 32,
                  "Temperature": 0.0,
                  "Seed": 42,
                  "Trace": false,
                  "Strategy": { "Type": "saber", "Variant": "reference", "MinTokensPerStep": 2, "RemaskDivisor": 8 }
                }
              }
            }
            """;
        IConfiguration configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(appsettings))).Build();
        string readme = await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "README.md"));
        Assert.That(Normalize(readme), Does.Contain(Normalize(appsettings)), "the README shows this example");

        var services = new ServiceCollection();
        services.AddSingleton<IDenoiser>(new RoutingDenoiser(Vocabulary));
        services.AddSaber(configuration.GetSection("Saber"));
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);
        Assert.That(provider.GetRequiredService<SaberEngine>().Options, Is.EqualTo(new SaberEngineOptions()));
        Assert.That(provider.GetRequiredService<DecodeOptions>(), Is.EqualTo(new DecodeOptions
        {
            GenerationLength = 128, BlockLength = 32, Seed = 42, Strategy = new SaberStrategy(),
        }));
    }

    private static string Normalize(string text) => string.Join("\n", text.Replace("\r", "").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0));

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")))
                return dir.FullName;
        throw new DirectoryNotFoundException("The repository root (Directory.Packages.props) is not above the test's directory.");
    }

    [TestCase("Capacity", "0", "Saber:Capacity = 0: Capacity must be >= 1; got 0.")]
    [TestCase("MaxBatchSize", "0", "Saber:MaxBatchSize = 0: MaxBatchSize must lie in [1, 65535]; got 0.")]
    [TestCase("MaxRowsPerForward", "0", "Saber:MaxRowsPerForward = 0: MaxRowsPerForward must be >= 1 or null; got 0.")]
    [TestCase("MaxDegreeOfParallelism", "0", "Saber:MaxDegreeOfParallelism = 0: Use -1 (all cores) or a positive thread count.")]
    [TestCase("Decode:GenerationLength", "0", "Saber:Decode:GenerationLength = 0: Generation length G must be > 0; got 0.")]
    [TestCase("Decode:BlockLength", "48", "Saber:Decode:BlockLength = 48: Block length K must be > 0 and divide G=256; got 48.")]
    [TestCase("Decode:Temperature", "-1", "Saber:Decode:Temperature = -1: Temperature T must be finite and >= 0; got -1.")]
    [TestCase("Decode:Strategy:Type", "greedy", "Saber:Decode:Strategy:Type = 'greedy' is not a decoding strategy; expected one of saber, low-confidence, threshold, factor.")]
    [TestCase("Decode:Strategy:Variant", "papr", "Saber:Decode:Strategy:Variant = 'papr' is not a Saber variant; expected one of reference, paper.")]
    [TestCase("Decode:Strategy:MinTokensPerStep", "0", "Saber:Decode:Strategy:MinTokensPerStep = 0: Saber's minimum tokens per step n must be >= 1; got 0.")]
    [TestCase("Decode:Strategy:RemaskDivisor", "0", "Saber:Decode:Strategy:RemaskDivisor = 0: Saber's remask divisor mu must be >= 1; got 0.")]
    [TestCase("Decode:Strategy:FixedThreshold", "1.5", "Saber:Decode:Strategy:FixedThreshold = 1.5: Threshold theta must lie in (0, 1]; got 1.5.")]
    [TestCase("Decode:Strategy:Steps", "16", "Saber:Decode:Strategy:Steps = 16 does not apply to strategy 'saber'.")]
    [TestCase("Decode:Strategy:Threshold", "0.5", "Saber:Decode:Strategy:Threshold = 0.5 does not apply to strategy 'saber'.")]
    [TestCase("Decode:Strategy:Factor", "2", "Saber:Decode:Strategy:Factor = 2 does not apply to strategy 'saber'.")]
    public void AnInvalidValueFailsAtStartNamingItsKeyAndValue(string key, string value, string expected)
    {
        var services = new ServiceCollection();
        services.AddSaber(Section((key, value)), _ => throw new AssertionException("the model must not load when the options are invalid"));
        using ServiceProvider provider = services.BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(provider))!;
        Assert.That(e.Failures, Is.EqualTo(new[] { expected }));
        Assert.That(() => provider.GetRequiredService<SaberEngine>(), Throws.TypeOf<OptionsValidationException>(), "nor at resolution");
    }

    [TestCase("low-confidence", new[] { "Metric=entropy", "Steps=8" }, "Saber:Decode:Strategy:Metric = 'entropy' is not a confidence metric; expected one of maxprob, margin, negentropy, random.")]
    [TestCase("low-confidence", new[] { "Metric=margin" }, "Saber:Decode:Strategy:Steps is required for strategy 'low-confidence'.")]
    [TestCase("low-confidence", new[] { "Steps=12" }, "Saber:Decode:Strategy:Steps = 12: Low-confidence steps S must be a positive multiple of the block count 8 (G=256, K=32); got 12.")]
    [TestCase("low-confidence", new[] { "Steps=8", "Variant=paper" }, "Saber:Decode:Strategy:Variant = 'paper' does not apply to strategy 'low-confidence'.")]
    [TestCase("threshold", new[] { "Threshold=0" }, "Saber:Decode:Strategy:Threshold = 0: Threshold theta must lie in (0, 1]; got 0.")]
    [TestCase("threshold", new[] { "Backtracking=false" }, "Saber:Decode:Strategy:Backtracking = false does not apply to strategy 'threshold'.")]
    [TestCase("threshold", new[] { "Factor=2" }, "Saber:Decode:Strategy:Factor = 2 does not apply to strategy 'threshold'.")]
    [TestCase("factor", new[] { "Factor=0" }, "Saber:Decode:Strategy:Factor = 0: Factor F must be finite and > 0; got 0.")]
    [TestCase("factor", new[] { "Factor=-1" }, "Saber:Decode:Strategy:Factor = -1: Factor F must be finite and > 0; got -1.")]
    [TestCase("factor", new[] { "Threshold=0.5" }, "Saber:Decode:Strategy:Threshold = 0.5 does not apply to strategy 'factor'.")]
    public void AnInvalidStrategyFailsAtStart(string type, string[] parameters, string expected)
    {
        var values = new List<(string, string?)> { ("Decode:BlockLength", "32"), ("Decode:Strategy:Type", type) };
        values.AddRange(parameters.Select(p => ("Decode:Strategy:" + p.Split('=')[0], (string?)p.Split('=')[1])));
        using ServiceProvider provider = new ServiceCollection().AddSaber(Section([.. values])).BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(provider))!;
        Assert.That(e.Failures, Is.EqualTo(new[] { expected }));
    }

    [Test]
    public void EveryBadValueIsReportedAtOnce()
    {
        using ServiceProvider provider = new ServiceCollection()
            .AddSaber(Section(("Capacity", "-3"), ("MaxBatchSize", "70000"), ("Decode:Strategy:Type", "beam")))
            .BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(provider))!;
        Assert.That(e.Failures, Has.Count.EqualTo(3));
        Assert.That(e.Message, Does.Contain("Saber:Capacity = -3").And.Contain("Saber:MaxBatchSize = 70000").And.Contain("'beam'"));
    }

    [Test]
    public void AValueOfTheWrongTypeOrAnUnknownKeyFailsAtStart()
    {
        using ServiceProvider wrongType = new ServiceCollection().AddSaber(Section(("Capacity", "lots"))).BuildServiceProvider();
        Assert.That(() => Start(wrongType),
            Throws.InvalidOperationException.With.Message.Contain("'lots'").And.Message.Contain("Saber:Capacity"));

        using ServiceProvider typo = new ServiceCollection().AddSaber(Section(("Decode:Strategy:Stpes", "8"))).BuildServiceProvider();
        Assert.That(() => Start(typo),
            Throws.InvalidOperationException.With.Message.Contain("'Stpes'"));
    }

    [Test]
    public void WithoutConfigurationTheDefaultsApplyAndCodeCanConfigure()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IDenoiser>(new RoutingDenoiser(Vocabulary));
        services.AddSaber();
        using (ServiceProvider provider = services.BuildServiceProvider())
        {
            Start(provider);
            Assert.That(provider.GetRequiredService<DecodeOptions>(), Is.EqualTo(new DecodeOptions { GenerationLength = 256 }));
        }

        services.Configure<SaberServiceOptions>(o => o.Decode.Strategy = new SaberStrategySettings { Type = "threshold", Steps = 4 });
        using ServiceProvider configured = services.BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(configured))!;
        Assert.That(e.Failures, Is.EqualTo(new[] { "Decode:Strategy:Steps = 4 does not apply to strategy 'threshold'." }), "keys relative to the options");
    }

    [Test]
    public async Task TheEngineIsDisposedWithTheContainerAndAFactoryMadeDenoiserWithIt()
    {
        var made = new DisposableDenoiser(new HangingDenoiser(Vocabulary));
        var registered = new DisposableDenoiser(new HangingDenoiser(Vocabulary));
        var options = new DecodeOptions { GenerationLength = 8 };

        var owning = new ServiceCollection().AddSaber(_ => made).BuildServiceProvider();
        var borrowing = new ServiceCollection().AddSingleton<IDenoiser>(registered).AddSaber().BuildServiceProvider();
        foreach ((ServiceProvider provider, DisposableDenoiser denoiser) in new[] { (owning, made), (borrowing, registered) })
        {
            var engine = provider.GetRequiredService<SaberEngine>();
            Task<SequenceResult> running = engine.DecodeAsync(new[] { 1, 2 }, options);
            await ((HangingDenoiser)denoiser.Inner).Entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
            await provider.DisposeAsync();
            Assert.That(running.IsCanceled, "the request in flight is cancelled when the container is disposed");
            Assert.That(async () => await engine.DecodeAsync(new[] { 1 }, options), Throws.TypeOf<ObjectDisposedException>());
        }
        Assert.That(made.Disposed, Is.True, "the engine owns what the factory made");
        Assert.That(registered.Disposed, Is.False, "a registered instance belongs to the caller");
    }

    /// <summary>The README's registration: the shipped model loaded by the factory, the options from configuration.</summary>
    [Test]
    public async Task AnOnnxModelFromTheFactoryServesTheConfiguredDefaults()
    {
        string directory = Path.Combine(AppContext.BaseDirectory, "models", "tiny");
        var tokenizer = Saber.Onnx.CharacterTokenizer.Load(Path.Combine(directory, "tokenizer.json"));
        var onnx = new Saber.Onnx.OnnxEngineOptions { IntraOpThreads = 1 };
        Saber.Onnx.OnnxDenoiser? loaded = null;
        var services = new ServiceCollection();
        services.AddSaber(Section(("MaxBatchSize", "4"), ("Decode:GenerationLength", "16"), ("Decode:BlockLength", "8"),
                ("Decode:Strategy:Type", "threshold"), ("Decode:Strategy:Threshold", "0.7"), ("Decode:Temperature", "0.9"), ("Decode:Seed", "5")),
            _ => loaded = Saber.Onnx.OnnxDenoiser.Load(Path.Combine(directory, "model.onnx"), onnx));
        int[][] prompts = [tokenizer.Encode("def main():\n"), tokenizer.Encode("x = "), tokenizer.Encode("return ")];
        SequenceResult[] served;
        DecodeOptions defaults;
        await using (ServiceProvider provider = services.BuildServiceProvider())
        {
            Start(provider);
            Assert.That(loaded, Is.Null, "the model loads at the engine's first resolution");
            var engine = provider.GetRequiredService<SaberEngine>();
            defaults = provider.GetRequiredService<DecodeOptions>();
            served = await Task.WhenAll(prompts.Select(p => engine.DecodeAsync(p, defaults)));
        }
        Assert.That(() => loaded!.ForwardAsync(new DenoiseRequest(1, [0], [prompts[0]]), CancellationToken.None),
            Throws.TypeOf<ObjectDisposedException>(), "disposed with the engine");
        using var alone = Saber.Onnx.OnnxDenoiser.Load(Path.Combine(directory, "model.onnx"), onnx);
        for (int i = 0; i < prompts.Length; i++)
            Same.Result((await new CpuSampler().DecodeAsync(alone, [prompts[i]], defaults)).Sequences[0], served[i], $"prompt {i}");
    }

    private sealed class DisposableDenoiser(IDenoiser inner) : IDenoiser, IDisposable
    {
        public IDenoiser Inner => inner;
        public bool Disposed { get; private set; }
        public int VocabularySize => inner.VocabularySize;
        public int MaskId => inner.MaskId;
        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken) =>
            inner.ForwardAsync(request, cancellationToken);
        public void Dispose() => Disposed = true;
    }
}
