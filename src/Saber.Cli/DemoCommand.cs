using System.Globalization;
using Microsoft.Extensions.Logging;
using Saber.Denoisers;

namespace Saber.Cli;

/// <summary>
/// The main job on the shipped task models (models/sudoku when present, then models/addition, run by ONNX Runtime): on
/// each a held-out problem solved step by step, then the strategies compared on its held-out set; with <c>--model</c> a model without a held-out set (models/tiny) fills a
/// prompt step by step, then the strategies are compared on a few prompts. <c>--synthetic</c> runs the
/// synthetic denoiser instead: it "knows" one completion, favours planted wrong characters while the
/// text after them is still masked, and grows more confident as the canvas fills (what backtracking is for).
/// </summary>
internal static class DemoCommand
{
    public const string Usage =
        "usage: saber demo [--no-color] [--synthetic | --model DIR --threads N --gen-length G --block-length K]\n" +
        "Shows Saber filling the canvas step by step (green: committed this step, red: re-masked), then a comparison.\n" +
        "Without --model it runs each shipped task model present: Sudoku (models/sudoku, where the order of decoding decides\n" +
        "the answer) first, then addition (models/addition: sums of two 8-digit numbers). On each it solves a held-out problem\n" +
        "step by step, then low-confidence (S = G), threshold 0.9, Saber and Saber without backtracking are compared on the\n" +
        "first held-out problems (accuracy, NFE): 50, or 30 Sudoku grids. Any model directory with a test.jsonl task file runs\n" +
        "the same way (G: the file's gen_length).\n" +
        "With --model models/tiny (the code model: code-shaped text, not code) or any model without a test.jsonl, it\n" +
        "fills a Python prompt and compares Saber, low-confidence (S = G) and threshold 0.9 on a few prompts (NFE, wall time).\n" +
        "--synthetic uses a synthetic stand-in with planted early mistakes that only backtracking repairs.";

    internal const string Prompt = "def fibonacci(n):\n";
    internal const string Completion = "    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n";

    /// <summary>Wrong characters the model favours until the text after them appears: (index in the completion, character).</summary>
    internal static readonly (int Index, char Token)[] PlantedMistakes = [(10, '>'), (12, '1'), (26, 'm'), (40, 'f')];

