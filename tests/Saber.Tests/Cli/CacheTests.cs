using System.Text.Json;
using Saber.Cli;
using Saber.Onnx;
using Saber.Testing;

namespace Saber.Tests.Cli;

/// <summary>
/// The cache options of <c>saber generate</c>, <c>compare</c> and <c>eval</c>: parsing and usage errors, a model without a
/// cache graph refused in one line, the uncached output unchanged but for its new null fields, and the figures of a cached
/// decode (on the shipped models' cache graphs, and through a caching test double whose FLOPs are fixed figures).
/// </summary>
public class CacheTests
{
    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [TestCase(new[] { "generate", "--cache", "fast", "x" }, "saber generate: --cache expects one of none, prefix, dual; got 'fast'.")]
    [TestCase(new[] { "generate", "--cache-refresh-every", "4", "x" }, "saber generate: --cache-refresh-every does not apply to --cache none.")]
    [TestCase(new[] { "generate", "--cache", "none", "--cache-on-remask", "block", "x" }, "saber generate: --cache-on-remask does not apply to --cache none.")]
    [TestCase(new[] { "generate", "--cache", "dual", "--cache-refresh-every", "0", "x" }, "saber generate: --cache-refresh-every must be >= 1; got 0.")]
    [TestCase(new[] { "generate", "--cache", "dual", "--cache-refresh-every", "often", "x" }, "saber generate: --cache-refresh-every expects an integer; got 'often'.")]
    [TestCase(new[] { "generate", "--cache", "prefix", "--cache-on-remask", "all", "x" }, "saber generate: --cache-on-remask expects one of positions, block; got 'all'.")]
    [TestCase(new[] { "generate", "--max-cache-bytes", "-1", "x" }, "saber generate: --max-cache-bytes must be >= 0; got -1.")]
    [TestCase(new[] { "generate", "--max-cache-bytes", "4GiB", "x" }, "saber generate: --max-cache-bytes expects an integer in [-9223372036854775808, 9223372036854775807]; got '4GiB'.")]
    [TestCase(new[] { "compare", "--cache", "Dual" }, "saber compare: --cache expects one of none, prefix, dual; got 'Dual'.")]
    [TestCase(new[] { "eval", "--cache", "full" }, "saber eval: --cache expects one of none, prefix, dual; got 'full'.")]
    [TestCase(new[] { "eval", "--cache-on-remask", "block" }, "saber eval: --cache-on-remask does not apply to --cache none.")]
    public async Task BadCacheOptionsAreUsageErrorsNamingTheFlagAndValue(string[] args, string message)
    {
        var (code, stdout, stderr) = await Run(args);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Split('\n')[0].TrimEnd('\r'), Is.EqualTo(message));
    }

    [TestCase("generate", "dual", "x")]
    [TestCase("generate", "prefix", "x")]
    [TestCase("compare", "dual")]
    [TestCase("eval", "dual", "--limit", "2")]
    public async Task AModelWithoutACacheGraphIsRefusedInOneLineBeforeAnythingIsDecoded(string command, string policy, params string[] rest)
    {
        string plain = ShippedModels.WithoutCacheGraph(ModelArguments.ShippedModel(command == "eval" ? "addition" : "tiny"));
        var (code, stdout, stderr) = await Run([command, "--model", plain, "--cache", policy, .. rest]);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty, "nothing is decoded or printed first");
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith($"saber {command}: Cache policy '{policy}' needs a model with a cache graph: "));
        Assert.That(lines[0], Does.EndWith("Use cache policy 'none' (docs/caching.md)."));
        Assert.That(lines[0], Does.Not.Contain("internal error"));
    }

    [Test]
    public async Task GenerateJsonWithoutACacheHoldsTheLibrarysDecodeAndNullCacheAndTheModelsFlops()
    {
        string[] prompts = ["def f(x):\n", "y = "];
        var (code, stdout, stderr) = await Run("generate", "--json", "--no-progress", "--gen-length", "16", "--block-length", "8", "--cache", "none", prompts[0], prompts[1]);
        Assert.That(code, Is.Zero, stderr);

        using LocalModel model = LocalModel.Open(ModelArguments.ShippedModel());
        var options = new DecodeOptions { GenerationLength = 16, BlockLength = 8, Strategy = new SaberStrategy() };
        DecodeResult expected = await new CpuSampler().DecodeAsync(model.Denoiser,
            prompts.Select(p => (ReadOnlyMemory<int>)model.Tokenizer.Encode(p)).ToArray(), options);

        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2));
        for (int b = 0; b < 2; b++)
        {
            JsonElement root = JsonDocument.Parse(lines[b]).RootElement;
            Assert.That(root.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
                { "prompt_ids", "ids", "text", "nfe", "cache", "forward_flops", "remasks", "remasks_changed", "positions_remasked_twice" }));
            RemaskStatistics remasks = expected.Sequences[b].RemaskStatistics!;
            Assert.That(root.GetProperty("remasks").GetInt32(), Is.EqualTo(remasks.Remasks));
            Assert.That(root.GetProperty("remasks_changed").GetInt32(), Is.EqualTo(remasks.RemasksChanged));
            Assert.That(root.GetProperty("positions_remasked_twice").GetInt32(), Is.EqualTo(remasks.PositionsRemaskedTwice));
            Assert.That(root.GetProperty("ids").EnumerateArray().Select(t => t.GetInt32()), Is.EqualTo(expected.Sequences[b].Tokens.ToArray()));
            Assert.That(root.GetProperty("nfe").GetInt32(), Is.EqualTo(expected.Sequences[b].Nfe));
            Assert.That(root.GetProperty("cache").ValueKind, Is.EqualTo(JsonValueKind.Null));
            // Uncached, every call runs the whole canvas: NFE times the model card's FLOPs of one pass.
            Assert.That(root.GetProperty("forward_flops").GetInt64(),
                Is.EqualTo(expected.Sequences[b].Nfe * ShippedModels.PlainPassFlops(expected.Sequences[b].Canvas.Length)));
        }
        string summary = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        Assert.That(summary, Does.StartWith($"saber (reference): NFE {expected.Sequences[0].Nfe}, {expected.Sequences[1].Nfe}, cache none, forward FLOPs "));
    }

    [Test]
    public async Task GenerateProgressStillShowsEveryStepAndEndsFullyDecoded()
    {
        var (code, _, stderr) = await Run("generate", "--gen-length", "16", "--strategy", "low-confidence", "--steps", "16", "def f(x):");
        Assert.That(code, Is.Zero, stderr);
        string[] steps = stderr.Split('\n').Where(l => l.StartsWith("step", StringComparison.Ordinal)).ToArray();
        // Low-confidence with S = G commits one position a step: 16 steps, 15 down to 0 masked.
        Assert.That(steps, Has.Length.EqualTo(16));
        for (int s = 0; s < 16; s++)
            Assert.That(steps[s], Is.EqualTo($"step {s + 1,4}: {15 - s,5} of 16 positions masked"));
    }

    [Test]
    public async Task GenerateJsonOfACachedDecodeNamesThePolicyTheFlopsAndTheStatistics()
    {
        const int V = 11, Mask = 10, G = 16;
        var denoiser = new WindowedDenoiser(new RandomDenoiser(3, V, Mask));
        int[] prompt = [1, 2, 3];
        var options = new DecodeOptions { GenerationLength = G, BlockLength = 4, Strategy = new SaberStrategy(), Cache = new CacheOptions(CachePolicy.Dual) };
        SequenceResult result = (await new CpuSampler().DecodeAsync(denoiser, [prompt], options)).Sequences[0];
        Assert.That(denoiser.WindowedCalls, Is.GreaterThan(0), "test set-up: the decode should run cache windows");

        JsonElement root = JsonDocument.Parse(GenerateCommand.ResultJson(prompt, result, "text")).RootElement;
        Assert.That(root.EnumerateObject().Select(p => p.Name),
            Is.EqualTo(new[] { "prompt_ids", "ids", "text", "nfe", "cache", "forward_flops", "remasks", "remasks_changed", "positions_remasked_twice", "cache_statistics" }));
        Assert.That(root.GetProperty("cache").GetString(), Is.EqualTo("dual"));
        JsonElement statistics = root.GetProperty("cache_statistics");
        long computed = statistics.GetProperty("computed_positions").GetInt64();
        long canvas = statistics.GetProperty("canvas_positions").GetInt64();
        Assert.That(statistics.GetProperty("passes").GetInt32(), Is.EqualTo(root.GetProperty("nfe").GetInt32()));
        Assert.That(canvas, Is.EqualTo((long)result.Nfe * (prompt.Length + G)), "every call's canvas counted");
        Assert.That(computed, Is.LessThan(canvas), "the dual cache computed fewer positions than the canvases hold");
        Assert.That(statistics.GetProperty("full_passes").GetInt32(), Is.InRange(1, result.Nfe));
        Assert.That(statistics.GetProperty("refresh_flops").GetInt64(),
            Is.EqualTo(statistics.GetProperty("refreshed_positions").GetInt64() * (WindowedDenoiser.FlopsPerQuery + WindowedDenoiser.FlopsPerLogitsRow)),
            "each refreshed position is a query with its logits row");
        // The double's FLOPs: a fixed amount per computed position, and per head row (at most one per computed position).
        long flops = root.GetProperty("forward_flops").GetInt64();
        Assert.That(flops, Is.InRange(computed * WindowedDenoiser.FlopsPerQuery, computed * (WindowedDenoiser.FlopsPerQuery + WindowedDenoiser.FlopsPerLogitsRow)));
    }

    [Test]
    public async Task EvaluationWithACacheDecodesEveryProblemWithItAndReportsThePolicyAndFlops()
    {
        using LocalModel model = LocalModel.Open(ModelArguments.ShippedModel("addition"));
        List<EvalProblem> problems = TaskFile.Read(Path.Combine(ModelArguments.ShippedModel("addition"), "test.jsonl")).Problems[..6];
        var denoiser = new WindowedDenoiser(model.Denoiser);
        var options = new DecodeOptions { GenerationLength = 16, Strategy = new SaberStrategy(), Cache = new CacheOptions(CachePolicy.Dual, RefreshEvery: 4) };

        EvalRow row = await Evaluation.RunAsync(denoiser, model.Tokenizer, problems, "saber reference", options, batch: 4, progress: null, CancellationToken.None);

        // Each problem decoded alone by the CPU sampler with the same cache and seed: the engine's figures do not depend on the batch.
        long total = 0;
        int correct = 0;
        for (int i = 0; i < problems.Count; i++)
        {
            SequenceResult alone = (await new CpuSampler().DecodeAsync(new WindowedDenoiser(model.Denoiser), [model.Tokenizer.Encode(problems[i].Prompt)],
                options with { Seed = (ulong)i })).Sequences[0];
            Assert.That(alone.Cache?.Policy, Is.EqualTo(CachePolicy.Dual));
            total += alone.ForwardFlops!.Value;
            if (model.Tokenizer.Decode(alone.Tokens) == problems[i].Answer) correct++;
        }
        Assert.That(row.Cache, Is.EqualTo("dual"));
        Assert.That(row.TotalForwardFlops, Is.EqualTo(total));
        Assert.That(row.MeanForwardFlops, Is.EqualTo((double)total / problems.Count));
        Assert.That(row.Correct, Is.EqualTo(correct));
        Assert.That(denoiser.WindowedCalls, Is.GreaterThan(0));
        Assert.That(denoiser.LiveCaches, Is.Zero, "every cache is released when its problem finishes");
    }

    [Test]
    public async Task EvalJsonAndMarkdownReportTheCacheAndUnknownFlops()
    {
        string set = Path.Combine(Path.GetTempPath(), $"saber-cache-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(set, "{\"prompt\": \"12345678+11111111=\", \"answer\": \"23456789\"}\n");
        try
        {
            string plain = ShippedModels.WithoutCacheGraph(ModelArguments.ShippedModel("addition"));   // no cache graph: FLOPs unknown
            var (code, stdout, stderr) = await Run("eval", "--model", plain, "--set", set, "--json", "--no-progress", "--cache", "none");
            Assert.That(code, Is.Zero, stderr);
            JsonElement root = JsonDocument.Parse(stdout).RootElement;
            Assert.That(root.GetProperty("cache").GetString(), Is.EqualTo("none"));
            foreach (JsonElement row in root.GetProperty("rows").EnumerateArray())
            {
                Assert.That(row.GetProperty("cache").GetString(), Is.EqualTo("none"));
                Assert.That(row.GetProperty("mean_forward_flops").ValueKind, Is.EqualTo(JsonValueKind.Null));
                Assert.That(row.GetProperty("forward_flops").ValueKind, Is.EqualTo(JsonValueKind.Null));
            }

            var markdown = await Run("eval", "--model", plain, "--set", set, "--no-progress");
            Assert.That(markdown.Code, Is.Zero, markdown.Err);
            string[] lines = markdown.Out.Split('\n');
            Assert.That(lines[0], Does.Contain(", cache none, batch 64,"));
            Assert.That(lines.Where(l => l.StartsWith("| low-confidence S=G |", StringComparison.Ordinal)).Single(),
                Does.Match(@"^\| low-confidence S=G \| [^|]+ \| 16\.00 \| 16 \| 1\.00x \| none \| - \| - \| \d+ \| \d+ \| 0 \| 0 \| 0 \|$"));
        }
        finally
        {
            File.Delete(set);
        }
    }

    [Test]
    public void MarkdownShowsTheFlopsOfARowThatHasThem()
    {
        var stdout = new StringWriter();
        EvalCommand.WriteMarkdown(stdout, "m", "set.jsonl", 2, 16, 16, 0f, 0, 64,
            [new EvalRow("saber", "reference", "saber reference", 2, 1, 5, 6, 12.4, 100, "dual", 15_000, 30_000, Remasks: 40, RemasksChanged: 1, PositionsRemaskedTwice: 3)],
            new CacheOptions(CachePolicy.Dual, 8, RemaskRefresh.Block));
        string[] lines = stdout.ToString().Split('\n');
        Assert.That(lines[0], Does.Contain(", cache dual (refresh every 8), re-masks refresh their block, batch 64,"));
        Assert.That(lines[4].TrimEnd('\r'), Is.EqualTo("| saber reference | 0.500 (1/2) | 5.00 | 6 | 1.00x | dual | 1.50e4 | 3.00e4 | 12 | 100 | 40 | 1 (2.5%) | 3 |"));
    }

    [Test]
    public async Task CompareNamesTheCacheAndShowsUnknownFlops()
    {
        string plain = ShippedModels.WithoutCacheGraph(ModelArguments.ShippedModel());   // no cache graph: FLOPs unknown
        var (code, stdout, stderr) = await Run("compare", "--model", plain, "--gen-length", "16", "--block-length", "8", "--cache", "none", "def f(x):\n");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.StartWith("1 prompt(s), G = 16, K = 8, cache none, "));
        string[] rows = stdout.Split('\n').Where(l => l.StartsWith("saber (reference)", StringComparison.Ordinal)).ToArray();
        Assert.That(rows, Has.Length.EqualTo(1));
        Assert.That(rows[0].TrimEnd(), Does.Match(@"^saber \(reference\)\s+\d+\.\d\s+\d+\s+\d+\s+-\s+-$"));
    }

    [Test]
    public async Task GenerateWithTheShippedCacheGraphReportsADualCachesFiguresFromOutside()
    {
        // The issue's check from outside: the same prompt with --cache dual against --cache none at G = 256, K = 32.
        string[] common = ["generate", "--model", ModelArguments.ShippedModel(), "--gen-length", "256", "--block-length", "32", "--json", "--no-progress", "def f(x):\n"];
        var none = await Run([.. common, "--cache", "none"]);
        var dual = await Run([.. common, "--cache", "dual"]);
        Assert.That(none.Code, Is.Zero, none.Err);
        Assert.That(dual.Code, Is.Zero, dual.Err);
        JsonElement exact = JsonDocument.Parse(none.Out).RootElement, cached = JsonDocument.Parse(dual.Out).RootElement;
        int n = 10 + 256;
        Assert.That(exact.GetProperty("forward_flops").GetInt64(), Is.EqualTo(exact.GetProperty("nfe").GetInt32() * ShippedModels.PlainPassFlops(n)));
        Assert.That(cached.GetProperty("cache").GetString(), Is.EqualTo("dual"));
        JsonElement statistics = cached.GetProperty("cache_statistics");
        int nfe = cached.GetProperty("nfe").GetInt32();
        Assert.That(statistics.GetProperty("passes").GetInt32(), Is.EqualTo(nfe));
        Assert.That(statistics.GetProperty("full_passes").GetInt32(), Is.InRange(8, nfe), "at least one full pass a block (8 blocks)");
        Assert.That(statistics.GetProperty("canvas_positions").GetInt64(), Is.EqualTo((long)nfe * n));
        double perStepRatio = exact.GetProperty("forward_flops").GetInt64() / (double)exact.GetProperty("nfe").GetInt32()
            / (cached.GetProperty("forward_flops").GetInt64() / (double)nfe);
        TestContext.Out.WriteLine($"NFE none {exact.GetProperty("nfe")}, dual {nfe}; forward FLOPs per step none/dual = {perStepRatio:F2}");
        Assert.That(perStepRatio, Is.GreaterThan(3), "the dual cache's forward FLOPs per step at G = 256, K = 32");
    }
}
