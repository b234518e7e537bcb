namespace Saber.Onnx.Tests;

/// <summary>
/// End to end on the shipped task models (tools/train_task_model.py): a regression guard for the samplers on real
/// trained models. On a fixed subset of each held-out set (its first problems, greedy, one block) each strategy's
/// exact-match accuracy and mean NFE must stay within the model's band around the figures recorded when the model was
/// made (its bench/results/eval-*.md, the same subset). The bands allow other BLAS builds or CPUs to move a near-tie or
/// two; a change to a strategy's logic moves these figures far more.
/// <list type="bullet">
/// <item>models/addition: the first 100 problems, G = 16; accuracy within 0.02 (2 problems), mean NFE within 0.25;
/// bench/results/eval-addition-2026-12-01.md.</item>
/// <item>models/sudoku, where the order of decoding decides the answer: the first 30 puzzles (10 easy, 10 medium,
/// 10 hard, interleaved), G = 81; accuracy within 0.07 (2 puzzles), mean NFE within 0.5;
/// bench/results/eval-sudoku-2026-12-07.md. Six of eval's eight strategies, to keep the README's test command short
/// (about 17 s on 2 cores): low-confidence at S = G/2 and Saber's paper variant are the same code as S = G and the
/// reference on other parameters, and the addition guard holds both.</item>
/// </list>
/// </summary>
public class TaskModelTests
{
    /// <summary>A shipped model's guard: its first problems, G and bands.</summary>
    public sealed record Guard(string Model, int Problems, int G, double AccuracyBand, double NfeBand);

    private static readonly Guard Addition = new("addition", 100, 16, 0.02, 0.25);
    private static readonly Guard Sudoku = new("sudoku", 30, 81, 0.07, 0.5);

    private static IEnumerable<TestCaseData> Recorded()
    {
        // label, strategy, accuracy, mean NFE: the figures of the model's eval file on the guard's subset.
        int g = Addition.G;
        yield return Case(Addition, "low-confidence S=G", new LowConfidenceStrategy(g), 1.00, 16.00);
        yield return Case(Addition, "low-confidence S=G/2", new LowConfidenceStrategy(g / 2), 1.00, 8.00);
        yield return Case(Addition, "threshold 0.9", new ThresholdStrategy(0.9f), 1.00, 1.00);
        yield return Case(Addition, "factor 1.0", new FactorStrategy(1.0f), 1.00, 1.00);
        yield return Case(Addition, "saber reference", new SaberStrategy(), 1.00, 15.00);
        yield return Case(Addition, "saber paper", new SaberStrategy(Variant: SaberVariant.Paper), 1.00, 14.00);
        yield return Case(Addition, "saber no-backtracking", new SaberStrategy(Backtracking: false), 1.00, 8.00);
        yield return Case(Addition, "saber fixed-threshold 0.9", new SaberStrategy(FixedThreshold: 0.9f), 1.00, 1.00);

        yield return Case(Sudoku, "low-confidence S=G", new LowConfidenceStrategy(Sudoku.G), 0.600, 81.00);
        yield return Case(Sudoku, "threshold 0.9", new ThresholdStrategy(0.9f), 0.267, 9.10);
        yield return Case(Sudoku, "factor 1.0", new FactorStrategy(1.0f), 0.167, 6.70);
        yield return Case(Sudoku, "saber reference", new SaberStrategy(), 0.667, 65.77);
        yield return Case(Sudoku, "saber no-backtracking", new SaberStrategy(Backtracking: false), 0.633, 36.03);
        yield return Case(Sudoku, "saber fixed-threshold 0.9", new SaberStrategy(FixedThreshold: 0.9f), 0.300, 9.80);

        static TestCaseData Case(Guard guard, string label, DecodingStrategy strategy, double accuracy, double nfe) =>
            new TestCaseData(guard, strategy, accuracy, nfe).SetArgDisplayNames(guard.Model, label);
    }

    [TestCaseSource(nameof(Recorded))]
    public async Task AccuracyAndNfeStayWithinTheirBands(Guard guard, DecodingStrategy strategy, double accuracy, double meanNfe)
    {
        var (gotAccuracy, gotNfe) = await TaskModelGuard.EvaluateAsync(guard.Model, guard.Problems, guard.G, strategy);
        TestContext.Out.WriteLine($"accuracy {gotAccuracy:F3} (recorded {accuracy:F3}), mean NFE {gotNfe:F3} (recorded {meanNfe:F3})");
        Assert.That(gotAccuracy, Is.EqualTo(accuracy).Within(guard.AccuracyBand), $"exact-match accuracy on the first {guard.Problems} held-out problems of models/{guard.Model}");
        Assert.That(gotNfe, Is.EqualTo(meanNfe).Within(guard.NfeBand), $"mean NFE on the first {guard.Problems} held-out problems of models/{guard.Model}");
    }

    [TestCase("addition", "addition task: ", 1000)]
    [TestCase("sudoku", "sudoku task: 6000 steps ", 300)]
    public void TheShippedTaskModelSaysHowItWasTrained(string name, string weightsPrefix, int problems)
    {
        using LocalModel model = LocalModel.Open(TaskModelGuard.Directory(name));
        Assert.That(model.Denoiser.WeightsDescription, Does.StartWith(weightsPrefix), $"metadata 'weights' of models/{name}/model.onnx");
        Assert.That(File.ReadLines(Path.Combine(TaskModelGuard.Directory(name), "test.jsonl")).Count(), Is.EqualTo(problems));
    }
}
