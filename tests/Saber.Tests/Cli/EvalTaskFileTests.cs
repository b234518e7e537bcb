using System.Globalization;
using System.Text.Json;
using Saber.Cli;

namespace Saber.Tests.Cli;

/// <summary>
/// <c>saber eval --tasks</c> on the shipped addition model with task files made here: the checkers and difficulties
/// scored against answers computed here (the sum of the prompt's numbers, which the model gets right on its held-out set),
/// the file's generation length, and bad lines named by file and line before anything is decoded.
/// </summary>
public class EvalTaskFileTests
{
    private string directory = "";

    [SetUp]
    public void CreateDirectory() => directory = Directory.CreateTempSubdirectory("saber-eval-tasks-").FullName;

    [TearDown]
    public void Delete() => Directory.Delete(directory, recursive: true);

    private static string Model => ModelArguments.ShippedModel("addition");

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string Write(params string[] lines)
    {
        string path = Path.Combine(directory, "tasks.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    private static string Line(object problem) => JsonSerializer.Serialize(problem);

    /// <summary>The 9-digit sum an addition prompt "a+b=" asks for.</summary>
    private static string Sum(string prompt)
    {
        string[] terms = prompt.TrimEnd('=').Split('+');
        return (long.Parse(terms[0], CultureInfo.InvariantCulture) + long.Parse(terms[1], CultureInfo.InvariantCulture)).ToString("D9", CultureInfo.InvariantCulture);
    }

    private static string WrongSum(string prompt) => Sum(prompt)[..8] + (char)('0' + (Sum(prompt)[8] - '0' + 1) % 10);

    // Problems 1 and 3 carry their sums (right), 2 and 4 a sum with its last digit changed (deliberately wrong), 5 a regex
    // the sum matches, 6 a prompt of another length (ragged batch) under ".*", which accepts any text, and no difficulty.
    // Every strategy: 4 of 6 right; easy 1/2, medium 1/2, hard 1/1 (problem 6 counts only in the row's accuracy).
    private string MixedFile() => Write(
        Line(new { prompt = "95235481+51036905=", answer = Sum("95235481+51036905="), checker = "exact", difficulty = "easy" }),
        Line(new { prompt = "23441740+31924258=", answer = WrongSum("23441740+31924258="), checker = "exact", difficulty = "easy" }),
        "",
        Line(new { prompt = "62617451+81062733=", answer = Sum("62617451+81062733="), difficulty = "medium" }),
        Line(new { prompt = "02007657+35437716=", answer = WrongSum("02007657+35437716="), checker = "exact", difficulty = "medium" }),
        Line(new { prompt = "86971559+17058270=", answer = Sum("86971559+17058270=")[..3] + @"\d{6}", checker = "regex", difficulty = "hard" }),
        Line(new { prompt = "1+2=", answer = ".*", checker = "regex" }));

    [Test]
    public async Task JsonRowsGiveTheAccuracyOfEachDifficultyInOrderOfFirstAppearance()
    {
        var (code, stdout, stderr) = await Run("eval", "--model", Model, "--tasks", MixedFile(), "--json", "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        JsonElement root = JsonDocument.Parse(stdout).RootElement;
        Assert.That(root.GetProperty("problems").GetInt32(), Is.EqualTo(6));
        JsonElement[] rows = root.GetProperty("rows").EnumerateArray().ToArray();
        Assert.That(rows, Has.Length.EqualTo(8));
        foreach (JsonElement row in rows)
        {
            string label = row.GetProperty("label").GetString()!;
            Assert.That(row.GetProperty("correct").GetInt32(), Is.EqualTo(4), label);
            Assert.That(row.GetProperty("accuracy").GetDouble(), Is.EqualTo(4.0 / 6).Within(1e-12), label);
            JsonProperty[] difficulties = row.GetProperty("accuracy_by_difficulty").EnumerateObject().ToArray();
            Assert.That(difficulties.Select(d => d.Name), Is.EqualTo(new[] { "easy", "medium", "hard" }), label);
            Assert.That(difficulties.Select(d => (d.Value.GetProperty("correct").GetInt32(), d.Value.GetProperty("problems").GetInt32(),
                d.Value.GetProperty("accuracy").GetDouble())), Is.EqualTo(new[] { (1, 2, 0.5), (1, 2, 0.5), (1, 1, 1.0) }), label);
        }
    }

    [Test]
    public async Task MarkdownHasAColumnPerDifficulty()
    {
        var (code, stdout, stderr) = await Run("eval", "--model", Model, "--tasks", MixedFile(), "--no-progress");
        Assert.That(code, Is.Zero, stderr);
        string[] lines = stdout.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.That(lines, Does.Contain("| strategy | accuracy | easy | medium | hard | mean NFE | max NFE | NFE vs low-confidence S=G | cache | " +
            "FLOPs/problem | FLOPs | wall ms | tokens/s | re-masks | changed | re-masked twice |"));
        Assert.That(lines, Does.Contain("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"));
        string[] rows = lines.Where(l => l.StartsWith("| ", StringComparison.Ordinal) && !l.StartsWith("| strategy", StringComparison.Ordinal)).ToArray();
        Assert.That(rows, Has.Length.EqualTo(8));
        Assert.That(rows[0], Does.StartWith("| low-confidence S=G | 0.667 (4/6) | 0.500 (1/2) | 0.500 (1/2) | 1.000 (1/1) | 16.00 | 16 | 1.00x |"));
        foreach (string row in rows)
            Assert.That(row, Does.Contain(" | 0.667 (4/6) | 0.500 (1/2) | 0.500 (1/2) | 1.000 (1/1) | "));
    }

    [Test]
    public async Task AFileWithoutDifficultiesHasNoneInEitherFormat()
    {
        string path = Write(Line(new { prompt = "95235481+51036905=", answer = Sum("95235481+51036905=") }));
        var json = await Run("eval", "--model", Model, "--tasks", path, "--json", "--no-progress");
        Assert.That(json.Code, Is.Zero, json.Err);
        foreach (JsonElement row in JsonDocument.Parse(json.Out).RootElement.GetProperty("rows").EnumerateArray())
            Assert.That(row.GetProperty("accuracy_by_difficulty").ValueKind, Is.EqualTo(JsonValueKind.Null));
        var markdown = await Run("eval", "--model", Model, "--tasks", path, "--no-progress");
        Assert.That(markdown.Out, Does.Contain("| strategy | accuracy | mean NFE |"));
        Assert.That(markdown.Out, Does.Contain("| low-confidence S=G | 1.000 (1/1) | 16.00 |"));
    }

    [Test]
    public async Task SetIsTheSameOptionAsTasksAndNotBoth()
    {
        string path = Write(Line(new { prompt = "95235481+51036905=", answer = Sum("95235481+51036905="), difficulty = "easy" }));
        var tasks = await Run("eval", "--model", Model, "--tasks", path, "--json", "--no-progress");
        var set = await Run("eval", "--model", Model, "--set", path, "--json", "--no-progress");
        Assert.That(set.Code, Is.Zero, set.Err);
        static string Scores(string json) => string.Join(";", JsonDocument.Parse(json).RootElement.GetProperty("rows").EnumerateArray()
            .Select(r => $"{r.GetProperty("correct").GetInt32()},{r.GetProperty("accuracy_by_difficulty").GetRawText()},{r.GetProperty("mean_nfe").GetDouble()}"));
        Assert.That(Scores(set.Out), Is.EqualTo(Scores(tasks.Out)));

        var both = await Run("eval", "--model", Model, "--tasks", path, "--set", path);
        Assert.That(both.Code, Is.EqualTo(2));
        Assert.That(both.Err, Does.Contain("--tasks and --set name the same file; give one."));
    }

    [Test]
    public async Task TheFilesGenerationLengthIsTheDefaultAndTheOptionOverridesIt()
    {
        string path = Write(
            Line(new { prompt = "95235481+51036905=", answer = Sum("95235481+51036905="), gen_length = 12 }),
            Line(new { prompt = "23441740+31924258=", answer = Sum("23441740+31924258=") }),
            Line(new { prompt = "62617451+81062733=", answer = Sum("62617451+81062733="), gen_length = 12 }));
        static (int G, int K, double Nfe) Lengths(string json)
        {
            JsonElement root = JsonDocument.Parse(json).RootElement;
            // Low-confidence S = G takes one position per call: its mean NFE is the G the problems were decoded with.
            return (root.GetProperty("gen_length").GetInt32(), root.GetProperty("block_length").GetInt32(),
                root.GetProperty("rows")[0].GetProperty("mean_nfe").GetDouble());
        }

        var fromFile = await Run("eval", "--model", Model, "--tasks", path, "--json", "--no-progress", "--limit", "2");
        Assert.That(fromFile.Code, Is.Zero, fromFile.Err);
        Assert.That(Lengths(fromFile.Out), Is.EqualTo((12, 12, 12.0)));
        var fromOption = await Run("eval", "--model", Model, "--tasks", path, "--json", "--no-progress", "--limit", "2", "--gen-length", "10");
        Assert.That(fromOption.Code, Is.Zero, fromOption.Err);
        Assert.That(Lengths(fromOption.Out), Is.EqualTo((10, 10, 10.0)));
    }

    [Test]
    public async Task AnswersLongerThanGAreWarnedAbout()
    {
        string path = Write(Line(new { prompt = "95235481+51036905=", answer = Sum("95235481+51036905=") }), Line(new { prompt = "1+2=", answer = "3" }));
        var (code, _, stderr) = await Run("eval", "--model", Model, "--tasks", path, "--json", "--no-progress", "--gen-length", "4");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stderr, Does.Contain("warning: 1 of 2 problems have an answer longer than G = 4 positions (the first: "));
        Assert.That(stderr, Does.Contain("tasks.jsonl:1, 9 tokens)"));
    }

    private const string SudokuPrompt = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79=";

    // Each file: a good line, then the bad one (after a blank line where the number shows that blank lines are counted).
    [TestCase("not json", "tasks.jsonl:3: not JSON (", TestName = "{m}(not JSON)")]
    [TestCase("[1, 2]", "tasks.jsonl:3: expected a JSON object; got an array.", TestName = "{m}(not an object)")]
    [TestCase("{\"answer\": \"1\"}", "tasks.jsonl:3: expected an object with the strings \"prompt\" and \"answer\"; \"prompt\" is missing.",
        TestName = "{m}(no prompt)")]
    [TestCase("{\"prompt\": \"1+1=\"}", "tasks.jsonl:3: expected an object with the strings \"prompt\" and \"answer\"; \"answer\" is missing.",
        TestName = "{m}(no answer)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": 2}", "tasks.jsonl:3: \"answer\" must be a string; got the number 2.", TestName = "{m}(a number answer)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": \"2\", \"checker\": \"fuzzy\"}",
        "tasks.jsonl:3: unknown checker \"fuzzy\" (known: exact, regex, sudoku).", TestName = "{m}(an unknown checker)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": \"(2\", \"checker\": \"regex\"}", "tasks.jsonl:3: the regex \"(2\" does not compile: ",
        TestName = "{m}(a regex that does not compile)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": \"2\", \"checker\": \"sudoku\"}",
        "tasks.jsonl:3: a Sudoku prompt is 81 cells of '1'-'9' or '.', then '='; got \"1+1=\" (4 characters).", TestName = "{m}(not a Sudoku prompt)")]
    [TestCase("{\"prompt\": \"" + SudokuPrompt + "\", \"answer\": \"" + "534678912672195348198342567859761423426853791713924856961537284287419635345286179" +
        "\", \"checker\": \"sudoku\", \"difficulty\": 3}", "tasks.jsonl:3: \"difficulty\" must be a string; got the number 3.",
        TestName = "{m}(a number difficulty)")]
    [TestCase("{\"prompt\": \"" + SudokuPrompt + "\", \"answer\": \"" + "634678912672195348198342567859761423426853791713924856961537284287419635345286179" +
        "\", \"checker\": \"sudoku\"}", "tasks.jsonl:3: the answer \"6346", TestName = "{m}(a Sudoku answer that is no solution)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": \"2\", \"gen_length\": 0}", "tasks.jsonl:3: \"gen_length\" must be an integer in [1, 1048576]; got 0.",
        TestName = "{m}(gen_length 0)")]
    [TestCase("{\"prompt\": \"1+1=\", \"answer\": \"2\", \"gen_length\": 9}", "tasks.jsonl:3: \"gen_length\" is 9, but line 1 gave 16; a task file has one generation length.",
        TestName = "{m}(a second gen_length)")]
    [TestCase("{\"prompt\": \"" + "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" +
        "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" +
        "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" +
        "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" +
        "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" +
        "123456789012345678901234567890123456789012345678901234567890\", \"answer\": \"2\"}",
        "tasks.jsonl:3: the prompt (510 tokens) plus G = 16 makes a canvas of 526 positions; the model takes at most 512.",
        TestName = "{m}(a prompt too long for the model)")]
    public async Task ABadLineIsAnErrorNamingFileAndLineBeforeAnythingIsDecoded(string bad, string message)
    {
        string path = Write(Line(new { prompt = "95235481+51036905=", answer = "146272386", gen_length = 16 }), "", bad);
        var (code, stdout, stderr) = await Run("eval", "--model", Model, "--tasks", path);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.StartWith($"saber eval: {directory}{Path.DirectorySeparatorChar}{message}"));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Not.Contain("[1/8]"), "nothing decoded: no progress line");
    }
}
