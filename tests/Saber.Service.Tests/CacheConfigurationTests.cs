using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Saber.Testing;

namespace Saber.Service.Tests;

/// <summary>
/// <c>Saber:Decode:Cache</c>: binding, startup validation naming the key and value, and the configured cache reaching the
/// engine's decodes (a caching test double, whose FLOPs are fixed figures).
/// </summary>
public class CacheConfigurationTests
{
    private const int Vocabulary = 32;

    private static IConfigurationSection Section(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>("Saber:" + v.Key, v.Value)))
            .Build()
            .GetSection(SaberServiceOptions.SectionName);

    private static void Start(IServiceProvider provider) =>
        provider.GetRequiredService<IAsyncStartupValidator>().ValidateAsync(CancellationToken.None).GetAwaiter().GetResult();

    [TestCase("dual", "8", "block", CachePolicy.Dual, 8, RemaskRefresh.Block)]
    [TestCase("Prefix", null, null, CachePolicy.Prefix, null, RemaskRefresh.Positions)]
    [TestCase("none", null, null, CachePolicy.None, null, RemaskRefresh.Positions)]
    public async Task TheCacheBindsIntoTheDefaultDecodeOptions(string policy, string? refreshEvery, string? onRemask,
        CachePolicy expectedPolicy, int? expectedR, RemaskRefresh expectedRule)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IDenoiser>(new RoutingDenoiser(Vocabulary));
        services.AddSaber(Section(("Decode:GenerationLength", "16"), ("Decode:Cache:Policy", policy), ("Decode:Cache:RefreshEvery", refreshEvery),
            ("Decode:Cache:OnRemask", onRemask)));
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);
        Assert.That(provider.GetRequiredService<DecodeOptions>().Cache, Is.EqualTo(new CacheOptions(expectedPolicy, expectedR, expectedRule)));
    }

    [Test]
    public async Task WithoutACacheSectionTheDecodeIsUncached()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IDenoiser>(new RoutingDenoiser(Vocabulary));
        services.AddSaber(Section(("Decode:GenerationLength", "16")));
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);
        Assert.That(provider.GetRequiredService<DecodeOptions>().Cache, Is.EqualTo(CacheOptions.None));
    }

    [TestCase(new[] { "Decode:Cache:Policy=fast" }, "Saber:Decode:Cache:Policy = 'fast' is not a cache policy; expected one of none, prefix, dual.")]
    [TestCase(new[] { "Decode:Cache:Policy=dual", "Decode:Cache:OnRemask=all" }, "Saber:Decode:Cache:OnRemask = 'all' is not a re-mask rule; expected one of positions, block.")]
    [TestCase(new[] { "Decode:Cache:Policy=dual", "Decode:Cache:RefreshEvery=0" }, "Saber:Decode:Cache:RefreshEvery = 0: The cache's refresh interval R must be >= 1 call; got 0.")]
    [TestCase(new[] { "Decode:Cache:RefreshEvery=4" }, "Saber:Decode:Cache:RefreshEvery = 4 does not apply to cache policy 'none'.")]
    [TestCase(new[] { "Decode:Cache:Policy=none", "Decode:Cache:OnRemask=block" }, "Saber:Decode:Cache:OnRemask = 'block' does not apply to cache policy 'none'.")]
    public void AnInvalidCacheFailsAtStartNamingItsKeyAndValue(string[] settings, string expected)
    {
        var services = new ServiceCollection();
        services.AddSaber(Section([.. settings.Select(s => (s.Split('=')[0], (string?)s.Split('=')[1]))]),
            _ => throw new AssertionException("the model must not load when the options are invalid"));
        using ServiceProvider provider = services.BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(provider))!;
        Assert.That(e.Failures, Is.EqualTo(new[] { expected }));
    }

    [Test]
    public void ABadStrategyAndABadCacheAreBothReportedEachUnderItsSection()
    {
        using ServiceProvider provider = new ServiceCollection()
            .AddSaber(Section(("Decode:Strategy:Type", "beam"), ("Decode:Cache:Policy", "full")))
            .BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => Start(provider))!;
        Assert.That(e.Failures, Is.EqualTo(new[]
        {
            "Saber:Decode:Strategy:Type = 'beam' is not a decoding strategy; expected one of saber, low-confidence, threshold, factor.",
            "Saber:Decode:Cache:Policy = 'full' is not a cache policy; expected one of none, prefix, dual.",
        }));
    }

    [Test]
    public async Task TheConfiguredCacheRunsInTheEnginesDecodes()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var route = routing.Add(0, 7, 4, 16, 1);
        var caching = new WindowedDenoiser(routing);
        var services = new ServiceCollection();
        services.AddSaber(Section(("Decode:GenerationLength", "16"), ("Decode:BlockLength", "4"), ("Decode:Cache:Policy", "dual"),
            ("Decode:Cache:RefreshEvery", "3")), _ => caching);
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);

        SequenceResult served = await provider.GetRequiredService<SaberEngine>().DecodeAsync(route.Prompt, provider.GetRequiredService<DecodeOptions>());
        Assert.That(served.Cache, Is.Not.Null);
        Assert.That(served.Cache!.Policy, Is.EqualTo(CachePolicy.Dual));
        Assert.That(served.Cache.Passes, Is.EqualTo(served.Nfe));
        Assert.That(served.Cache.ComputedPositions, Is.LessThan(served.Cache.CanvasPositions), "windows computed fewer positions than whole canvases");
        Assert.That(served.ForwardFlops, Is.GreaterThanOrEqualTo(served.Cache.ComputedPositions * WindowedDenoiser.FlopsPerQuery));
        Assert.That(caching.WindowedCalls, Is.GreaterThan(0));
        Assert.That(caching.LiveCaches, Is.Zero, "the finished request's cache is released");
    }

    [Test]
    public async Task AnUncachedConfigurationDecodesAsBeforeWithoutStatistics()
    {
        var routing = new RoutingDenoiser(Vocabulary);
        var route = routing.Add(0, 7, 4, 16, 1);
        var caching = new WindowedDenoiser(routing);
        var services = new ServiceCollection();
        services.AddSaber(Section(("Decode:GenerationLength", "16"), ("Decode:BlockLength", "4")), _ => caching);
        await using ServiceProvider provider = services.BuildServiceProvider();
        Start(provider);

        DecodeOptions defaults = provider.GetRequiredService<DecodeOptions>();
        SequenceResult served = await provider.GetRequiredService<SaberEngine>().DecodeAsync(route.Prompt, defaults);
        SequenceResult alone = (await new CpuSampler().DecodeAsync(route.Denoiser, [route.Prompt], defaults)).Sequences[0];
        Same.Result(alone, served, "uncached, through the configured engine");
        Assert.That(served.Cache, Is.Null);
        Assert.That(caching.WindowedCalls, Is.Zero);
    }
}
