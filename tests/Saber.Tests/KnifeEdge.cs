namespace Saber.Tests;

/// <summary>
/// Decides whether two implementations' different selections at one step come from float rounding
/// on a knife edge: every position one side chose and the other did not sits within
/// <see cref="Margin"/> of what it competed with (a value the other side chose instead, the
/// threshold τ or θ, or for re-masking another candidate's Δ). Anything else is a real disagreement.
/// </summary>
internal static class KnifeEdge
{
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
