namespace Saber.Onnx.Tests;

/// <summary>
/// End to end on the shipped task model models/addition (tools/train_task_model.py): a regression guard for the
/// samplers on a real trained model. On a fixed subset of the held-out set (its first <see cref="Problems"/>
/// problems, greedy, G = 16, one block) each strategy's exact-match accuracy and mean NFE must stay within the band
/// stated here around the figures recorded when the model was made (bench/results/eval-addition-2026-12-01.md,
/// the same subset). The bands allow other BLAS builds or CPUs to move a near-tie or two; a change to a strategy's
/// logic moves these figures far more.
/// </summary>
public class TaskModelTests
{
    private const int Problems = 100, G = 16;

    /// <summary>Accuracy may move by this much (2 problems of 100) and mean NFE by this much (a quarter of a call).</summary>
    private const double AccuracyBand = 0.02, NfeBand = 0.25;

    private const string Model = "addition";

    private static IEnumerable<TestCaseData> Recorded()
    {
        // label, strategy, accuracy, mean NFE: the figures of bench/results/eval-addition-2026-12-01.md (first 100 problems).
        yield return Case("low-confidence S=G", new LowConfidenceStrategy(G), 1.00, 16.00);
        yield return Case("low-confidence S=G/2", new LowConfidenceStrategy(G / 2), 1.00, 8.00);
        yield return Case("threshold 0.9", new ThresholdStrategy(0.9f), 1.00, 1.00);
        yield return Case("factor 1.0", new FactorStrategy(1.0f), 1.00, 1.00);
        yield return Case("saber reference", new SaberStrategy(), 1.00, 15.00);
        yield return Case("saber paper", new SaberStrategy(Variant: SaberVariant.Paper), 1.00, 14.00);
        yield return Case("saber no-backtracking", new SaberStrategy(Backtracking: false), 1.00, 8.00);
        yield return Case("saber fixed-threshold 0.9", new SaberStrategy(FixedThreshold: 0.9f), 1.00, 1.00);

        static TestCaseData Case(string label, DecodingStrategy strategy, double accuracy, double nfe) =>
            new TestCaseData(strategy, accuracy, nfe).SetArgDisplayNames(label);
    }

    [TestCaseSource(nameof(Recorded))]
    public async Task AccuracyAndNfeStayWithinTheirBands(DecodingStrategy strategy, double accuracy, double meanNfe)
    {
        var (gotAccuracy, gotNfe) = await TaskModelGuard.EvaluateAsync(Model, Problems, G, strategy);
        TestContext.Out.WriteLine($"accuracy {gotAccuracy:F3} (recorded {accuracy:F3}), mean NFE {gotNfe:F3} (recorded {meanNfe:F3})");
        Assert.That(gotAccuracy, Is.EqualTo(accuracy).Within(AccuracyBand), $"exact-match accuracy on the first {Problems} held-out problems");
        Assert.That(gotNfe, Is.EqualTo(meanNfe).Within(NfeBand), $"mean NFE on the first {Problems} held-out problems");
    }

    [Test]
    public void TheShippedTaskModelSaysHowItWasTrained()
    {
        using LocalModel model = LocalModel.Open(TaskModelGuard.Directory(Model));
        Assert.That(model.Denoiser.WeightsDescription, Does.StartWith("addition task: "), "metadata 'weights' of models/addition/model.onnx");
        Assert.That(File.ReadLines(Path.Combine(TaskModelGuard.Directory(Model), "test.jsonl")).Count(), Is.EqualTo(1000));
    }
}
