using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using CsCheck;
using Saber.Cli;
using static Saber.Tests.Fuzz.Fuzz;

namespace Saber.Tests.Fuzz;

/// <summary>
/// The saber command line on argument vectors drawn from its option grammar, edge-case values and noise. Every run
/// finishes within <see cref="Fuzz.RunBound"/>, exits with 0, 1 or 2 (130 only when the test cancelled it), lets no
/// exception escape, and prints no .NET stack trace: a usage error names the usage, a failure names the command.
/// Runs are in process through <see cref="Program.RunAsync"/>, except those that may start runaway native work
/// (ONNX Runtime thread pools, billions of steps, gigabyte canvases): those run the saber executable as a child process
/// that is killed at the bound.
/// </summary>
public partial class CliFuzzTests
{
    /// <summary>An argument vector, and (in process) a cancellation after that many milliseconds, or none (-1).</summary>
    public sealed record CliCase(string[] Args, int CancelAfterMs = -1)
    {
        public override string ToString() =>
            $"saber {string.Join(' ', Args.Select(a => a.Length > 0 && a.All(c => char.IsAsciiLetterOrDigit(c) || "-,./_+".Contains(c)) ? a : Show(a)))}" +
            (CancelAfterMs >= 0 ? $"  (cancelled after {CancelAfterMs} ms)" : "");
    }

    private sealed record Outcome(int? Code, string Out, string Err, TimeSpan Elapsed, Exception? Escaped, bool TimedOut);

    private Fuzz.Scratch scratch = null!;
    private string logits = "", hugeLogits = "", truncatedLogits = "", notNpy = "", emptyDirectory = "", brokenModel = "", garbageModel = "";
    private const int P = 2, G = 8, V = 13, Mask = 12, Steps = 16;

    [OneTimeSetUp]
    public void WriteFixtures()
    {
        scratch = new Fuzz.Scratch();
        var rng = new Random(7);
        float[] values = Enumerable.Range(0, Steps * (P + G) * V).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        logits = NpyWriter.WriteFloat32(Path.Combine(scratch.Directory, "logits.npy"), [Steps, P + G, V], values);
        byte[] bytes = values.SelectMany(BitConverter.GetBytes).ToArray();
        hugeLogits = NpyWriter.Write(Path.Combine(scratch.Directory, "huge.npy"), "<f4", [1], bytes,
            header: "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 10, 13), }");
        truncatedLogits = NpyWriter.Write(Path.Combine(scratch.Directory, "truncated.npy"), "<f4", [Steps, P + G, V], bytes[..(bytes.Length / 2)]);
        notNpy = Path.Combine(scratch.Directory, "notes.txt");
        File.WriteAllText(notNpy, "not an array\n");
        emptyDirectory = Directory.CreateDirectory(Path.Combine(scratch.Directory, "empty")).FullName;
        brokenModel = Directory.CreateDirectory(Path.Combine(scratch.Directory, "broken-model")).FullName;
        File.WriteAllText(Path.Combine(brokenModel, "tokenizer.json"), "{\"type\": \"characters\", \"vocabulary\": [");
        garbageModel = Directory.CreateDirectory(Path.Combine(scratch.Directory, "garbage-model")).FullName;
        File.Copy(Path.Combine(ModelArguments.ShippedModel(), "tokenizer.json"), Path.Combine(garbageModel, "tokenizer.json"));
        File.WriteAllBytes(Path.Combine(garbageModel, "model.onnx"), [.. "\b\u0007garbage"u8, .. Enumerable.Repeat((byte)0xFF, 64)]);
    }

    [OneTimeTearDown]
    public void DeleteFixtures() => scratch.Dispose();

    // ---- value pools ----

    private static readonly string[] IntEdges =
    [
        "0", "-1", "1", "2", "3", "4", "8", "16", "2147483647", "2147483640", "-2147483648", "2147483648", "1e40", "NaN", "", "x",
        "99999999999999999999999999999999", "٣", "１", "+1", " 1", "1 ", "0x10", "1_000", "8.0", "-0", "\u00A0" + "8",
    ];

    private static readonly string[] FloatEdges =
    [
        "0", "0.5", "0.9", "1", "1.5", "-1", "NaN", "Infinity", "-Infinity", "1e40", "-0", "1e-45", "", "x", "0,5", "∞", "1e-400", ".5", "5e-1",
    ];

    private static readonly string[] SeedEdges = ["0", "1", "18446744073709551615", "18446744073709551616", "-1", "x", "", "1e3"];

