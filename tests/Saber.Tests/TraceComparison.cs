namespace Saber.Tests;

/// <summary>Step-by-step comparison of two implementations' traces of one sequence (CPU vs spec, GPU vs CPU).</summary>
internal static class TraceComparison
{
    /// <summary>
    /// Asserts every step equal until the first step whose selections differ; that step must be a
    /// proven <see cref="KnifeEdge"/> (then the canvases differ and the rest cannot be compared).
    /// </summary>
    /// <returns>True when the traces diverged at a knife edge; false when every common step matched.</returns>
    public static bool SameUntilKnifeEdge(IReadOnlyList<StepTrace> expected, IReadOnlyList<StepTrace> actual, DecodingStrategy strategy, int sequence)
    {
        for (int s = 0; s < Math.Min(expected.Count, actual.Count); s++)
        {
            if (SameSelections(expected[s], actual[s]))
            {
                AssertSameStep(expected[s], actual[s], sequence);
                continue;
            }
            string? proof = KnifeEdge.Explain(expected[s], actual[s], strategy is ThresholdStrategy t ? t.Threshold : null);
            Assert.That(proof, Is.Not.Null, $"sequence {sequence}, step {s + 1}: selections differ and no knife edge explains it\n" +
                $"expected {Describe(expected[s])}\nactual   {Describe(actual[s])}");
            TestContext.Out.WriteLine($"sequence {sequence}, step {s + 1}: knife edge: {proof}");
            return true;
        }
        return false;
    }

    /// <summary>
    /// Two decodes of the same batch (traced): per sequence, the same steps until a proven knife edge, and
    /// where there is none the same canvas, NFE and number of steps.
    /// </summary>
    public static void AssertSameDecode(DecodeResult expected, DecodeResult actual, DecodingStrategy strategy)
    {
        Assert.That(actual.Sequences, Has.Count.EqualTo(expected.Sequences.Count));
        for (int b = 0; b < expected.Sequences.Count; b++)
        {
            SequenceResult want = expected.Sequences[b], got = actual.Sequences[b];
            if (SameUntilKnifeEdge(want.Trace, got.Trace, strategy, b)) continue;
            Assert.That(got.Canvas, Is.EqualTo(want.Canvas), $"canvas of sequence {b}");
            Assert.That(got.Nfe, Is.EqualTo(want.Nfe), $"NFE of sequence {b}");
            Assert.That(got.Trace, Has.Count.EqualTo(want.Trace.Count), $"traced steps of sequence {b}");
        }
    }

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

    private static bool SameSelections(StepTrace a, StepTrace b) =>
        a.Committed.Select(c => (c.Position, c.Token)).SequenceEqual(b.Committed.Select(c => (c.Position, c.Token))) &&
        a.Remasked.Select(r => r.Position).SequenceEqual(b.Remasked.Select(r => r.Position));

    private static string Describe(StepTrace t) =>
        $"tau {t.Tau} committed [{string.Join(' ', t.Committed.Select(c => $"{c.Position}:{c.Token}@{c.Confidence:R}"))}] " +
        $"remasked [{string.Join(' ', t.Remasked.Select(r => $"{r.Position}@{r.Delta:R}"))}]";
}
