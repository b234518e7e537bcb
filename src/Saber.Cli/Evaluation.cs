using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Saber.Onnx;
using Saber.Service;

namespace Saber.Cli;

/// <summary>One strategy's row of the table (the <c>--json</c> field names are those of the format).</summary>
/// <param name="Cache">The cache policy every decode of the row ran with (<c>none</c>, <c>prefix</c>, <c>dual</c>).</param>
/// <param name="MeanForwardFlops">Model FLOPs computed per problem, on average; null when the model does not report FLOPs.</param>
/// <param name="TotalForwardFlops">Model FLOPs computed for the whole set; null when the model does not report FLOPs.</param>
/// <param name="ByDifficulty">The accuracy of each difficulty, in the order the difficulties first appear among the problems;
/// null when no problem has one.</param>
/// <param name="Remasks">Re-masks over the set (<see cref="RemaskStatistics.Remasks"/> summed).</param>
/// <param name="RemasksChanged">Of those, re-masks whose position came back as a different token.</param>
/// <param name="PositionsRemaskedTwice">Positions re-masked more than once, over the set.</param>
internal sealed record EvalRow(string Strategy, string? Variant, string Label, int Problems, int Correct, double MeanNfe, int MaxNfe,
    double WallMs, double TokensPerSecond, string Cache = "none", double? MeanForwardFlops = null, long? TotalForwardFlops = null,
    IReadOnlyList<DifficultyScore>? ByDifficulty = null, long Remasks = 0, long RemasksChanged = 0, long PositionsRemaskedTwice = 0)
{
    public double Accuracy => Problems == 0 ? 0 : (double)Correct / Problems;

    /// <summary>The share of re-masks whose token changed; null without re-masks.</summary>
    public double? RemasksChangedShare => Remasks == 0 ? null : (double)RemasksChanged / Remasks;
}

/// <summary>The problems of one difficulty in a row, and how many of them were right.</summary>
internal sealed record DifficultyScore(string Difficulty, int Correct, int Problems)
{
    /// <summary>Correct / problems.</summary>
    public double Accuracy => Problems == 0 ? 0 : (double)Correct / Problems;
}

/// <summary>
/// Evaluation of a model on a held-out task file (each problem scored by its checker), strategy by strategy: the rows of
/// the paper's Table 1 and its ablations in miniature (<c>saber eval</c>, the demo's comparison, the regression guard).
/// </summary>
internal static class Evaluation
{
    /// <summary>The rows: the baselines, then Saber and its ablations (n = 2, mu = 8 throughout).</summary>
    public static IReadOnlyList<(string Label, DecodingStrategy Strategy)> Table(int g) =>
    [
        ("low-confidence S=G", new LowConfidenceStrategy(g)),
        ("low-confidence S=G/2", new LowConfidenceStrategy(Math.Max(1, g / 2))),
        ("threshold 0.9", new ThresholdStrategy(0.9f)),
        ("factor 1.0", new FactorStrategy(1.0f)),
        ("saber reference", new SaberStrategy()),
        ("saber paper", new SaberStrategy(Variant: SaberVariant.Paper)),
        ("saber no-backtracking", new SaberStrategy(Backtracking: false)),
        ("saber fixed-threshold 0.9", new SaberStrategy(FixedThreshold: 0.9f)),
    ];

    /// <summary>The strategy's name and variant as the JSON rows give them.</summary>
    public static (string Strategy, string? Variant) Name(DecodingStrategy strategy) => strategy switch
    {
        SaberStrategy s => ("saber", s.Variant.ToString().ToLowerInvariant()),
        LowConfidenceStrategy => ("low-confidence", null),
        ThresholdStrategy => ("threshold", null),
        FactorStrategy => ("factor", null),
        _ => (strategy.GetType().Name, null),
    };