    private static readonly string[] TokenLists =
    [
        "3,4", "", "1", "x", "3,,4", "-1", "2147483647", "12", "3, 4", "0,1,2,3,4,5,6,7,8,9,10,11", "3,4,", ",", "-2147483648,1", "1e3", "٣",
    ];

    private static readonly string[] Noise =
    [
        "", "-", "--", "---", "-h", "help", "--HELP", "--json=true", "--gen-length=8", "\0", "🙂", "\u202Eevil", "replay", "demo", "--version",
        "--logits", "--model", "--threads", "--", "\n", "--\u00E9", "＋", "--verbose",
    ];

    /// <summary>Values that cannot make a model command expensive: small or invalid, or large enough to be refused at once.</summary>
    private static readonly string[] CheapGenerationLengths =
        ["1", "2", "4", "8", "16", "0", "-1", "-2147483648", "2147483647", "2147483640", "x", "", "1e40", "NaN", "99999999999999999999", "٣", "513", "100000"];

    private static readonly string[] CheapBlockLengths = ["1", "2", "4", "8", "16", "3", "0", "-1", "2147483647", "x", ""];
    private static readonly string[] CheapSteps = ["1", "2", "4", "8", "16", "32", "0", "-1", "3", "x", ""];
    private static readonly string[] CheapThreads = ["0", "1", "2", "-1", "-2147483648", "x", "", "1e40", "99999999999999999999", "2.5"];

    private static readonly Gen<string> PromptGen = Gen.Frequency<string>(
        (4, Gen.OneOf("def f(x):\n", "x = [", "class A:\n\t", "print(", "", " ", "\t\t", "--", "-x", "def 🙂():", "\uD800", "\0", "<|mask|>", "<|eos|>")),
        (2, Gen.String[Gen.Char[' ', '~'], 0, 12]),
        (1, Gen.String[0, 8]));

    private static Gen<string> AnyInt => Gen.Frequency<string>((5, Gen.OneOf(IntEdges)), (1, Gen.Int.Select(i => i.ToString(CultureInfo.InvariantCulture))));

    /// <summary>--name value pairs and flags of every command, with values from the pools.</summary>
    private Gen<string[]> OptionGen(bool cheap)
    {
        Gen<string[]> Pair(string name, Gen<string> value) => value.Select(v => new[] { name, v });
        Gen<string[]> Flag(string name) => Gen.Const(new[] { name });
        Gen<string> Ints(string[] cheapPool) => cheap ? Gen.OneOf(cheapPool) : AnyInt;
        string shipped = ModelArguments.ShippedModel();
        return Gen.Frequency<string[]>(
            (3, Pair("--logits", Gen.OneOf(logits, hugeLogits, truncatedLogits, notNpy, emptyDirectory, Path.Combine(scratch.Directory, "absent.npy"), ""))),
            (3, Pair("--prompt-tokens", Gen.Frequency<string>((4, Gen.OneOf(TokenLists)),
                (1, AnyInt.Array[1, 4].Select(a => string.Join(',', a)))))),
            (3, Pair("--mask-id", AnyInt)),
            (3, Pair("--gen-length", Ints(CheapGenerationLengths))),
            (3, Pair("--block-length", Ints(CheapBlockLengths))),
            (3, Pair("--strategy", Gen.OneOf("saber", "low-confidence", "threshold", "factor", "greedy", "", "Saber"))),
            (2, Pair("--variant", Gen.OneOf("reference", "paper", "draft", ""))),
            (2, Pair("--min-tokens", Ints(CheapSteps))),
            (2, Pair("--remask-divisor", Ints(CheapSteps))),
            (2, Flag("--no-backtracking")),
            (2, Pair("--fixed-threshold", Gen.OneOf(FloatEdges))),
            (2, Pair("--steps", Ints(CheapSteps))),
            (2, Pair("--metric", Gen.OneOf("maxprob", "margin", "negentropy", "random", "entropy", ""))),
            (2, Pair("--threshold", Gen.OneOf(FloatEdges))),
            (2, Pair("--factor", Gen.OneOf(FloatEdges))),
            (2, Pair("--temperature", Gen.OneOf(FloatEdges))),
            (2, Pair("--seed", Gen.OneOf(SeedEdges))),
            (2, Pair("--device", Gen.OneOf("cpu", "cuda", "tpu", "", "CPU"))),
            (2, Flag("--json")),
            (2, Pair("--threads", Gen.OneOf(CheapThreads))),
            (2, Pair("--model", Gen.OneOf(shipped, emptyDirectory, brokenModel, garbageModel, notNpy, Path.Combine(scratch.Directory, "absent"), ""))),
            (2, Pair("--engine", Gen.OneOf("onnx", "onnx-cuda", "onnx-tensorrt", "tensorrt", ""))),
            (1, Pair("--precision", Gen.OneOf("model", "fp16", "bf16", "fp8", ""))),
            (2, Flag("--no-progress")),
            (2, Flag("--no-color")),
            (2, Flag("--synthetic")),
            (1, Flag("--verbose")),
            (1, Flag("--help")),
            (1, Flag("--version")),
            (1, Flag("--")),
            (2, Gen.OneOf(Noise).Select(n => new[] { n })),
            (1, Gen.String[Gen.Char.AlphaNumeric, 1, 10].Select(w => new[] { "--" + w })),
            (1, Gen.String[0, 6].Select(s => new[] { s })));
    }

