using System.Text.RegularExpressions;
using System.Text.Json;
using Saber.Cli;
using Saber.Denoisers;

namespace Saber.Tests.Cli;

/// <summary>The <c>saber</c> command line: output formats, usage errors and exit codes.</summary>
public class CliTests
{
    private string directory = "";
    private string logits = "";
    private const int P = 2, G = 8, V = 13, Mask = 12, Steps = 16;

    [SetUp]
    public void WriteRecording()
    {
        directory = Directory.CreateTempSubdirectory("saber-cli-").FullName;
        var rng = new Random(5);
        logits = NpyWriter.WriteFloat32(Path.Combine(directory, "logits.npy"), [Steps, P + G, V],
            Enumerable.Range(0, Steps * (P + G) * V).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray());
    }

    [TearDown]
    public void Delete() => Directory.Delete(directory, recursive: true);

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args) => await Run(default, args);

    private static async Task<(int Code, string Out, string Err)> Run(CancellationToken cancellationToken, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await Program.RunAsync(args, stdout, stderr, cancellationToken);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string[] Replay(params string[] extra) =>
        ["replay", "--logits", logits, "--prompt-tokens", "3,4", "--mask-id", $"{Mask}", "--gen-length", $"{G}", .. extra];

    [Test]
    public async Task ReplayJsonHoldsTokensNfeAndTraceAsTheLibraryDecodes()
    {
        var (code, stdout, stderr) = await Run(Replay("--json", "--block-length", "4", "--min-tokens", "1"));
        Assert.That(code, Is.Zero, stderr);

        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement root = json.RootElement;
        Assert.That(root.EnumerateObject().Select(p => p.Name),
            Is.EqualTo(new[] { "tokens", "nfe", "remasks", "remasks_changed", "positions_remasked_twice", "trace" }));

        using var replay = new ReplayDenoiser(logits, Mask);
        var options = new DecodeOptions { GenerationLength = G, BlockLength = 4, Strategy = new SaberStrategy(MinTokensPerStep: 1), Trace = true };
        SequenceResult expected = (await new CpuSampler().DecodeAsync(replay, [new[] { 3, 4 }], options)).Sequences[0];

        Assert.That(root.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()), Is.EqualTo(expected.Tokens.ToArray()));
        Assert.That(root.GetProperty("nfe").GetInt32(), Is.EqualTo(expected.Nfe));
        Assert.That(root.GetProperty("remasks").GetInt32(), Is.EqualTo(expected.RemaskStatistics!.Remasks));
        Assert.That(root.GetProperty("remasks_changed").GetInt32(), Is.EqualTo(expected.RemaskStatistics.RemasksChanged));
        Assert.That(root.GetProperty("positions_remasked_twice").GetInt32(), Is.EqualTo(expected.RemaskStatistics.PositionsRemaskedTwice));
        JsonElement[] trace = root.GetProperty("trace").EnumerateArray().ToArray();
        Assert.That(trace, Has.Length.EqualTo(expected.Nfe));
        for (int s = 0; s < trace.Length; s++)
        {
            StepTrace want = expected.Trace[s];
            Assert.That(trace[s].GetProperty("step").GetInt32(), Is.EqualTo(s + 1));
            Assert.That(trace[s].GetProperty("tau").GetDouble(), Is.EqualTo(want.Tau!.Value).Within(1e-12));
            var committed = trace[s].GetProperty("committed").EnumerateArray().Select(c => c.EnumerateArray().ToArray()).ToArray();
            Assert.That(committed.Select(c => (c[0].GetInt32(), c[1].GetInt32(), c[2].GetSingle())),
                Is.EqualTo(want.Committed.Select(c => (c.Position, c.Token, c.Confidence))));
            var remasked = trace[s].GetProperty("remasked").EnumerateArray().Select(r => r.EnumerateArray().ToArray()).ToArray();
            Assert.That(remasked.Select(r => (r[0].GetInt32(), r[1].GetSingle())), Is.EqualTo(want.Remasked.Select(r => (r.Position, r.Delta))));
            Assert.That(committed.Select(c => c[0].GetInt32()), Is.Ordered.And.All.InRange(P, P + G - 1), "absolute positions, sorted");
        }
        Assert.That(trace.Sum(t => t.GetProperty("remasked").GetArrayLength()), Is.GreaterThan(0), "test set-up: the recording should trigger re-masking");
    }

    [Test]
    public async Task LowConfidenceJsonHasNullTau()
    {
        var (code, stdout, stderr) = await Run(Replay("--json", "--strategy", "low-confidence", "--steps", "8", "--metric", "margin"));
        Assert.That(code, Is.Zero, stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.That(json.RootElement.GetProperty("nfe").GetInt32(), Is.EqualTo(8));
        Assert.That(json.RootElement.GetProperty("trace").EnumerateArray().Select(t => t.GetProperty("tau").ValueKind), Has.All.EqualTo(JsonValueKind.Null));
    }

    [Test]
    public void NonFiniteNumbersAreWrittenAsStrings()
    {
        var result = new SequenceResult([1, 2, 3], 1, 1,
            [new StepTrace(1, 1.0, [new CommittedToken(1, 2, 0.5f)], [new RemaskedToken(2, float.PositiveInfinity), new RemaskedToken(3, float.NegativeInfinity)])]);
        using JsonDocument json = JsonDocument.Parse(TraceJson.Write(result));
        var remasked = json.RootElement.GetProperty("trace")[0].GetProperty("remasked");
        Assert.That(remasked[0][1].GetString(), Is.EqualTo("Infinity"));
        Assert.That(remasked[1][1].GetString(), Is.EqualTo("-Infinity"));
    }

    [Test]
    public async Task ReplayTableShowsEveryStep()
    {
        var (code, stdout, _) = await Run(Replay("--strategy", "threshold", "--threshold", "0.5"));
        Assert.That(code, Is.Zero);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int nfe = int.Parse(Regex.Match(lines[0], @"NFE (\d+)").Groups[1].Value);
        Assert.That(lines[0], Does.StartWith("threshold 0.5 on "));
        Assert.That(lines.Count(l => Regex.IsMatch(l, @"^\s+\d+\s+-\s")), Is.EqualTo(nfe));
        Assert.That(lines[^2], Is.EqualTo("re-masks: 0, 0 came back as a different token, 0 position(s) re-masked more than once"), "threshold never re-masks");
        Assert.That(lines[^1], Does.StartWith("tokens: "));
    }

    [Test]
    public async Task ReplayRunsTheFactorRule()
    {
        var (code, stdout, _) = await Run(Replay("--strategy", "factor", "--factor", "2"));
        Assert.That(code, Is.Zero);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int nfe = int.Parse(Regex.Match(lines[0], @"NFE (\d+)").Groups[1].Value);
        Assert.That(lines[0], Does.StartWith("factor 2 on "));
        Assert.That(lines.Count(l => Regex.IsMatch(l, @"^\s+\d+\s+-\s")), Is.EqualTo(nfe));
    }

    [TestCase(new string[0], "usage: saber")]
    [TestCase(new[] { "frobnicate" }, "Unknown command 'frobnicate'")]
    [TestCase(new[] { "replay", "--mask-id", "1" }, "Option --logits is required")]
    [TestCase(new[] { "replay", "--logits" }, "Option --logits needs a value")]
    [TestCase(new[] { "replay", "stray" }, "Unexpected argument 'stray'")]
    [TestCase(new[] { "demo", "--colour" }, "Unknown option --colour")]
    public async Task UsageErrorsExitWithTwo(string[] args, string message)
    {
        var (code, stdout, stderr) = await Run(args);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain(message));
        Assert.That(stdout, Is.Empty);
    }

    [TestCase(new[] { "--gen-length", "x" }, "--gen-length expects an integer; got 'x'")]
    [TestCase(new[] { "--strategy", "greedy" }, "--strategy expects saber, low-confidence, threshold or factor; got 'greedy'")]
    [TestCase(new[] { "--strategy", "factor", "--threshold", "0.5" }, "--threshold does not apply to --strategy factor")]
    [TestCase(new[] { "--strategy", "threshold", "--factor", "2" }, "--factor does not apply to --strategy threshold")]
    [TestCase(new[] { "--factor", "2" }, "--factor does not apply to --strategy saber")]
    [TestCase(new[] { "--strategy", "factor", "--factor", "x" }, "--factor expects a number; got 'x'")]
    [TestCase(new[] { "--strategy", "threshold", "--min-tokens", "2" }, "--min-tokens does not apply to --strategy threshold")]
    [TestCase(new[] { "--metric", "margin" }, "--metric does not apply to --strategy saber")]
    [TestCase(new[] { "--variant", "draft" }, "--variant expects one of reference, paper; got 'draft'")]
    [TestCase(new[] { "--seed", "-1" }, "--seed expects an integer in [0, 18446744073709551615]; got '-1'")]
    [TestCase(new[] { "--gen-length", "99999999999" }, "--gen-length expects an integer in [-2147483648, 2147483647]; got '99999999999'")]
    [TestCase(new[] { "--json", "--json" }, "Option --json is given twice")]
    public async Task BadReplayOptionsAreUsageErrors(string[] extra, string message)
    {
        // Replay(...) already passes --gen-length; a second one would be "given twice", so build the line here.
        string[] args = ["replay", "--logits", logits, "--prompt-tokens", "3,4", "--mask-id", $"{Mask}", .. extra];
        if (!extra.Contains("--gen-length")) args = [.. args, "--gen-length", $"{G}"];
        var (code, _, stderr) = await Run(args);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain(message));
    }

    [TestCase(new[] { "--min-tokens", "0" }, "--min-tokens: Saber's minimum tokens per step n must be >= 1; got 0")]
    [TestCase(new[] { "--block-length", "3" }, "Block length K must be > 0 and divide G=8; got 3")]
    [TestCase(new[] { "--temperature", "-1" }, "Temperature T must be finite and >= 0; got -1")]
    public async Task InvalidValuesFailWithOneAndTheMessage(string[] extra, string message)
    {
        var (code, stdout, stderr) = await Run(Replay(extra));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain(message));
        Assert.That(stdout, Is.Empty);
    }

    [Test]
    public async Task BadInputsFailWithOne()
    {
        var missing = await Run(["replay", "--logits", Path.Combine(directory, "none.npy"), "--prompt-tokens", "1", "--mask-id", "1", "--gen-length", "8"]);
        Assert.That(missing.Code, Is.EqualTo(1));
        Assert.That(missing.Err, Does.Contain("none.npy"));

        var maskInPrompt = await Run(["replay", "--logits", logits, "--prompt-tokens", $"3,{Mask}", "--mask-id", $"{Mask}", "--gen-length", $"{G}"]);
        Assert.That(maskInPrompt.Code, Is.EqualTo(1));
        Assert.That(maskInPrompt.Err, Does.Contain($"mask id {Mask} at position 1"));

        var tooShort = await Run(["replay", "--logits", logits, "--prompt-tokens", "3,4", "--mask-id", $"{Mask}", "--gen-length", $"{G}",
            "--strategy", "low-confidence", "--steps", "24"]);
        Assert.That(tooShort.Code, Is.EqualTo(1));
        Assert.That(tooShort.Err, Does.Contain("Step 17 needs recorded slice 16"));
    }

    [Test]
    public async Task CudaDeviceWithoutAGpuFailsWithOneClearMessage()
    {
        // This machine may have no libsaber_native, one built without CUDA, or no GPU: each is exit code 1 and a message.
        var (code, stdout, stderr) = await Run(Replay("--device", "cuda", "--json"));
        if (code == 0) Assert.Ignore("a CUDA device and libsaber_native are present; covered by the GPU tests");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Contain("libsaber_native").Or.Contain("CUDA").Or.Contain("cuda"));
    }

    [Test]
    public async Task UnknownDeviceIsAUsageError()
    {
        var (code, _, stderr) = await Run(Replay("--device", "tpu"));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--device expects cpu or cuda; got 'tpu'"));
    }

    [Test]
    public async Task CancelledRunExitsWith130()
    {
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var (code, _, stderr) = await Run(cancel.Token, Replay());
        Assert.That(code, Is.EqualTo(130));
        Assert.That(stderr, Does.Contain("cancelled"));
    }

    [Test]
    public async Task HelpExitsWithZero()
    {
        var (code, stdout, _) = await Run("replay", "--help");
        Assert.That(code, Is.Zero);
        Assert.That(stdout, Does.Contain("--prompt-tokens"));
    }

    [Test]
    public async Task SyntheticDemoShowsTheCanvasAndTheComparison()
    {
        var (code, stdout, stderr) = await Run("demo", "--no-color", "--synthetic");
        Assert.That(code, Is.Zero, stderr);
        string[] lines = stdout.Split('\n');
        Assert.That(lines.Count(l => l.StartsWith("step ")), Is.GreaterThan(1));
        Assert.That(stdout, Does.Contain("{"), "a re-masked token is shown");

        // The table: strategy, NFE, tokens recovered (r/G), planted mistakes left (m/4).
        var rows = lines.Select(l => Regex.Match(l, @"^(.+?)\s+(\d+)\s+(\d+)/(\d+)\s+(\d+)/4\s*$"))
            .Where(m => m.Success).ToDictionary(m => m.Groups[1].Value, m => (Nfe: int.Parse(m.Groups[2].Value), Left: int.Parse(m.Groups[5].Value)));
        Assert.That(rows.Keys, Is.EquivalentTo(new[] { "saber (reference)", "saber (reference, no backtracking)", "low-confidence (S=78, maxprob)", "threshold 0.9" }));
        Assert.That(rows["saber (reference)"].Left, Is.LessThan(rows["saber (reference, no backtracking)"].Left));
        Assert.That(rows["saber (reference)"].Nfe, Is.LessThan(rows["low-confidence (S=78, maxprob)"].Nfe));
        Assert.That(rows["low-confidence (S=78, maxprob)"].Nfe, Is.EqualTo(78));
    }

    [Test]
    public async Task DemoSolvesAHeldOutProblemOfEachTaskModelThenComparesTheStrategies()
    {
        var (code, stdout, stderr) = await Run("demo", "--no-color");
        Assert.That(code, Is.Zero, stderr);
        // Without --model: each shipped task model, Sudoku first, addition second, each section opening "Saber on ".
        string[] sections = Regex.Split(stdout, @"\n(?=Saber on )");
        Assert.That(sections, Has.Length.EqualTo(2), stdout);
        Assert.That(sections[0], Does.Contain("(weights: sudoku task: "), "the Sudoku model's own account of its weights");
        Assert.That(sections[1], Does.Contain("(weights: addition task: "), "the addition model's own account of its weights");
        string[] strategies = ["low-confidence S=G", "threshold 0.9", "saber reference", "saber no-backtracking"];

        // Sudoku: the decoded grid is judged right exactly when it is a valid grid keeping the givens, checked here
        // independently of the model's answer file and of the eval's checker.
        string sudoku = sections[0];
        var puzzle = Regex.Match(sudoku, @"Held-out problem (\d+) of test\.jsonl .*: ([1-9.]{81}=) with 81 positions to fill; the answer is ([1-9]{81})\.");
        Assert.That(puzzle.Success, sudoku);
        Assert.That(IsSolvedGridKeeping(puzzle.Groups[3].Value, puzzle.Groups[2].Value), "the stated answer solves the puzzle");
        var solved = Regex.Match(sudoku, @"^decoded (\S*): (right|wrong)", RegexOptions.Multiline);
        Assert.That(solved.Success, sudoku);
        Assert.That(solved.Groups[2].Value, Is.EqualTo(IsSolvedGridKeeping(solved.Groups[1].Value, puzzle.Groups[2].Value) ? "right" : "wrong"));
        Assert.That(sudoku.Split('\n').Count(l => l.StartsWith("step ")), Is.InRange(1, 81));
        Assert.That(sudoku, Does.Contain("------+-------+------"), "the puzzle and the decoded grid drawn as grids");
        Assert.That(sudoku, Does.Contain("saber eval: sudoku, 30 problems"), "the table's 30 grids");
        string[] sudokuRows = TableRows(sudoku);
        Assert.That(sudokuRows.Select(r => r.Split('|')[1].Trim()), Is.EqualTo(strategies));
        Assert.That(sudokuRows[0], Does.Contain("| 81.00 | 81 | 1.00x |"), "S = G: one position per call");

        string addition = sections[1];
        var problem = Regex.Match(addition, @"Held-out problem (\d+) of test\.jsonl .*: (\d{8}\+\d{8}=) with 16 positions to fill; the answer is (\d{9})\.");
        Assert.That(problem.Success, addition);
        Assert.That(addition.Split('\n').Count(l => l.StartsWith("step ")), Is.InRange(1, 16));
        // The line of the decoded answer says whether it is the sum, checked here independently of the model's answer file.
        string prompt = problem.Groups[2].Value;
        long sum = long.Parse(prompt[..8]) + long.Parse(prompt[9..17]);
        Assert.That(problem.Groups[3].Value, Is.EqualTo(sum.ToString("D9")));
        var decoded = Regex.Match(addition, @"^decoded (\S*): (right|wrong)", RegexOptions.Multiline);
        Assert.That(decoded.Success, addition);
        Assert.That(decoded.Groups[2].Value, Is.EqualTo(decoded.Groups[1].Value == sum.ToString("D9") ? "right" : "wrong"));
        string[] rows = TableRows(addition);
        Assert.That(rows.Select(r => r.Split('|')[1].Trim()), Is.EqualTo(strategies));
        Assert.That(rows[0], Does.Contain("| 16.00 | 16 | 1.00x |"), "S = G: one position per call");

        static string[] TableRows(string section) =>
            section.Split('\n').Where(l => l.StartsWith("| ") && !l.StartsWith("| strategy")).ToArray();
    }

    /// <summary>Whether <paramref name="grid"/> (81 digits) has 1-9 once in each row, column and box and keeps every given.</summary>
    private static bool IsSolvedGridKeeping(string grid, string puzzle)
    {
        if (grid.Length != 81 || grid.Any(c => c is < '1' or > '9')) return false;
        for (int i = 0; i < 81; i++)
            if (puzzle[i] != '.' && puzzle[i] != grid[i]) return false;
        for (int unit = 0; unit < 9; unit++)
        {
            var row = Enumerable.Range(0, 9).Select(k => grid[unit * 9 + k]);
            var column = Enumerable.Range(0, 9).Select(k => grid[k * 9 + unit]);
            var box = Enumerable.Range(0, 9).Select(k => grid[(unit / 3 * 3 + k / 3) * 9 + unit % 3 * 3 + k % 3]);
            if (new[] { row, column, box }.Any(cells => cells.Distinct().Count() != 9)) return false;
        }
        return true;
    }

    [Test]
    public async Task DemoRunsTheCodeModelAndComparesTheStrategies()
    {
        var (code, stdout, stderr) = await Run("demo", "--no-color", "--model", ModelArguments.ShippedModel(), "--gen-length", "32");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.Contain("(weights: trained: "), "the model's own account of its weights");
        string[] lines = stdout.Split('\n');
        Assert.That(lines.Count(l => l.StartsWith("step ")), Is.InRange(1, 32));
        var rows = CompareRows(stdout);
        Assert.That(rows.Keys, Is.EquivalentTo(new[] { "saber (reference)", "low-confidence (S=32, maxprob)", "threshold 0.9" }));
        Assert.That(rows["low-confidence (S=32, maxprob)"], Is.EqualTo(32.0), "S = G: one token per step");
    }

    /// <summary>strategy -> mean NFE from a compare table.</summary>
    private static Dictionary<string, double> CompareRows(string stdout) =>
        stdout.Split('\n').Select(l => Regex.Match(l, @"^(.+?)\s+(\d+\.\d)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s*$"))
            .Where(m => m.Success).ToDictionary(m => m.Groups[1].Value, m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));

    [Test]
    public async Task CompareRunsThePromptsThroughTheThreeStrategies()
    {
        var (code, stdout, stderr) = await Run("compare", "--gen-length", "16", "--block-length", "8", "def f(x):\n", "x = [");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.StartWith("2 prompt(s), G = 16, K = 8"));
        var rows = CompareRows(stdout);
        Assert.That(rows, Has.Count.EqualTo(3));
        Assert.That(rows["low-confidence (S=16, maxprob)"], Is.EqualTo(16.0));
        Assert.That(rows["saber (reference)"], Is.InRange(1.0, 16.0));
    }

    [Test]
    public async Task GeneratePrintsEachPromptWithItsCompletion()
    {
        var (code, stdout, stderr) = await Run("generate", "--gen-length", "16", "--strategy", "threshold", "--threshold", "0.5", "def f(x):", "y =");
        Assert.That(code, Is.Zero, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.StartWith("def f(x):"));
        Assert.That(stdout, Does.Contain("y ="));
        Assert.That(stderr, Does.Contain("step").And.Contain("threshold 0.5: NFE"));
    }

    [TestCase("onnx-cuda")]
    [TestCase("onnx-tensorrt")]
    public async Task GenerateOnAGpuEngineSaysWhatIsMissingInOneLine(string engine)
    {
        var (code, stdout, stderr) = await Run("generate", "--engine", engine, "--no-progress", "def f():");
        if (code == 0) Assert.Ignore($"this machine runs {engine}: nothing is missing to report");
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr);
        // This test process carries ONNX Runtime's CPU build (the repository's default), so that is the first thing named.
        Assert.That(stderr, Does.Contain($"The {engine} engine cannot run here: ").And.Contain("CPU build").And.Contain("-p:SaberOnnxRuntime=gpu"));
    }

    [TestCase(new[] { "generate" }, "Give at least one prompt")]
    [TestCase(new[] { "generate", "--engine", "tpu", "x" }, "--engine expects onnx, onnx-cuda or onnx-tensorrt; got 'tpu'")]
    [TestCase(new[] { "generate", "--precision", "fp16", "x" }, "--precision fp16 needs --engine onnx-tensorrt; the onnx engine runs the graph's own types")]
    [TestCase(new[] { "generate", "--engine", "onnx-cuda", "--precision", "bf16", "x" }, "--precision bf16 needs --engine onnx-tensorrt")]
    [TestCase(new[] { "generate", "--device", "1", "x" }, "--device needs --engine onnx-cuda or onnx-tensorrt")]
    [TestCase(new[] { "generate", "--engine", "onnx-cuda", "--device", "-1", "x" }, "--device must be >= 0; got -1")]
    [TestCase(new[] { "generate", "--engine", "onnx-cuda", "--cache", "dual", "x" }, "--cache needs --engine onnx")]
    [TestCase(new[] { "eval", "--engine", "onnx-gpu" }, "--engine expects onnx, onnx-cuda or onnx-tensorrt; got 'onnx-gpu'")]
    [TestCase(new[] { "serve", "--engine", "tpu" }, "--engine expects onnx, onnx-cuda or onnx-tensorrt; got 'tpu'")]
    [TestCase(new[] { "serve", "--device", "x" }, "--device expects a CUDA device number >= 0; got 'x'")]
    [TestCase(new[] { "generate", "--model", "/nonexistent/model", "x" }, "No model directory '/nonexistent/model'")]
    [TestCase(new[] { "generate", "--threads", "-2", "x" }, "--threads must lie in [0, ")]
    [TestCase(new[] { "generate", "--threads", "100000", "x" }, "(four per core; 0: one per core); got 100000.")]
    [TestCase(new[] { "compare", "--gen-length", "10", "--block-length", "3" }, "saber compare: --block-length: Block length K must be > 0 and divide G=10; got 3.")]
    public async Task ModelCommandErrorsNameTheProblem(string[] args, string message)
    {
        var (code, _, stderr) = await Run(args);
        Assert.That(code, Is.Not.Zero);
        Assert.That(stderr, Does.Contain(message));
    }

    [Test]
    public async Task VersionIsPrinted()
    {
        var (code, stdout, _) = await Run("--version");
        Assert.That(code, Is.Zero);
        Assert.That(stdout.Trim(), Does.Match(@"^saber \d+\.\d+\.\d+"));
    }

    [Test]
    public async Task DoubleDashEndsTheOptions()
    {
        // "--help" after "--" is a prompt, not a request for help.
        var (code, stdout, stderr) = await Run("generate", "--gen-length", "8", "--no-progress", "--", "--help", "--verbose");
        Assert.That(code, Is.Zero, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2));
        Assert.That(lines[0], Does.StartWith("--help"));
        Assert.That(lines[1], Does.StartWith("--verbose"));

        var replay = await Run(Replay("--", "stray"));
        Assert.That(replay.Code, Is.EqualTo(2));
        Assert.That(replay.Err, Does.Contain("Unexpected argument 'stray'"));
    }

    [TestCase(new[] { "--gen-length", "2147483647" }, "saber replay: --gen-length: Generation length G must be at most 1048576; got 2147483647.")]
    [TestCase(new[] { "--gen-length", "2147483640", "--block-length", "8" }, "saber replay: --gen-length: Generation length G must be at most 1048576; got 2147483640.")]
    [TestCase(new[] { "--gen-length", "0" }, "saber replay: --gen-length: Generation length G must be > 0; got 0.")]
    [TestCase(new[] { "--gen-length", "8", "--strategy", "low-confidence", "--steps", "2147483647" }, "saber replay: --steps: Low-confidence steps S must be at most 16 x G = 128")]
    [TestCase(new[] { "--gen-length", "8", "--min-tokens", "0" }, "saber replay: --min-tokens: Saber's minimum tokens per step n must be >= 1; got 0.")]
    [TestCase(new[] { "--gen-length", "8", "--threshold", "NaN", "--strategy", "threshold" }, "saber replay: --threshold: Threshold theta must lie in (0, 1]; got NaN.")]
    [TestCase(new[] { "--gen-length", "8", "--factor", "0", "--strategy", "factor" }, "saber replay: --factor: Factor F must be finite and > 0; got 0.")]
    [TestCase(new[] { "--gen-length", "8", "--temperature", "1e40" }, "saber replay: --temperature: Temperature T must be finite and >= 0; got ")]
    public async Task ValueErrorsNameTheOptionNotTheParameter(string[] extra, string message)
    {
        string[] args = ["replay", "--logits", logits, "--prompt-tokens", "3,4", "--mask-id", $"{Mask}", .. extra];
        var (code, stdout, stderr) = await Run(args);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.StartWith(message));
        Assert.That(stderr, Does.Not.Contain("(Parameter").And.Not.Contain("Actual value was").And.Not.Contain("   at "));
        Assert.That(stdout, Is.Empty);
    }

    [Test]
    public async Task MaskIdErrorsNameTheOption()
    {
        var (code, _, stderr) = await Run(["replay", "--logits", logits, "--prompt-tokens", "3,4", "--mask-id", "13", "--gen-length", $"{G}"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.StartWith("saber replay: --mask-id: Mask id must lie in [0, V=13) for " + logits + "; got 13."));
    }

    [Test]
    public async Task ReplayingADirectoryOrAMismatchedRecordingNamesTheFile()
    {
        var dir = await Run(["replay", "--logits", directory, "--prompt-tokens", "3,4", "--mask-id", $"{Mask}", "--gen-length", $"{G}"]);
        Assert.That(dir.Code, Is.EqualTo(1));
        Assert.That(dir.Err, Does.Contain($"{directory} is a directory, not a .npy file"));

        // The recording holds canvases of P + G = 10; a prompt of 3 makes 11. Checked before step 1.
        var mismatch = await Run(["replay", "--logits", logits, "--prompt-tokens", "3,4,5", "--mask-id", $"{Mask}", "--gen-length", $"{G}", "--json"]);
        Assert.That(mismatch.Code, Is.EqualTo(1));
        Assert.That(mismatch.Out, Is.Empty);
        Assert.That(mismatch.Err, Does.Contain($"{logits} holds logits of shape (16, 10, 13), recorded for canvases of L = 10 positions; a prompt of 3 tokens plus G = 8 makes 11."));
    }

    [TestCase("9223372036854775807, 11, 16")]
    [TestCase("4611686018427387904, 4611686018427387904, 16")]
    [TestCase("0, 4611686018427387904, 4611686018427387904")]
    public async Task AHeaderWithHugeDimensionsIsACleanError(string shape)
    {
        string path = Path.Combine(directory, "huge.npy");
        NpyWriter.Write(path, "<f4", [], new byte[64], header: $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        var (code, _, stderr) = await Run(["replay", "--logits", path, "--prompt-tokens", "3", "--mask-id", "1", "--gen-length", "8"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.StartWith($"saber replay: {path}: "));
        Assert.That(stderr, Does.Not.Contain("   at ").And.Not.Contain("Exception"));
    }

    [Test]
    public async Task SeedAndTemperatureWithoutTheOtherAreWarnedAbout()
    {
        var temperature = await Run(Replay("--json", "--temperature", "0.7"));
        Assert.That(temperature.Code, Is.Zero, temperature.Err);
        Assert.That(temperature.Err, Does.Contain("saber replay: warning: --temperature without --seed: the random draws use seed 0"));

        var seed = await Run(Replay("--json", "--seed", "5"));
        Assert.That(seed.Code, Is.Zero, seed.Err);
        Assert.That(seed.Err, Does.Contain("saber replay: warning: --seed has no effect without --temperature > 0 or --metric random"));

        var metric = await Run(Replay("--json", "--strategy", "low-confidence", "--steps", "8", "--metric", "random"));
        Assert.That(metric.Err, Does.Contain("--metric random without --seed"));

        var both = await Run(Replay("--json", "--temperature", "0.7", "--seed", "5"));
        var metricAndSeed = await Run(Replay("--json", "--strategy", "low-confidence", "--steps", "8", "--metric", "random", "--seed", "3"));
        Assert.That(both.Err + metricAndSeed.Err, Does.Not.Contain("warning"));
    }

    [Test]
    public async Task ProgressIsOneLinePerStepWhenStderrIsNotATerminal()
    {
        var (code, _, stderr) = await Run("generate", "--gen-length", "16", "--strategy", "threshold", "x");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stderr, Does.Not.Contain("\r"));
        string[] steps = stderr.Split('\n').Where(l => l.StartsWith("step ")).ToArray();
        Assert.That(steps, Is.Not.Empty);
        Assert.That(steps, Has.All.Match(@"^step +\d+: +\d+ of 16 positions masked$"));
    }

    [Test]
    public async Task CharactersOutsideTheVocabularyAreNamed()
    {
        var (code, stdout, stderr) = await Run("generate", "--gen-length", "8", "--no-progress", "ab", "x\u00E9\U0001F600\u00E9y");
        Assert.That(code, Is.Zero, stderr);
        string warning = stderr.Split('\n').Single(l => l.Contains("warning"));
        Assert.That(warning, Is.EqualTo("saber generate: warning: prompt 2 holds 2 character(s) outside the model's vocabulary, read as the unknown token: " +
            "'\u00E9' (U+00E9) '\U0001F600' (U+1F600)"));
        Assert.That(stdout, Does.Contain("x\u00E9\U0001F600\u00E9y"), "the prompt is echoed as given");
    }

    [Test]
    public async Task DemosPrintTheFinalTextAndAMaskGlyphThatIsNoCharacter()
    {
        var (code, stdout, stderr) = await Run("demo", "--no-color", "--synthetic");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.Contain("\u2591 : mask"));
        Assert.That(stdout, Does.Not.Contain("_ : mask"));
        // Saber repairs every planted mistake: the final text is the known completion.
        Assert.That(stdout, Does.Contain($"----\n{DemoCommand.Prompt}{DemoCommand.Completion}\n----"));
        string firstStep = stdout.Split('\n').First(l => l.StartsWith("step "));
        Assert.That(firstStep, Does.Contain("\u2591"), "masked positions are drawn with the glyph");
    }
}