    public static SyntheticTask Task()
    {
        var traps = PlantedMistakes.Select(t => new Trap(t.Index, CharVocabulary.Encode(t.Token))).ToArray();
        return new SyntheticTask(CharVocabulary.Size, CharVocabulary.MaskId, [CharVocabulary.Encode(Prompt)], [CharVocabulary.Encode(Completion)], [traps]);
    }

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string> { "--no-color", "--synthetic" });
        bool color = !args.Flag("--no-color") && stdout == Console.Out && !Console.IsOutputRedirected;
        if (args.Flag("--synthetic"))
        {
            args.RejectUnknown();
            return await SyntheticAsync(stdout, color, logging, cancellationToken);
        }
        // Without --model, every shipped task model present, the one where the order of decoding matters first.
        string[] directories = args.Text("--model") is string directory ? [directory] : DefaultTaskModels();
        Saber.Onnx.OnnxEngineOptions engine = ModelArguments.EngineOptions(args);
        int? genLength = args.Int("--gen-length"), blockLength = args.Int("--block-length");
        var (codeG, codeK) = ModelArguments.Lengths(args);
        args.RejectUnknown();
        for (int i = 0; i < directories.Length; i++)
        {
            if (i > 0) stdout.WriteLine();
            using var model = Saber.Onnx.LocalModel.Open(directories[i], engine, logging.CreateLogger<Saber.Onnx.OnnxDenoiser>());
            string taskSet = Path.Combine(Path.GetDirectoryName(model.Denoiser.ModelPath) ?? ".", "test.jsonl");
            TaskFile? task = File.Exists(taskSet) ? TaskFile.Read(taskSet) : null;
            if (task is null)
            {
                // The code model writes 64 positions in blocks of 32 by default.
                await CodeAsync(model, codeG, codeK, stdout, color, logging, cancellationToken);
                continue;
            }
            // A task model's answers fit its file's gen_length (else 16), in one block.
            int g = genLength ?? task.GenerationLength ?? 16;
            await TaskAsync(model, task, Path.GetFileName(taskSet), g, blockLength ?? g, stdout, color, logging, cancellationToken);
        }
        return 0;
    }

    /// <summary>Shipped task models in the demo's order (Sudoku, then addition): those whose model.onnx is present, else addition.</summary>
    internal static string[] DefaultTaskModels()
    {
        string[] present = new[] { "sudoku", "addition" }.Select(name => ModelArguments.ShippedModel(name))
            .Where(d => File.Exists(Path.Combine(d, "model.onnx"))).ToArray();
        // None present: addition's directory, so that the error names the missing model.
        return present.Length > 0 ? present : [ModelArguments.ShippedModel("addition")];
    }

    /// <summary>
    /// Problems the demo's comparison table decodes (the first of the held-out set): 50 answers of G = 16 (models/addition:
    /// the whole demo takes about 1.5 s on 2 cores), fewer where answers are longer, so that the table decodes at most
    /// 2,430 positions a strategy (30 Sudoku grids); <c>saber eval</c> runs the whole set.
    /// </summary>
    internal static int TableProblems(int g) => Math.Clamp(2430 / g, 1, 50);

    /// <summary>
    /// The task model (models/addition): one held-out problem solved step by step (the first of the set whose Saber decode
    /// re-masks a position, so that backtracking is on screen; the line says which), then the comparison on the first
    /// <see cref="TableProblems"/> problems.
    /// </summary>
    private static async Task TaskAsync(Saber.Onnx.LocalModel model, TaskFile taskFile, string setName, int g, int k, TextWriter stdout, bool color,
        ILoggerFactory logging, CancellationToken cancellationToken)
    {
        Saber.Onnx.IModelTokenizer tokenizer = model.Tokenizer;
        List<EvalProblem> problems = taskFile.Problems;
        var saber = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = new SaberStrategy(), Trace = true };
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        // The first candidate alone (it usually re-masks), then the rest as one batch (a batch decodes each row as it would
        // alone): where none re-masks (one-position blocks, say) the search costs two decodes, not 50 serial ones.
        const int Candidates = 50;
        int candidates = Math.Min(Candidates, problems.Count);
        int shown = await FirstRemaskingAsync(0, Math.Min(1, candidates)) ?? await FirstRemaskingAsync(1, candidates) ?? 0;
        EvalProblem problem = problems[shown];
        int[] prompt = tokenizer.Encode(problem.Prompt);
        stdout.WriteLine($"Saber on {model.Denoiser.ModelPath} (weights: {model.Denoiser.WeightsDescription ?? "not described"}).");
        stdout.WriteLine($"Held-out problem {shown + 1} of {setName} (the first of the first {Candidates} whose decode re-masks a position, " +
            $"if any): {problem.Prompt} with {g} positions to fill; the answer is {problem.Answer}.");
        stdout.WriteLine(Legend(color, tokenizer.MaskGlyph));
        int[] canvas = await ShowStepsAsync(sampler.DecodeStepsAsync(model.Denoiser, [prompt], saber with { Trace = false }, cancellationToken), prompt.Length, color,
            id => tokenizer.EndOfTextIds.Contains(id) ? EndOfText : tokenizer.Decode([id]), stdout);
        string text = tokenizer.Decode(canvas.AsSpan(prompt.Length));
        stdout.WriteLine($"decoded {text}: {(problem.Checker.Accepts(text) ? "right" : $"wrong (the answer is {problem.Answer})")}");
        if (problem.Checker is Checkers.SudokuChecker)
            stdout.WriteLine(SudokuGrid.Render(problem.Prompt, text, problem.Answer, color));
        stdout.WriteLine();

        List<EvalProblem> subset = problems.Take(TableProblems(g)).ToList();
        var rows = new List<EvalRow>();
        foreach (var (label, strategy) in Evaluation.Table(g).Where(r => r.Label is "low-confidence S=G" or "threshold 0.9" or "saber reference" or "saber no-backtracking"))
            rows.Add(await Evaluation.RunAsync(model, subset, label, new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = strategy },
                batch: 64, progress: null, cancellationToken));
        EvalCommand.WriteMarkdown(stdout, Path.GetFileName(Path.GetDirectoryName(model.Denoiser.ModelPath)) ?? "model", setName,
            subset.Count, g, k, 0f, 0, 64, rows);
        stdout.WriteLine("(saber eval runs every strategy on the whole set.)");

        // The index of the first problem in [from, to) whose Saber decode re-masks a position, or null.
        async Task<int?> FirstRemaskingAsync(int from, int to)
        {
            if (from >= to) return null;
            ReadOnlyMemory<int>[] batch = problems.Skip(from).Take(to - from).Select(p => (ReadOnlyMemory<int>)tokenizer.Encode(p.Prompt)).ToArray();
            DecodeResult result = await sampler.DecodeAsync(model.Denoiser, batch, saber, cancellationToken);
            int found = result.Sequences.ToList().FindIndex(r => r.Trace.Any(t => t.Remasked.Count > 0));
            return found < 0 ? null : from + found;
        }
    }

    /// <summary>The code model (models/tiny, or any model without a test set): a prompt filled step by step, then compare's table.</summary>
    private static async Task CodeAsync(Saber.Onnx.LocalModel model, int g, int k, TextWriter stdout, bool color, ILoggerFactory logging,
        CancellationToken cancellationToken)
    {
        Saber.Onnx.IModelTokenizer tokenizer = model.Tokenizer;
        int[] prompt = tokenizer.Encode(Prompt);
        stdout.WriteLine($"Saber on {model.Denoiser.ModelPath} (weights: {model.Denoiser.WeightsDescription ?? "not described"}): prompt {Show(Prompt)}, {g} positions to fill.");
        stdout.WriteLine(Legend(color, tokenizer.MaskGlyph));
        var saber = new DecodeOptions { GenerationLength = g, BlockLength = k, Strategy = new SaberStrategy() };
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        // End-of-text has a cell of its own, so that the line keeps one cell per position.
        int[] canvas = await ShowStepsAsync(sampler.DecodeStepsAsync(model.Denoiser, [prompt], saber, cancellationToken), prompt.Length, color,
            id => tokenizer.EndOfTextIds.Contains(id) ? EndOfText : tokenizer.Decode([id]), stdout);
        stdout.WriteLine(FinalText(tokenizer.Decode(canvas)));
        stdout.WriteLine();
        ReadOnlyMemory<int>[] comparePrompts = CompareCommand.DefaultPrompts.Select(p => (ReadOnlyMemory<int>)tokenizer.Encode(p)).ToArray();
        await CompareCommand.WriteTableAsync(model, comparePrompts, g, k, stdout, logging, cancellationToken);
    }

    private const string EndOfText = "\u2404";   // ␄

    /// <summary>Prints a line per step of a one-sequence decode; returns the final canvas.</summary>
    private static async Task<int[]> ShowStepsAsync(IAsyncEnumerable<DecodeStepUpdate> steps, int promptLength, bool color, Func<int, string> decode,
        TextWriter stdout)
    {
        int[] canvas = [];
        await foreach (DecodeStepUpdate update in steps)
        {
            stdout.WriteLine(StepLine(update, promptLength, color, decode));
            canvas = update.Sequences[0].Canvas;
        }
        return canvas;
    }

    /// <summary>The decoded text as it reads, prompt included, framed by rules.</summary>
    private static string FinalText(string text) => $"text (prompt + completion, up to the first end-of-text):\n----\n{text}\n----";

    private static string StepLine(DecodeStepUpdate update, int promptLength, bool color, Func<int, string> decode)
    {
        SequenceStep s = update.Sequences[0];
        string tau = s.Trace.Tau is double t ? t.ToString("F3", CultureInfo.InvariantCulture) : "-";
        return $"step {update.Step,3}  tau {tau}  +{s.Trace.Committed.Count,-2} -{s.Trace.Remasked.Count,-2} {Render(s, promptLength, color, decode)}";
    }

    private static async Task<int> SyntheticAsync(TextWriter stdout, bool color, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        SyntheticTask task = Task();
        int g = Completion.Length;
        var sampler = new CpuSampler(logging.CreateLogger<CpuSampler>());
        int[] prompt = task.Prompts[0];

        stdout.WriteLine($"Saber on a synthetic model: prompt {Show(Prompt)}, {g} positions to fill.");
        stdout.WriteLine(Legend(color, CharVocabulary.MaskGlyph.ToString()));
        var saber = new DecodeOptions { GenerationLength = g, Strategy = new SaberStrategy() };
        int[] canvas = await ShowStepsAsync(sampler.DecodeStepsAsync(new SyntheticDenoiser(task), [prompt], saber, cancellationToken), prompt.Length, color,
            id => CharVocabulary.Decode(id).ToString(), stdout);
        stdout.WriteLine(FinalText(CharVocabulary.Decode(canvas)));

        stdout.WriteLine();
        stdout.WriteLine($"{"strategy",-34} {"NFE",5} {"tokens recovered",17} {"planted mistakes left",22}");
        DecodingStrategy[] strategies = [new SaberStrategy(), new SaberStrategy(Backtracking: false), new LowConfidenceStrategy(g), new ThresholdStrategy(0.9f)];
        foreach (DecodingStrategy strategy in strategies)
        {
            var options = new DecodeOptions { GenerationLength = g, Strategy = strategy };
            SequenceResult r = (await sampler.DecodeAsync(new SyntheticDenoiser(task), [prompt], options, cancellationToken)).Sequences[0];
            int recovered = g - task.Mistakes(0, r.Tokens);
            stdout.WriteLine($"{StrategyArguments.Describe(strategy),-34} {r.Nfe,5} {$"{recovered}/{g}",17} {$"{task.TrapsLeft(0, r.Tokens)}/{PlantedMistakes.Length}",22}");
        }
        return 0;
    }

    private static string Legend(bool color, string maskGlyph) =>
        (color ? "(green: committed this step, red: re-masked this step" : "([x]: committed this step, {x}: re-masked this step") +
        $", {maskGlyph} : mask, ⏎ : newline, ⇥ : tab, {EndOfText} : end of text)";

    /// <summary>One cell per character in a step line: newline and tab drawn as symbols.</summary>
    private static string Show(string text) => text.Replace("\n", "⏎").Replace("\t", "⇥");

    private static string Render(SequenceStep step, int promptLength, bool color, Func<int, string> decode)
    {
        var committed = step.Trace.Committed.Select(c => c.Position).ToHashSet();
        var remasked = step.Trace.Remasked.Select(r => r.Position).ToHashSet();
        var line = new System.Text.StringBuilder();
        for (int pos = promptLength; pos < step.Canvas.Length; pos++)
        {
            string ch = Show(decode(step.Canvas[pos]));
            if (remasked.Contains(pos))
                line.Append(color ? $"\e[41m{ch}\e[0m" : $"{{{ch}}}");
            else if (committed.Contains(pos))
                line.Append(color ? $"\e[42m{ch}\e[0m" : $"[{ch}]");
            else
                line.Append(ch);
        }
        return line.ToString();
    }
}