    private static string[] Shuffled(IEnumerable<string[]> items, int seed)
    {
        string[][] array = items.ToArray();
        new Random(seed).Shuffle(array);
        return array.SelectMany(a => a).ToArray();
    }

    /// <summary>Replay lines that mostly carry the required options, with some replaced, dropped or joined by others.</summary>
    private Gen<string[]> ReplayArgs()
    {
        Gen<string[]?> Required(string name, string valid, Gen<string> edge) => Gen.Frequency<string[]?>(
            (6, Gen.Const<string[]?>(new[] { name, valid })), (2, edge.Select(e => (string[]?)new[] { name, e })), (1, Gen.Const((string[]?)null)));
        return
            from l in Required("--logits", logits, Gen.OneOf(hugeLogits, truncatedLogits, notNpy, emptyDirectory, ""))
            from t in Required("--prompt-tokens", "3,4", Gen.OneOf(TokenLists))
            from m in Required("--mask-id", $"{Mask}", AnyInt)
            from g in Required("--gen-length", $"{G}", AnyInt)
            from extras in OptionGen(cheap: false).Array[0, 3]
            from order in Gen.Int
            select (string[])["replay", .. Shuffled(new[] { l, t, m, g }.OfType<string[]>().Concat(extras), order)];
    }

    /// <summary>Any command word (known, unknown or none) followed by options from the grammar; model commands only with cheap values.</summary>
    private Gen<string[]> AnyArgs() =>
        from command in Gen.Frequency<string?>(
            (6, Gen.Const((string?)"replay")), (1, Gen.Const((string?)"generate")), (1, Gen.Const((string?)"compare")), (1, Gen.Const((string?)"demo")),
            (1, Gen.OneOf<string?>("frobnicate", "", "REPLAY", "--json", "-h", "help", "--help", "🙂", "replay ", "gen")),
            (1, Gen.Const((string?)null)))
        from options in OptionGen(cheap: command is not ("replay" or null)).Array[0, 6]
        from prompts in command is "generate" or "compare" ? PromptGen.Array[0, 2] : Gen.Const(Array.Empty<string>())
        // A model command without --gen-length decodes 64 positions (about a second here): mostly give a small one.
        from length in command is "generate" or "compare" or "demo"
            ? Gen.Frequency<string[]>((6, Gen.OneOf(CheapGenerationLengths).Select(g => new[] { "--gen-length", g })), (1, Gen.Const(Array.Empty<string>())))
            : Gen.Const(Array.Empty<string>())
        from order in Gen.Int
        select command is null ? Shuffled(options, order)
            : (string[])[command, .. Shuffled(options.Append(length).Append(command == "demo" ? DemoModel : []).Concat(prompts.Select(p => new[] { p })), order)];

    /// <summary>
    /// The fuzzed demo's model: addition alone. Without --model the demo runs every shipped task model, Sudoku first
    /// (a grid, then four strategies on 30 grids: about 20 s on 2 cores, 7 s even at G = 16, against a run's bound of
    /// 20 s with other test projects beside it); CliTests runs that path on its own.
    /// </summary>
    private static readonly string[] DemoModel = ["--model", ModelArguments.ShippedModel("addition")];

    /// <summary>Model commands that are valid and small, then possibly given one edge value or extra option.</summary>
    private Gen<string[]> ModelArgs() =>
        from command in Gen.OneOf("generate", "compare", "demo")
        from g in Gen.OneOf("8", "16")
        from strategy in Gen.OneOf<string[]>([], ["--strategy", "threshold", "--threshold", "0.5"], ["--strategy", "low-confidence", "--steps", "8"],
            ["--min-tokens", "1", "--variant", "paper"], ["--no-backtracking", "--fixed-threshold", "0.7"], ["--temperature", "1", "--seed", "3"])
        from prompts in PromptGen.Array[1, 3]
        from edit in Gen.Frequency<string[]?>(
            (1, Gen.Const((string[]?)null)),
            (2, Gen.OneOf(CheapGenerationLengths).Select(v => (string[]?)["--gen-length", v])),
            (1, Gen.Const((string[]?)["--gen-length", "2147483640", "--block-length", "8"])),
            (1, Gen.OneOf(CheapBlockLengths).Select(v => (string[]?)["--block-length", v])),
            (1, Gen.OneOf(CheapThreads).Select(v => (string[]?)["--threads", v])),
            (2, OptionGen(cheap: true).Select(o => (string[]?)o)))
        select Build(command, g, strategy, prompts, edit);

