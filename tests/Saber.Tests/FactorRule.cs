namespace Saber.Tests;

/// <summary>
/// The factor rule of docs/strategies.md, rendered literally from the text and sharing no code with the sampler:
/// rank the candidates, give rank i the threshold 1 − F/(i + 1) in double, walk the ranks until the first failure.
/// </summary>
internal static class FactorRule
{
    /// <summary>Indices into <paramref name="confidences"/> (the block's masked positions, in position order) that one step commits.</summary>
    public static IReadOnlyList<int> Select(float[] confidences, float factor)
    {
        int m = confidences.Length;
        // By score, then by position: highest confidence first, equal ones (−0 and +0 too) lowest index first.
        int[] ranked = Enumerable.Range(0, m).OrderByDescending(j => (double)confidences[j]).ThenBy(j => j).ToArray();
        int passed = 0;
        for (int rank = 1; rank <= m; rank++)
        {
            double threshold = rank == 1 ? double.NegativeInfinity : 1.0 - (double)factor / (double)(rank + 1);
            if ((double)confidences[ranked[rank - 1]] < threshold) break;
            passed = rank;
        }
        // The released code's rule: when only rank M fails, all M are committed.
        int take = passed == m - 1 ? m : passed;
        return ranked.Take(take).ToArray();
    }
}
