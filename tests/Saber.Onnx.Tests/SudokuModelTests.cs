namespace Saber.Onnx.Tests;

/// <summary>
/// End to end on the shipped Sudoku model models/sudoku (tools/train_task_model.py --task sudoku): a regression guard for
/// the samplers on a model where the order of decoding decides the answer. On the first <see cref="Problems"/> puzzles
/// of its held-out set (greedy, G = 81, one block; the set interleaves easy, medium and hard) each strategy's
/// exact-match accuracy and mean NFE must stay within the band stated here around the figures recorded when the model
/// was made (bench/results/eval-sudoku-2026-12-07.md, the same subset). The bands allow other BLAS builds or CPUs to move a
/// near-tie or two; a change to a strategy's logic moves these figures far more.
/// </summary>
public class SudokuModelTests
{
    private const int Problems = 30, G = 81;

    /// <summary>Accuracy may move by this much (2 puzzles of 30) and mean NFE by this much.</summary>
    private const double AccuracyBand = 0.07, NfeBand = 0.5;

    private const string Model = "sudoku";

    private static IEnumerable<TestCaseData> Recorded()
    {
        // label, strategy, accuracy, mean NFE: the figures of bench/results/eval-sudoku-2026-12-07.md (first 30 puzzles).
        // Six of eval's eight strategies, to keep the README's test command short (about 17 s on 2 cores): low-confidence
        // at S = G/2 and Saber's paper variant are the same code as S = G and the reference on other parameters, and
        // TaskModelTests guards both on the addition model.
        yield return Case("low-confidence S=G", new LowConfidenceStrategy(G), 0.600, 81.00);
        yield return Case("threshold 0.9", new ThresholdStrategy(0.9f), 0.267, 9.10);
        yield return Case("factor 1.0", new FactorStrategy(1.0f), 0.167, 6.70);
        yield return Case("saber reference", new SaberStrategy(), 0.667, 65.77);
        yield return Case("saber no-backtracking", new SaberStrategy(Backtracking: false), 0.633, 36.03);
        yield return Case("saber fixed-threshold 0.9", new SaberStrategy(FixedThreshold: 0.9f), 0.300, 9.80);

        static TestCaseData Case(string label, DecodingStrategy strategy, double accuracy, double nfe) =>
            new TestCaseData(strategy, accuracy, nfe).SetArgDisplayNames(label);
    }

    [TestCaseSource(nameof(Recorded))]
    public async Task AccuracyAndNfeStayWithinTheirBands(DecodingStrategy strategy, double accuracy, double meanNfe)
    {
        var (gotAccuracy, gotNfe) = await TaskModelGuard.EvaluateAsync(Model, Problems, G, strategy);
        TestContext.Out.WriteLine($"accuracy {gotAccuracy:F3} (recorded {accuracy:F3}), mean NFE {gotNfe:F3} (recorded {meanNfe:F3})");
        Assert.That(gotAccuracy, Is.EqualTo(accuracy).Within(AccuracyBand), $"exact-match accuracy on the first {Problems} held-out puzzles");
        Assert.That(gotNfe, Is.EqualTo(meanNfe).Within(NfeBand), $"mean NFE on the first {Problems} held-out puzzles");
    }

    [Test]
    public void TheShippedSudokuModelSaysHowItWasTrained()
    {
        using LocalModel model = LocalModel.Open(TaskModelGuard.Directory(Model));
        Assert.That(model.Denoiser.WeightsDescription, Does.StartWith("sudoku task: 6000 steps "), "metadata 'weights' of models/sudoku/model.onnx");
        Assert.That(File.ReadLines(Path.Combine(TaskModelGuard.Directory(Model), "test.jsonl")).Count(), Is.EqualTo(300));
    }
}