    /// <summary>
    /// Decodes every problem with one strategy through a <see cref="SaberEngine"/> (continuous batching, at most
    /// <paramref name="batch"/> problems per forward pass) and scores the text up to the first end-of-text with the problem's checker.
    /// Problem <c>i</c> (0-based, in set order) decodes with seed <c>options.Seed + i</c>, and the engine keys a request's
    /// draws by its own steps, so every figure but the wall time is independent of the batch size and of <c>--limit</c>.
    /// <paramref name="progress"/> gets the number of problems done.
    /// </summary>
    public static Task<EvalRow> RunAsync(LocalModel model, IReadOnlyList<EvalProblem> problems, string label, DecodeOptions options, int batch,
        IProgress<int>? progress, CancellationToken cancellationToken) =>
        RunAsync(model.Denoiser, model.Tokenizer, problems, label, options, batch, progress, cancellationToken);

    /// <summary>As <see cref="RunAsync(LocalModel, IReadOnlyList{EvalProblem}, string, DecodeOptions, int, IProgress{int}?, CancellationToken)"/>, on any denoiser.</summary>
    public static async Task<EvalRow> RunAsync(IDenoiser denoiser, IModelTokenizer tokenizer, IReadOnlyList<EvalProblem> problems, string label,
        DecodeOptions options, int batch, IProgress<int>? progress, CancellationToken cancellationToken)
    {
        int[][] prompts = problems.Select(p => tokenizer.Encode(p.Prompt)).ToArray();
        await using var engine = new SaberEngine(denoiser, new SaberEngineOptions { MaxBatchSize = batch, Capacity = problems.Count });
        int done = 0;
        var clock = Stopwatch.StartNew();
        SequenceResult[] results = await Task.WhenAll(prompts.Select(async (prompt, i) =>
        {
            SequenceResult result = await engine.DecodeAsync(prompt, options with { Seed = unchecked(options.Seed + (ulong)i) }, cancellationToken);
            progress?.Report(Interlocked.Increment(ref done));
            return result;
        }));
        double seconds = clock.Elapsed.TotalSeconds;
        bool[] right = results.Select((s, i) => IsRight(problems[i], tokenizer.Decode(s.Tokens))).ToArray();
        int correct = right.Count(r => r);
        var (strategy, variant) = Name(options.Strategy);
        long? flops = results.Any(s => s.ForwardFlops is null) ? null : results.Sum(s => s.ForwardFlops!.Value);
        // The engine counts re-masks for every request.
        RemaskStatistics[] remasks = results.Select(s => s.RemaskStatistics!).ToArray();
        return new EvalRow(strategy, variant, label, problems.Count, correct, results.Average(s => (double)s.Nfe), results.Max(s => s.Nfe),
            seconds * 1000, seconds > 0 ? (double)options.GenerationLength * problems.Count / seconds : 0,
            CacheOptions.Name(options.Cache.Policy), (double?)flops / problems.Count, flops, ByDifficulty(problems, right),
            remasks.Sum(r => (long)r.Remasks), remasks.Sum(r => (long)r.RemasksChanged), remasks.Sum(r => (long)r.PositionsRemaskedTwice));
    }

    /// <summary>Whether the checker accepts the text; a regex that runs out of time is an error naming the problem's line.</summary>
    private static bool IsRight(EvalProblem problem, string text)
    {
        try
        {
            return problem.Checker.Accepts(text);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new InvalidDataException($"{problem.Location}: the regex \"{problem.Answer}\" ran longer than {e.MatchTimeout.TotalSeconds} s " +
                $"on the decoded text {JsonSerializer.Serialize(text)}; simplify the pattern.", e);
        }
    }

    /// <summary>The score per difficulty, in order of first appearance; problems without one count only in the row's accuracy.</summary>
    private static List<DifficultyScore>? ByDifficulty(IReadOnlyList<EvalProblem> problems, bool[] right)
    {
        var order = new List<string>();
        var counts = new Dictionary<string, (int Correct, int Problems)>(StringComparer.Ordinal);
        for (int i = 0; i < problems.Count; i++)
        {
            if (problems[i].Difficulty is not string difficulty) continue;
            if (!counts.TryGetValue(difficulty, out var count)) order.Add(difficulty);
            counts[difficulty] = (count.Correct + (right[i] ? 1 : 0), count.Problems + 1);
        }
        return order.Count == 0 ? null : order.Select(d => new DifficultyScore(d, counts[d].Correct, counts[d].Problems)).ToList();
    }
}
