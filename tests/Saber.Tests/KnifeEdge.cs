namespace Saber.Tests;

/// <summary>
/// For the one comparison that is not bit for bit, the fast sampler against the literal spec rendered in double
/// (<see cref="SpecSampler"/>): the double softmax and the exact float arithmetic differ by rounding (about 1e-7
/// relative, docs/arithmetic.md), so their selections may part where two candidates are that close. This decides whether
/// a difference is such a knife edge: every position one side chose and the other did not sits within
/// <see cref="Margin"/> of what it competed with (a value the other side chose instead, the
/// threshold τ or θ, or for re-masking another candidate's Δ). Anything else is a real disagreement.
/// </summary>
internal static class KnifeEdge
{
    /// <summary>
    /// Asserts every step equal until the first step whose selections differ; that step must be a
    /// proven knife edge (then the canvases differ and the rest cannot be compared).
    /// </summary>
    /// <returns>True when the traces diverged at a knife edge; false when every common step matched.</returns>
    public static bool SameUntilKnifeEdge(IReadOnlyList<StepTrace> expected, IReadOnlyList<StepTrace> actual, DecodingStrategy strategy, int sequence)
    {
        for (int s = 0; s < Math.Min(expected.Count, actual.Count); s++)
        {
            if (TraceComparison.SameSelections(expected[s], actual[s]))
            {
                AssertSameStep(expected[s], actual[s], sequence);
                continue;
            }
            string? proof = Explain(expected[s], actual[s], strategy is ThresholdStrategy t ? t.Threshold : null);
            Assert.That(proof, Is.Not.Null, $"sequence {sequence}, step {s + 1}: selections differ and no knife edge explains it\n" +
                $"expected {TraceComparison.Describe(expected[s])}\nactual   {TraceComparison.Describe(actual[s])}");
            TestContext.Out.WriteLine($"sequence {sequence}, step {s + 1}: knife edge: {proof}");
            return true;
        }
        return false;
    }

    /// <summary>The same step up to rounding: τ within 1e-6, confidences and Δ within 2e-6.</summary>
    public static void AssertSameStep(StepTrace expected, StepTrace actual, int sequence)
    {
        string where = $"sequence {sequence}, step {expected.Step}";
        Assert.That(actual.Step, Is.EqualTo(expected.Step), where);
        if (expected.Tau is null) Assert.That(actual.Tau, Is.Null, where);
        else Assert.That(actual.Tau!.Value, Is.EqualTo(expected.Tau.Value).Within(1e-6), $"tau at {where}");
        Assert.That(actual.Committed.Select(c => (c.Position, c.Token)), Is.EqualTo(expected.Committed.Select(c => (c.Position, c.Token))), $"commits at {where}");
        for (int i = 0; i < expected.Committed.Count; i++)
            Assert.That(actual.Committed[i].Confidence, Is.EqualTo(expected.Committed[i].Confidence).Within(2e-6), $"confidence of commit {i} at {where}");
        Assert.That(actual.Remasked.Select(r => r.Position), Is.EqualTo(expected.Remasked.Select(r => r.Position)), $"re-masks at {where}");
        for (int i = 0; i < expected.Remasked.Count; i++)
            Assert.That(actual.Remasked[i].Delta, Is.EqualTo(expected.Remasked[i].Delta).Within(2e-6), $"delta of re-mask {i} at {where}");
    }

    public const double Margin = 1e-5;

    /// <returns>A description of the knife edge (step, positions, margin), or null when none explains the difference.</returns>
    public static string? Explain(StepTrace expected, StepTrace actual, float? threshold)
    {
        if (expected.Tau is double te && actual.Tau is double ta && Math.Abs(te - ta) > Margin)
            return null;   // different thresholds are not a rounding question
        var parts = new List<string>();
        if (!Explain(Only(expected.Committed, actual.Committed), Only(actual.Committed, expected.Committed),
                expected.Tau ?? threshold, "confidence", parts))
            return null;
        if (!Explain(OnlyRemasked(expected.Remasked, actual.Remasked), OnlyRemasked(actual.Remasked, expected.Remasked),
                null, "delta", parts))
            return null;
        return $"step {expected.Step}: " + string.Join("; ", parts);
    }

    private static List<(int Position, double Value)> Only(IReadOnlyList<CommittedToken> a, IReadOnlyList<CommittedToken> b) =>
        a.Where(x => !b.Any(y => y.Position == x.Position && y.Token == x.Token)).Select(x => (x.Position, (double)x.Confidence)).ToList();

    private static List<(int Position, double Value)> OnlyRemasked(IReadOnlyList<RemaskedToken> a, IReadOnlyList<RemaskedToken> b) =>
        a.Where(x => !b.Any(y => y.Position == x.Position)).Select(x => (x.Position, (double)x.Delta)).ToList();

    private static bool Explain(List<(int Position, double Value)> left, List<(int Position, double Value)> right, double? boundary,
        string what, List<string> parts)
    {
        foreach (var (side, other, name) in new[] { (left, right, "expected"), (right, left, "actual") })
            foreach (var (position, value) in side)
            {
                // What this choice competed with: a choice the other side made instead, or the threshold.
                double nearest = other.Select(o => Math.Abs(o.Value - value)).Append(boundary is double t ? Math.Abs(t - value) : double.PositiveInfinity).Min();
                if (!(nearest < Margin)) return false;
                parts.Add($"{name} chose position {position} ({what} {value:R}), {nearest:E2} from its competitor");
            }
        return true;
    }
}
