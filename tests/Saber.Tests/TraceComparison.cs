namespace Saber.Tests;

/// <summary>
/// Step-by-step comparison of two implementations' traces. Implementations of the exact arithmetic (the CPU sampler, the
/// CUDA sampler, the spec rendered on <see cref="ExactMath.Row"/>) must agree bit for bit: <see cref="AssertIdenticalDecode"/>.
/// Only the literal spec rendering in double differs from them by rounding, and is allowed a proven knife edge:
/// KnifeEdge.SameUntilKnifeEdge.
/// </summary>
internal static class TraceComparison
{
    /// <summary>Two decodes of the same batch: per sequence the same canvas, NFE and trace, every number bit for bit.</summary>
    public static void AssertIdenticalDecode(DecodeResult expected, DecodeResult actual)
    {
        Assert.That(actual.Sequences, Has.Count.EqualTo(expected.Sequences.Count));
        for (int b = 0; b < expected.Sequences.Count; b++)
            AssertIdenticalSequence(expected.Sequences[b], actual.Sequences[b], b);
    }

    /// <summary>One sequence's canvas, NFE, re-mask statistics and trace, every number bit for bit.</summary>
    public static void AssertIdenticalSequence(SequenceResult expected, SequenceResult actual, int sequence)
    {
        Assert.That(actual.Canvas, Is.EqualTo(expected.Canvas), $"canvas of sequence {sequence}");
        Assert.That(actual.Nfe, Is.EqualTo(expected.Nfe), $"NFE of sequence {sequence}");
        Assert.That(actual.RemaskStatistics, Is.EqualTo(expected.RemaskStatistics), $"re-mask statistics of sequence {sequence}");
        Assert.That(actual.Trace, Has.Count.EqualTo(expected.Trace.Count), $"traced steps of sequence {sequence}");
        for (int s = 0; s < expected.Trace.Count; s++)
            AssertIdenticalStep(expected.Trace[s], actual.Trace[s], sequence);
    }

    /// <summary>The same step: τ, commits (position, token, confidence) and re-masks (position, Δ), bit for bit.</summary>
    public static void AssertIdenticalStep(StepTrace expected, StepTrace actual, int sequence)
    {
        string where = $"sequence {sequence}, step {expected.Step}";
        if (Describe(actual, exact: true) != Describe(expected, exact: true))
            Assert.Fail($"{where} differs\nexpected {Describe(expected, exact: true)}\nactual   {Describe(actual, exact: true)}");
    }

    public static bool SameSelections(StepTrace a, StepTrace b) =>
        a.Committed.Select(c => (c.Position, c.Token)).SequenceEqual(b.Committed.Select(c => (c.Position, c.Token))) &&
        a.Remasked.Select(r => r.Position).SequenceEqual(b.Remasked.Select(r => r.Position));

    /// <summary>The step as text; with <paramref name="exact"/> every number also as its bits (so −0 ≠ 0 and NaNs compare by payload).</summary>
    public static string Describe(StepTrace t, bool exact = false)
    {
        string Bits(double? x) => exact && x is double d ? $"[{BitConverter.DoubleToInt64Bits(d):X16}]" : "";
        string FloatBits(float x) => exact ? $"[{BitConverter.SingleToInt32Bits(x):X8}]" : "";
        return $"step {t.Step} tau {t.Tau}{Bits(t.Tau)} committed [{string.Join(' ', t.Committed.Select(c => $"{c.Position}:{c.Token}@{c.Confidence:R}{FloatBits(c.Confidence)}"))}] " +
            $"remasked [{string.Join(' ', t.Remasked.Select(r => $"{r.Position}@{r.Delta:R}{FloatBits(r.Delta)}"))}]";
    }
}
