namespace Saber.Tests;

/// <summary>Rows of logits that stress the row pass: shared by the C#-vs-native and fast-vs-definition tests.</summary>
internal static class AdversarialRows
{
    /// <summary>Kinds: plain, ties, banned ids, huge magnitudes, subnormals, nearly all banned, the mask holding the maximum, a NaN or +∞, nothing finite but the mask.</summary>
    public const int Kinds = 9;

    /// <summary>A row of kind 0..8 (<see cref="Kinds"/>): plain, ties, banned ids, huge and tiny magnitudes, the mask holding the maximum, bad entries.</summary>
    public static float[] Row(Random rng, int vocabulary, int kind, int mask)
    {
        var row = new float[vocabulary];
        for (int v = 0; v < vocabulary; v++)
            row[v] = kind switch
            {
                1 => rng.Next(3),                                                              // exact ties
                2 => rng.Next(3) == 0 ? float.NegativeInfinity : (float)(rng.NextDouble() * 10 - 5),
                3 => (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-3, 31))),         // up to ±5e29
                4 => (float)(rng.NextDouble() * 1e-38) * (rng.Next(2) == 0 ? 1 : -1),          // subnormal and tiny
                5 => float.NegativeInfinity,                                                   // all banned but a few
                _ => (float)(rng.NextDouble() * 16 - 8),
            };
        if (kind == 5) row[rng.Next(vocabulary)] = (float)rng.NextDouble();
        if (kind == 6) row[mask] = 1e4f;                                                       // the mask holds the maximum
        if (kind == 7) row[rng.Next(vocabulary)] = rng.Next(2) == 0 ? float.NaN : float.PositiveInfinity;
        if (kind == 8) { Array.Fill(row, float.NegativeInfinity); row[mask] = 0f; }             // nothing finite but the mask
        return row;
    }
}
