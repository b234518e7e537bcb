using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Saber.Cli.Checkers;
using Saber.Onnx;

namespace Saber.Cli;

/// <summary><c>saber eval</c>: a held-out task file through every strategy; accuracy (overall and per difficulty), NFE, wall time, tokens/s.</summary>
internal static class EvalCommand
{
    public const string Usage =
        "usage: saber eval [--model DIR] [--tasks FILE] [--limit N] [--gen-length G] [--block-length K] [--batch B]\n" +
        "                  [--temperature T --seed S] [--threads N] [--cache none|prefix|dual [--cache-refresh-every R]\n" +
        "                  [--cache-on-remask positions|block] [--max-cache-bytes N]] [--json] [--json-file FILE] [--no-progress]\n" +
        "Decodes each problem of the task file with every strategy (low-confidence S=G and S=G/2, Fast-dLLM's threshold 0.9 and\n" +
        "factor rule (F = 1), Saber reference and paper, Saber without backtracking, Saber with a fixed threshold 0.9) and prints, per strategy,\n" +
        "accuracy (each problem's checker on the decoded text up to the first end-of-text), accuracy per difficulty where the file\n" +
        "gives difficulties, mean and max NFE, forward FLOPs (mean per problem and total; - or null when the model does not report\n" +
        "them), wall time, generated positions per second and Saber's re-masks over the set (re-masks, those whose position\n" +
        "came back as a different token, positions re-masked more than once); a Markdown table, or --json.\n" +
        "  --model DIR        default: the shipped task model models/addition (models/addition/README.md)\n" +
        "  --tasks FILE       the task file (default: test.jsonl in the model directory); --set FILE is the same option\n" +
        "                     JSON lines, blank lines skipped, one problem per line:\n" +
        "                     {\"prompt\": \"...\", \"answer\": \"...\", \"checker\": \"exact\", \"difficulty\": \"easy\", \"gen_length\": 16}\n" +
        "                     prompt, answer: strings, required; checker (default exact): exact (the text equals answer),\n" +
        "                     regex (answer is a .NET regular expression the whole text must match, 1 s per match at most),\n" +
        "                     sudoku (prompt: 81 cells '1'-'9' or '.', then '='; the text is a valid solved grid keeping the givens);\n" +
        "                     difficulty (optional string): accuracy is also given per difficulty, in order of first appearance;\n" +
        "                     gen_length (optional, the same on every line that gives it): the default of --gen-length\n" +
        "  --limit N          the first N problems only\n" +
        "  --gen-length G     positions to generate (default: the file's gen_length, else 16); --block-length K (default G: one block)\n" +
        "  --batch B          problems per forward pass (default 64; continuous batching: the figures but wall time do not depend on it)\n" +
        "  --temperature T    default 0 (greedy); with T > 0, problem i draws with seed S + i (--seed S, default 0): the same seed, the same table\n" +
        "  --threads N        ONNX Runtime intra-op threads (default 0: one per core)\n" +
        StrategyArguments.CacheUsage + "\n" +
        "                     (every strategy decodes with the cache)\n" +
        "  --max-cache-bytes N  the most bytes the live key/value caches may hold (default 4 GiB)\n" +
        "  --json             the table as JSON on stdout instead of Markdown\n" +
        "  --json-file FILE   also write the JSON to FILE (the Markdown stays on stdout): both forms from one run; FILE is\n" +
        "                     written whole or not at all (a temporary file beside it, then renamed)\n" +
        "Progress goes to stderr (--no-progress: none).";

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, ILoggerFactory logging, CancellationToken cancellationToken)
    {
        var args = new Arguments(argv, new HashSet<string> { "--json", "--no-progress" });
        bool json = args.Flag("--json");
        bool showProgress = !args.Flag("--no-progress");
        string? jsonFile = args.Text("--json-file");
        if (jsonFile is not null && json) throw new UsageException("--json-file writes the JSON beside the Markdown; with --json, redirect stdout instead.");
        string? jsonDirectory = jsonFile is null ? null : Path.GetDirectoryName(Path.GetFullPath(jsonFile));
        if (jsonDirectory is not null && !Directory.Exists(jsonDirectory))
            throw new UsageException($"--json-file {jsonFile}: the directory {jsonDirectory} does not exist.");
        int? limit = args.Int("--limit");
        if (limit is < 1) throw new UsageException($"--limit must be >= 1; got {limit}.");
        int? genLength = args.Int("--gen-length");
        int? blockLength = args.Int("--block-length");
        int batch = args.Int("--batch") ?? 64;
        if (batch < 1) throw new UsageException($"--batch must be >= 1; got {batch}.");
        var (temperature, seed) = StrategyArguments.Sampling(args);
        CacheOptions cache = StrategyArguments.Cache(args);
        // --set is the option's first name; scripts that use it keep working.
        string? tasks = args.Text("--tasks"), set = args.Text("--set");
        if (tasks is not null && set is not null) throw new UsageException("--tasks and --set name the same file; give one.");
        string? tasksPath = tasks ?? set;
        using LocalModel model = ModelArguments.Open(args, logging, shipped: "addition");
        args.RejectUnknown();

        string directory = Path.GetDirectoryName(model.Denoiser.ModelPath) ?? ".";
        tasksPath ??= Path.Combine(directory, "test.jsonl");
        TaskFile taskFile = TaskFile.Read(tasksPath);
        List<EvalProblem> problems = taskFile.Problems;
        if (limit is int n && n < problems.Count) problems = problems[..n];
        int g = genLength ?? taskFile.GenerationLength ?? 16;
        int k = blockLength ?? g;

        IReadOnlyList<(string Label, DecodingStrategy Strategy)> table = Evaluation.Table(g);
        DecodeOptions Options(DecodingStrategy strategy) =>
            new() { GenerationLength = g, BlockLength = k, Strategy = strategy, Temperature = temperature, Seed = seed ?? 0, Cache = cache };
        // Every row's settings and every prompt are checked before anything is decoded.
        ReadOnlyMemory<int>[] encoded = ModelArguments.Encode(model.Tokenizer, problems.Select(p => p.Prompt).ToArray(), "eval", stderr);
        // Prompts may differ in length (the engine batches them ragged); the check below sees only the first batch, so
        // each prompt's canvas is checked here, by its line.
        for (int i = 0; i < encoded.Length; i++)
            if (model.Denoiser.MaxSequenceLength is int max && (long)encoded[i].Length + g > max)
                throw new InvalidDataException($"{problems[i].Location}: the prompt ({encoded[i].Length} tokens) plus G = {g} makes a canvas of " +
                    $"{(long)encoded[i].Length + g} positions; the model takes at most {max}.");
        WarnAboutLongAnswers(model.Tokenizer, problems, g, stderr);
        // DecodeStepsAsync checks at the call (and, with a cache, that the model runs one that fits) and holds nothing until enumerated.
        var check = new CpuSampler();
        bool warned = false;
        foreach (var (_, strategy) in table)
        {
            DecodeOptions options = Options(strategy);
            _ = check.DecodeStepsAsync(model.Denoiser, encoded.Take(batch).ToArray(), options, cancellationToken);
            if (warned) continue;   // one warning is enough
            StrategyArguments.WarnAboutSeed(options, seed is not null, "eval", stderr);
            warned = seed is not null;
        }

        // One untimed forward pass first, so that no row pays for the session's warm-up.
        await model.Denoiser.ForwardAsync(new DenoiseRequest(0, [0],
            [ModelArguments.InitialCanvases([encoded[0]], model.Tokenizer.MaskId, g)[0]]), cancellationToken);
        var rows = new List<EvalRow>();
        var bar = new ProgressBar(stderr, showProgress, table.Count, problems.Count);
        foreach (var (label, strategy) in table)
        {
            bar.Start(rows.Count, label);
            rows.Add(await Evaluation.RunAsync(model, problems, label, Options(strategy), batch, bar, cancellationToken));
            bar.Finish(rows[^1]);
        }

        string name = Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar));
        if (json)
            WriteJson(stdout, name, problems.Count, g, k, temperature, seed ?? 0, cache, rows);
        else
            WriteMarkdown(stdout, name, Path.GetFileName(tasksPath), problems.Count, g, k, temperature, seed ?? 0, batch, rows, cache);
        if (jsonFile is not null)
        {
            string temporary = Path.Combine(jsonDirectory!, $".{Path.GetFileName(jsonFile)}.{Environment.ProcessId}.partial");
            try
            {
                using (var file = new StreamWriter(temporary))
                    WriteJson(file, name, problems.Count, g, k, temperature, seed ?? 0, cache, rows);
                File.Move(temporary, jsonFile, overwrite: true);
            }
            finally
            {
                File.Delete(temporary);
            }
        }
        return 0;
    }

    /// <summary>
    /// A warning when answers (exact and sudoku: the text to decode) need more positions than G: those problems cannot be
    /// right, which is what a Sudoku file read with the default G = 16 would otherwise show as a silent 0.
    /// </summary>
    private static void WarnAboutLongAnswers(IModelTokenizer tokenizer, List<EvalProblem> problems, int g, TextWriter stderr)
    {
        var tooLong = problems.Where(p => p.Checker is not RegexChecker)
            .Select(p => (Problem: p, Tokens: tokenizer.Encode(p.Answer, out _).Length))
            .Where(a => a.Tokens > g).ToList();
        if (tooLong.Count == 0) return;
        stderr.WriteLine($"saber eval: warning: {tooLong.Count} of {problems.Count} problems have an answer longer than G = {g} positions " +
            $"(the first: {tooLong[0].Problem.Location}, {tooLong[0].Tokens} tokens) and cannot be right; --gen-length or the task file's gen_length sets G.");
    }

    private static void WriteJson(TextWriter stdout, string model, int problems, int g, int k, float temperature, ulong seed, CacheOptions cache,
        List<EvalRow> rows)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("model", model);
            json.WriteNumber("problems", problems);
            json.WriteNumber("gen_length", g);
            json.WriteNumber("block_length", k);
            json.WriteNumber("temperature", temperature);
            json.WriteNumber("seed", seed);
            json.WriteString("cache", CacheOptions.Name(cache.Policy));
            if (cache.RefreshEvery is int r) json.WriteNumber("cache_refresh_every", r);
            else json.WriteNull("cache_refresh_every");
            json.WriteString("cache_on_remask", CacheOptions.Name(cache.OnRemask));
            json.WriteStartArray("rows");
            foreach (EvalRow row in rows)
            {
                json.WriteStartObject();
                json.WriteString("strategy", row.Strategy);
                if (row.Variant is null) json.WriteNull("variant");
                else json.WriteString("variant", row.Variant);
                json.WriteString("label", row.Label);
                json.WriteNumber("accuracy", row.Accuracy);
                json.WriteNumber("correct", row.Correct);
                WriteAccuracyByDifficulty(json, row);
                json.WriteNumber("mean_nfe", row.MeanNfe);
                json.WriteNumber("max_nfe", row.MaxNfe);
                json.WriteString("cache", row.Cache);
                if (row.MeanForwardFlops is double mean) json.WriteNumber("mean_forward_flops", Math.Round(mean));
                else json.WriteNull("mean_forward_flops");
                if (row.TotalForwardFlops is long total) json.WriteNumber("forward_flops", total);
                else json.WriteNull("forward_flops");
                json.WriteNumber("remasks", row.Remasks);
                json.WriteNumber("remasks_changed", row.RemasksChanged);
                json.WriteNumber("positions_remasked_twice", row.PositionsRemaskedTwice);
                if (row.RemasksChangedShare is double share) json.WriteNumber("remasks_changed_share", share);
                else json.WriteNull("remasks_changed_share");
                json.WriteNumber("wall_ms", Math.Round(row.WallMs, 1));
                json.WriteNumber("tokens_per_s", Math.Round(row.TokensPerSecond, 1));
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    /// <summary><c>"accuracy_by_difficulty": {"easy": {"accuracy", "correct", "problems"}, ...}</c>, or null when no problem has a difficulty.</summary>
    private static void WriteAccuracyByDifficulty(Utf8JsonWriter json, EvalRow row)
    {
        if (row.ByDifficulty is null)
        {
            json.WriteNull("accuracy_by_difficulty");
            return;
        }
        json.WriteStartObject("accuracy_by_difficulty");
        foreach (DifficultyScore score in row.ByDifficulty)
        {
            json.WriteStartObject(score.Difficulty);
            json.WriteNumber("accuracy", score.Accuracy);
            json.WriteNumber("correct", score.Correct);
            json.WriteNumber("problems", score.Problems);
            json.WriteEndObject();
        }
        json.WriteEndObject();
    }

    internal static void WriteMarkdown(TextWriter stdout, string model, string set, int problems, int g, int k, float temperature, ulong seed, int batch,
        List<EvalRow> rows, CacheOptions? cache = null)
    {
        var inv = CultureInfo.InvariantCulture;
        string sampling = temperature > 0 ? $"T = {temperature.ToString(inv)}, seed {seed}" : "greedy (T = 0)";
        stdout.WriteLine($"saber eval: {model}, {problems} problems ({set}), G = {g}, K = {k}, {sampling}, " +
            $"{StrategyArguments.DescribeCache(cache ?? CacheOptions.None)}, batch {batch}, CPU (ONNX Runtime)");
        stdout.WriteLine();
        // Every row scores the same problems, so the first row's difficulties are every row's.
        IReadOnlyList<DifficultyScore> difficulties = rows[0].ByDifficulty ?? [];
        string difficultyHeader = string.Concat(difficulties.Select(d => $" {d.Difficulty.Replace("|", "\\|", StringComparison.Ordinal)} |"));
        stdout.WriteLine($"| strategy | accuracy |{difficultyHeader} mean NFE | max NFE | NFE vs low-confidence S=G | cache | FLOPs/problem | FLOPs | wall ms | tokens/s | re-masks | changed | re-masked twice |");
        stdout.WriteLine($"|---|---:|{string.Concat(difficulties.Select(_ => "---:|"))}---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        double baseline = rows[0].MeanNfe;
        static string Score(double accuracy, int correct, int problems) => $"{accuracy.ToString("F3", CultureInfo.InvariantCulture)} ({correct}/{problems})";
        foreach (EvalRow row in rows)
            stdout.WriteLine($"| {row.Label} | {Score(row.Accuracy, row.Correct, row.Problems)} |" +
                string.Concat((row.ByDifficulty ?? []).Select(d => $" {Score(d.Accuracy, d.Correct, d.Problems)} |")) +
                $" {row.MeanNfe.ToString("F2", inv)} | {row.MaxNfe} | " +
                $"{(row.MeanNfe / baseline).ToString("F2", inv)}x | {row.Cache} | {StrategyArguments.Flops(row.MeanForwardFlops)} | " +
                $"{StrategyArguments.Flops(row.TotalForwardFlops)} | {row.WallMs.ToString("F0", inv)} | {row.TokensPerSecond.ToString("F0", inv)} | " +
                $"{row.Remasks} | {Changed(row)} | {row.PositionsRemaskedTwice} |");
    }

    /// <summary>Re-masks whose token changed, with their share of the re-masks ("0" without re-masks).</summary>
    private static string Changed(EvalRow row) =>
        row.RemasksChangedShare is double share ? $"{row.RemasksChanged} ({(share * 100).ToString("F1", CultureInfo.InvariantCulture)}%)" : "0";

    /// <summary>
    /// Progress on stderr: a bar redrawn in place on a terminal; where stderr is redirected (a log, CI), one line per
    /// finished row instead of carriage returns.
    /// </summary>
    private sealed class ProgressBar(TextWriter stderr, bool enabled, int rows, int problems) : IProgress<int>
    {
        private readonly bool interactive = enabled && stderr == Console.Error && !Console.IsErrorRedirected;
        private int row;
        private string label = "";

        public void Start(int index, string name)
        {
            row = index;
            label = name;
            Report(0);
        }

        public void Report(int done)
        {
            if (!interactive) return;
            const int Width = 30;
            double fraction = (row + (double)done / problems) / rows;
            int filled = (int)(fraction * Width);
            stderr.Write($"\r[{new string('#', filled)}{new string('.', Width - filled)}] {row + 1}/{rows} {label,-28} {done}/{problems}   ");
        }

        public void Finish(EvalRow result)
        {
            if (!enabled) return;
            if (interactive && row + 1 < rows) return;
            if (interactive) stderr.WriteLine();
            else stderr.WriteLine($"saber eval: [{row + 1}/{rows}] {result.Label}: accuracy {result.Accuracy.ToString("F3", CultureInfo.InvariantCulture)}, " +
                $"mean NFE {result.MeanNfe.ToString("F2", CultureInfo.InvariantCulture)}");
        }
    }
}
