using System.Globalization;
using System.Text.Json;
using Saber.Cli;
using Saber.Onnx;

namespace Saber.Tests.Cli;

/// <summary>
/// <c>saber eval</c>'s re-mask figures on the shipped code model: per row the totals over the set, against the same problems
/// decoded one by one through the library; zero for the strategies that never re-mask.
/// </summary>
public class EvalRemaskTests
{
    private string directory = "";

    [SetUp]
    public void CreateDirectory() => directory = Directory.CreateTempSubdirectory("saber-eval-remasks-").FullName;

    [TearDown]
    public void Delete() => Directory.Delete(directory, recursive: true);

    private static readonly string[] Prompts = ["def f(x):\n", "import os\n", "class A:\n"];

    private string WriteSet()
    {
        string path = Path.Combine(directory, "set.jsonl");
        File.WriteAllLines(path, Prompts.Select(p => JsonSerializer.Serialize(new { prompt = p, answer = "?" })));
        return path;
    }

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>The problems decoded one by one with <paramref name="strategy"/> (G = 16, greedy), their statistics summed.</summary>
    private static async Task<(long Remasks, long Changed, long Twice)> Library(DecodingStrategy strategy)
    {
        using LocalModel model = LocalModel.Open(ModelArguments.ShippedModel());
        long remasks = 0, changed = 0, twice = 0;
        foreach (string prompt in Prompts)
        {
            var options = new DecodeOptions { GenerationLength = 16, Strategy = strategy };
            RemaskStatistics s = (await new CpuSampler().DecodeAsync(model.Denoiser, [model.Tokenizer.Encode(prompt)], options)).Sequences[0].RemaskStatistics!;
            remasks += s.Remasks;
            changed += s.RemasksChanged;
            twice += s.PositionsRemaskedTwice;
        }
        return (remasks, changed, twice);
    }

    [Test]
    public async Task JsonRowsHoldTheReMaskTotalsOfTheSet()
    {
        var (code, stdout, stderr) = await Run("eval", "--model", ModelArguments.ShippedModel(), "--set", WriteSet(), "--gen-length", "16", "--json",
            "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        JsonElement[] rows = JsonDocument.Parse(stdout).RootElement.GetProperty("rows").EnumerateArray().ToArray();
        foreach (JsonElement row in rows)
        {
            string label = row.GetProperty("label").GetString()!;
            long remasks = row.GetProperty("remasks").GetInt64(), changed = row.GetProperty("remasks_changed").GetInt64();
            Assert.That(row.GetProperty("positions_remasked_twice").GetInt64(), Is.InRange(0, remasks), label);
            JsonElement share = row.GetProperty("remasks_changed_share");
            if (remasks == 0) Assert.That(share.ValueKind, Is.EqualTo(JsonValueKind.Null), label);
            else Assert.That(share.GetDouble(), Is.EqualTo((double)changed / remasks).Within(1e-12), label);
            if (!label.StartsWith("saber reference", StringComparison.Ordinal) && !label.StartsWith("saber paper", StringComparison.Ordinal) &&
                !label.StartsWith("saber fixed-threshold", StringComparison.Ordinal))
                Assert.That(remasks, Is.Zero, $"{label} never re-masks");
        }

        foreach (var (label, strategy) in new (string, DecodingStrategy)[] { ("saber reference", new SaberStrategy()), ("saber paper", new SaberStrategy(Variant: SaberVariant.Paper)) })
        {
            JsonElement row = rows.Single(r => r.GetProperty("label").GetString() == label);
            var expected = await Library(strategy);
            Assert.That((row.GetProperty("remasks").GetInt64(), row.GetProperty("remasks_changed").GetInt64(), row.GetProperty("positions_remasked_twice").GetInt64()),
                Is.EqualTo(expected), label);
            Assert.That(expected.Remasks, Is.GreaterThan(0), $"test set-up: {label} re-masks on these prompts");
        }
    }

    [Test]
    public async Task MarkdownRowsEndWithTheReMaskColumns()
    {
        var (code, stdout, stderr) = await Run("eval", "--model", ModelArguments.ShippedModel(), "--set", WriteSet(), "--gen-length", "16", "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        string[] lines = stdout.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.That(lines.Single(l => l.StartsWith("| strategy", StringComparison.Ordinal)), Does.EndWith("| re-masks | changed | re-masked twice |"));
        Assert.That(lines.Single(l => l.StartsWith("| low-confidence S=G |", StringComparison.Ordinal)), Does.EndWith("| 0 | 0 | 0 |"));

        var (remasks, changed, twice) = await Library(new SaberStrategy());
        string share = (100.0 * changed / remasks).ToString("F1", CultureInfo.InvariantCulture);
        Assert.That(lines.Single(l => l.StartsWith("| saber reference |", StringComparison.Ordinal)), Does.EndWith($"| {remasks} | {changed} ({share}%) | {twice} |"));
    }
}
