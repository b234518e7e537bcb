using System.Text.RegularExpressions;
using System.Text.Json;
using Saber.Cli;
using Saber.Onnx;

namespace Saber.Tests.Cli;

/// <summary>
/// <c>saber eval</c> on the shipped code model with problem sets made here: the scoring (against decodes made through
/// the library, not the command), the JSON and Markdown shapes, --limit, determinism and usage errors.
/// </summary>
public class EvalTests
{
    private string directory = "";

    [SetUp]
    public void CreateDirectory() => directory = Directory.CreateTempSubdirectory("saber-eval-").FullName;

    [TearDown]
    public void Delete() => Directory.Delete(directory, recursive: true);

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string WriteSet(params (string Prompt, string Answer)[] problems)
    {
        string path = Path.Combine(directory, "set.jsonl");
        File.WriteAllLines(path, problems.Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, answer = p.Answer })));
        return path;
    }

    /// <summary>The text the library decodes for a prompt (up to the first end-of-text), G = 8.</summary>
    private static async Task<string> DecodeAsync(string prompt, DecodingStrategy strategy)
    {
        using LocalModel model = LocalModel.Open(ModelArguments.ShippedModel());
        var options = new DecodeOptions { GenerationLength = 8, Strategy = strategy };
        DecodeResult result = await new CpuSampler().DecodeAsync(model.Denoiser, [model.Tokenizer.Encode(prompt)], options);
        return model.Tokenizer.Decode(result.Sequences[0].Tokens);
    }

    [Test]
    public async Task EachRowCountsTheProblemsWhoseDecodedTextIsTheAnswer()
    {
        // Problem 1's answer is what low-confidence S=G decodes; problem 2's can never be decoded (not a text of 8 positions).
        string lowConfidence = await DecodeAsync("def f(x):\n", new LowConfidenceStrategy(8));
        string saber = await DecodeAsync("def f(x):\n", new SaberStrategy());
        string set = WriteSet(("def f(x):\n", lowConfidence), ("import os\n", "far longer than eight positions"));

        var (code, stdout, stderr) = await Run("eval", "--model", ModelArguments.ShippedModel(), "--set", set, "--gen-length", "8", "--json", "--batch", "1");
        Assert.That(code, Is.Zero, stderr);
        JsonElement root = JsonDocument.Parse(stdout).RootElement;
        Assert.That(root.GetProperty("model").GetString(), Is.EqualTo("tiny"));
        Assert.That(root.GetProperty("problems").GetInt32(), Is.EqualTo(2));
        JsonElement[] rows = root.GetProperty("rows").EnumerateArray().ToArray();
        Assert.That(rows.Select(r => r.GetProperty("label").GetString()), Is.EqualTo(new[]
        {
            "low-confidence S=G", "low-confidence S=G/2", "threshold 0.9", "factor 1.0", "saber reference", "saber paper", "saber no-backtracking",
            "saber fixed-threshold 0.9",
        }));
        Assert.That(rows.Select(r => r.GetProperty("strategy").GetString()), Is.EqualTo(new[]
            { "low-confidence", "low-confidence", "threshold", "factor", "saber", "saber", "saber", "saber" }));
        Assert.That(rows[4].GetProperty("variant").GetString(), Is.EqualTo("reference"));
        Assert.That(rows[5].GetProperty("variant").GetString(), Is.EqualTo("paper"));
        Assert.That(rows[0].GetProperty("variant").ValueKind, Is.EqualTo(JsonValueKind.Null));

        Assert.That(rows[0].GetProperty("accuracy").GetDouble(), Is.EqualTo(0.5), "problem 1 right, problem 2 wrong");
        Assert.That(rows[4].GetProperty("accuracy").GetDouble(), Is.EqualTo(saber == lowConfidence ? 0.5 : 0.0));
        Assert.That(rows[0].GetProperty("mean_nfe").GetDouble(), Is.EqualTo(8.0), "S = G: one position per call");
        Assert.That(rows[0].GetProperty("max_nfe").GetInt32(), Is.EqualTo(8));
        Assert.That(rows[1].GetProperty("mean_nfe").GetDouble(), Is.EqualTo(4.0), "S = G/2");
        foreach (JsonElement row in rows)
        {
            Assert.That(row.GetProperty("mean_nfe").GetDouble(), Is.InRange(1.0, 8.0));
            Assert.That(row.GetProperty("wall_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(row.GetProperty("tokens_per_s").GetDouble(), Is.GreaterThan(0));
        }
        Assert.That(stderr, Does.Contain("[8/8] saber fixed-threshold 0.9"), "progress on stderr, one line per row when redirected");
    }

    [Test]
    public async Task TheTableIsDeterministicAndIndependentOfTheBatchAndLimitTakesTheFirstProblems()
    {
        string set = WriteSet(("def f(x):\n", "a"), ("import os\n", "b"), ("class A:\n", "c"), ("x = [", "d"));
        static string Figures(string json) => string.Join(";", JsonDocument.Parse(json).RootElement.GetProperty("rows").EnumerateArray()
            .Select(r => $"{r.GetProperty("accuracy").GetDouble()},{r.GetProperty("mean_nfe").GetDouble()},{r.GetProperty("max_nfe").GetInt32()}"));

        var one = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--gen-length", "8", "--json", "--batch", "1",
            "--temperature", "0.8", "--seed", "7", "--limit", "3", "--no-progress");
        var all = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--gen-length", "8", "--json", "--batch", "3",
            "--temperature", "0.8", "--seed", "7", "--limit", "3", "--no-progress");
        Assert.That(one.Code, Is.Zero, one.Err);
        Assert.That(all.Code, Is.Zero, all.Err);
        Assert.That(one.Err, Is.Empty, "--no-progress");
        Assert.That(JsonDocument.Parse(one.Out).RootElement.GetProperty("problems").GetInt32(), Is.EqualTo(3));
        Assert.That(Figures(one.Out), Is.EqualTo(Figures(all.Out)));
    }

    [Test]
    public async Task MarkdownHasOneRowPerStrategyWithTheRatioToLowConfidence()
    {
        string set = WriteSet(("def f(x):\n", "x"));
        var (code, stdout, stderr) = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--gen-length", "8", "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        string[] rows = stdout.Split('\n').Where(l => l.StartsWith("| ") && !l.StartsWith("| strategy")).ToArray();
        Assert.That(rows, Has.Length.EqualTo(8));
        Assert.That(rows[0], Does.StartWith("| low-confidence S=G | 0.000 (0/1) | 8.00 | 8 | 1.00x |"));
        Assert.That(rows[1], Does.StartWith("| low-confidence S=G/2 | 0.000 (0/1) | 4.00 | 4 | 0.50x |"));
    }

    [Test]
    public async Task JsonFileHoldsTheJsonOfTheSameRunWhileMarkdownGoesToStdout()
    {
        string set = WriteSet(("def f(x):\n", "x"), ("import os\n", "y"));
        string file = Path.Combine(directory, "out", "eval.json");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        var (code, stdout, stderr) = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--gen-length", "8", "--no-progress",
            "--json-file", file);
        Assert.That(code, Is.Zero, stderr);
        var json = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--gen-length", "8", "--no-progress", "--json");
        Assert.That(json.Code, Is.Zero, json.Err);
        // The file is what --json prints, but for the wall times; stdout keeps the Markdown table.
        static string WithoutTimes(string text) => Regex.Replace(text, "\"(wall_ms|tokens_per_s)\": [0-9.eE+-]+", "\"$1\": 0");
        Assert.That(WithoutTimes(File.ReadAllText(file)).TrimEnd(), Is.EqualTo(WithoutTimes(json.Out).TrimEnd()));
        Assert.That(stdout.Split('\n').Count(l => l.StartsWith("| ") && !l.StartsWith("| strategy")), Is.EqualTo(8));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(file)!), Is.EqualTo(new[] { file }), "no temporary file is left");
    }

    [Test]
    public async Task JsonFileInAMissingDirectoryOrWithJsonIsAUsageErrorBeforeDecoding()
    {
        string set = WriteSet(("def f(x):\n", "x"));
        string missing = Path.Combine(directory, "nowhere", "eval.json");
        var (code, _, stderr) = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--json-file", missing);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain($"--json-file {missing}: the directory {Path.GetDirectoryName(missing)} does not exist."));
        (code, _, stderr) = await Run("eval", "--set", set, "--model", ModelArguments.ShippedModel(), "--json", "--json-file", Path.Combine(directory, "x.json"));
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("--json-file writes the JSON beside the Markdown"));
    }

    [TestCase("{\"prompt\": \"x\"}", "set.jsonl:1: expected an object with the strings \"prompt\" and \"answer\"")]
    [TestCase("{\"prompt\": \"x\", \"answer\": \"y\"}\nnot json", "set.jsonl:2: not JSON")]
    [TestCase("", "holds no problems")]
    public async Task ABadSetIsAnErrorNamingTheLine(string content, string message)
    {
        string path = Path.Combine(directory, "set.jsonl");
        File.WriteAllText(path, content);
        var (code, _, stderr) = await Run("eval", "--set", path, "--model", ModelArguments.ShippedModel());
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain(message));
    }

    [TestCase("--limit", "0", "--limit must be >= 1; got 0")]
    [TestCase("--batch", "0", "--batch must be >= 1; got 0")]
    public async Task BadNumbersAreUsageErrors(string option, string value, string message)
    {
        var (code, _, stderr) = await Run("eval", option, value);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain(message));
    }

    [Test]
    public async Task AMissingSetIsNamed()
    {
        var (code, _, stderr) = await Run("eval", "--model", ModelArguments.ShippedModel(), "--set", Path.Combine(directory, "none.jsonl"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("none.jsonl does not exist"));
    }
}