    private static string[] Build(string command, string g, string[] strategy, string[] prompts, string[]? edit)
    {
        var items = new List<string[]> { new[] { "--gen-length", g } };
        if (command == "generate")
        {
            items.Add(strategy);
            items.Add(["--no-progress"]);
        }
        if (edit is not null)
        {
            items.RemoveAll(i => i.Length > 0 && edit.Contains(i[0]) && i[0].StartsWith("--", StringComparison.Ordinal));
            items.Add(edit);
        }
        if (command == "demo" && edit?.Contains("--model") != true) items.Add(DemoModel);
        if (command != "demo") items.AddRange(prompts.Take(command == "generate" ? 3 : 2).Select(p => new[] { p }));
        return [command, .. items.SelectMany(i => i)];
    }

    // ---- running and judging ----

    private static async Task<Outcome> RunInProcess(CliCase c)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        TextWriter outWriter = TextWriter.Synchronized(stdout), errWriter = TextWriter.Synchronized(stderr);
        using var cancel = new CancellationTokenSource();
        if (c.CancelAfterMs >= 0) cancel.CancelAfter(c.CancelAfterMs);
        var clock = Stopwatch.StartNew();
        // Task.Run: a command that blocks before its first await is bounded too.
        Task<int> run = Task.Run(() => Program.RunAsync(c.Args, outWriter, errWriter, cancel.Token));
        try
        {
            int code = await run.WaitAsync(RunBound);
            return new Outcome(code, stdout.ToString(), stderr.ToString(), clock.Elapsed, null, false);
        }
        catch (TimeoutException) when (!run.IsCompleted)
        {
            cancel.Cancel();   // stop what can be stopped; the run is judged as it stands
            string partial;
            lock (errWriter) partial = stderr.ToString();   // the synchronized writer locks on itself
            return new Outcome(null, "", partial, clock.Elapsed, null, true);
        }
        catch (Exception e)
        {
            return new Outcome(null, stdout.ToString(), stderr.ToString(), clock.Elapsed, e, false);
        }
    }

    [GeneratedRegex(@"^\s*at [\w.`<>\[\]+,]+\(", RegexOptions.Multiline)]
    private static partial Regex StackFrame();

    [GeneratedRegex(@"\b(System|Microsoft|Saber)\.([\w]+\.)*\w*Exception\b|Unhandled exception")]
    private static partial Regex ExceptionTypeName();

    private static string Judge(CliCase c, Outcome o, bool cancelledByTest)
    {
        Require(!o.TimedOut, $"did not finish within {RunBound.TotalSeconds:0.#} s; stderr so far: {Tail(o.Err)}");
        Require(o.Escaped is null, $"{o.Escaped?.GetType().FullName} escaped RunAsync after {o.Elapsed.TotalMilliseconds:0} ms: {o.Escaped?.Message}");
        int code = o.Code!.Value;
        Require(code is 0 or 1 or 2 || (code == 130 && cancelledByTest), $"exit code {code}{(code == 130 ? " without a cancellation" : "")}; stderr: {Tail(o.Err)}");
        Require(!StackFrame().IsMatch(o.Err) && !ExceptionTypeName().IsMatch(o.Err), $"a .NET stack trace or exception type on stderr (exit {code}): {Tail(o.Err)}");
        // RunAsync's last-resort handler turns an exception of ours into one "internal error" line: still a bug.
        Require(!o.Err.Contains("internal error", StringComparison.Ordinal), $"an internal error (exit {code}): {Tail(o.Err)}");
        string command = c.Args.Length > 0 ? c.Args[0] : "";
        switch (code)
        {
            case 2:
                Require(o.Err.Contains("usage: saber", StringComparison.Ordinal), $"exit 2 without the usage on stderr: {Tail(o.Err)}");
                break;
            case 1:
                Require(o.Err.Contains($"saber {command}: ", StringComparison.Ordinal), $"exit 1 without a 'saber {command}: ' message: {Tail(o.Err)}");
                break;
            case 130:
                Require(o.Err.Contains("cancelled", StringComparison.Ordinal), $"exit 130 without saying so: {Tail(o.Err)}");
                break;
        }
        return $"{(command is "replay" or "generate" or "compare" or "demo" ? command : "other")} exit {code}";
    }

    private static string Tail(string s) => Show(s.Length > 600 ? "..." + s[^600..] : s);

    /// <summary>Stops drawing new runs once a property has used its time: a run that hangs costs a whole bound.</summary>
    private sealed class Budget(TimeSpan limit)
    {
        private readonly Stopwatch clock = Stopwatch.StartNew();
        public bool Spent => clock.Elapsed > limit;
    }

    [Test]
    public async Task ArgumentVectorsEndWithAnExitCodeAndAMessage()
    {
        Gen<CliCase> cases =
            from args in Gen.Frequency<string[]>((3, ReplayArgs()), (2, AnyArgs()))
            from cancel in Gen.Frequency<int>((12, Gen.Const(-1)), (1, Gen.Int[0, 30]))
            select new CliCase(args, cancel);
        var budget = new Budget(TimeSpan.FromSeconds(40));
        await Fuzz.SampleAsync(cases, async c =>
        {
            if (budget.Spent) return "skipped: time budget spent";
            return Judge(c, await RunInProcess(c), cancelledByTest: c.CancelAfterMs >= 0);
        }, cases: 1500, threads: 2, print: c => c.ToString());
    }

    [Test]
    public async Task ModelCommandsNearTheValidOnesEndWithAnExitCodeAndAMessage()
    {
        var budget = new Budget(TimeSpan.FromSeconds(30));
        await Fuzz.SampleAsync(ModelArgs().Select(a => new CliCase(a)), async c =>
        {
            if (budget.Spent) return "skipped: time budget spent";
            return Judge(c, await RunInProcess(c), cancelledByTest: false);
        }, cases: 30, threads: 2, print: c => c.ToString());
    }

    // ---- out of process: values that start work no cancellation token reaches ----

    /// <summary>The saber executable beside the tests, as a command line (the dotnet host running saber.dll where it can be found).</summary>
    private static (string File, string[] Prefix) SaberCommand()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "saber.dll");
        string host = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        if (File.Exists(host) && File.Exists(dll)) return (host, ["exec", dll]);
        return (Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "saber.exe" : "saber"), []);
    }

    private async Task<Outcome> RunProcess(CliCase c)
    {
        var (file, prefix) = SaberCommand();
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = scratch.Directory,
        };
        foreach (string a in prefix.Concat(c.Args)) start.ArgumentList.Add(a);
        start.Environment["DOTNET_GCHeapHardLimit"] = "0xC0000000";   // 3 GiB: a canvas too large fails as OutOfMemory, not by exhausting the machine
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        using var bound = new CancellationTokenSource(RunBound);
        try
        {
            await process.WaitForExitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            return new Outcome(null, "", await stderr, clock.Elapsed, null, true);
        }
        return new Outcome(process.ExitCode, await stdout, await stderr, clock.Elapsed, null, false);
    }

    [Test]
    public async Task ModelCommandsWithRunawayValuesEndWithinTheBound()
    {
        Gen<string[]> runaway = Gen.Frequency<string[]>(
            (3, Gen.OneOf("100000", "65536", "2147483647", "2147483640", "1000").Select(t => new[] { "--threads", t })),
            (1, Gen.Int[3, 200_000].Select(t => new[] { "--threads", t.ToString(CultureInfo.InvariantCulture) })),
            (1, Gen.Const(new[] { "--gen-length", "1073741824", "--block-length", "1073741824" })),
            (1, Gen.Const(new[] { "--gen-length", "300000000", "--block-length", "1" })),
            (2, Gen.OneOf("2147483647", "100000000", "1000000").Select(s => new[] { "--strategy", "low-confidence", "--steps", s })));
        Gen<CliCase> cases =
            from value in runaway
            from command in value[0] == "--strategy" ? Gen.Const("generate") : Gen.OneOf("generate", "compare", "demo")
            from prompt in Gen.OneOf("def f(x):", "x = [")
            select new CliCase(Build(command, "8", [], [prompt], value));
        var budget = new Budget(TimeSpan.FromSeconds(15));
        await Fuzz.SampleAsync(cases, async c =>
        {
            if (budget.Spent) return "skipped: time budget spent";
            return Judge(c, await RunProcess(c), cancelledByTest: false);
        }, cases: 10, threads: 2, print: c => c.ToString());
    }
}
