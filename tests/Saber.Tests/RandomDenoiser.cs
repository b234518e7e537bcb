namespace Saber.Tests;

/// <summary>
/// Seeded random logits that depend on the canvas (so the decode's path matters), in any element
/// type, with optional adversarial entries: exact ties within a row, banned (−∞) tokens and a mask id
/// that holds the row's maximum.
/// </summary>
internal sealed class RandomDenoiser(int seed, int vocabulary, int maskId, LogitsElementType type = LogitsElementType.Float32,
    double tieRate = 0, double bannedRate = 0, bool maskHoldsMax = false, float scale = 3f) : IDenoiser
{
    public int VocabularySize => vocabulary;
    public int MaskId => maskId;

    /// <summary>A token drawn uniformly from every id but the mask id (for prompts).</summary>
    public static int NonMaskToken(Random rng, int vocabulary, int maskId)
    {
        int t = rng.Next(vocabulary - 1);
        return t >= maskId ? t + 1 : t;
    }

    /// <summary>Varies the logits of every seed at once (hunting for rare cases); 0 in the committed tests.</summary>
    public static int Salt { get; set; }

    private static int Mix(int a, int b, int c, int d)
    {
        ulong z = (ulong)(uint)a * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)b * 0xBF58476D1CE4E5B9UL ^ (ulong)(uint)c * 0x94D049BB133111EBUL ^ (ulong)(uint)d;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 31));
    }

    /// <summary>Overrides logits after generation: (step, sequence, position, row) -> edit the row.</summary>
    public Action<int, int, int, float[]>? Edit { get; init; }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        var result = new List<SequenceLogits>();
        for (int k = 0; k < request.Canvases.Count; k++)
        {
            int[] canvas = request.Canvases[k].ToArray();
            int digest = canvas.Aggregate(17, (h, x) => unchecked(h * 31 + x));
            var data = new float[canvas.Length * vocabulary];
            for (int pos = 0; pos < canvas.Length; pos++)
            {
                // A fixed mix (HashCode.Combine is randomised per process, which would make runs differ).
                var rng = new Random(Mix(seed, pos, digest, Salt));
                var row = new float[vocabulary];
                for (int v = 0; v < vocabulary; v++)
                    row[v] = (float)(rng.NextDouble() * 2 - 1) * scale;
                if (vocabulary > 2 && rng.NextDouble() < tieRate)
                {
                    int a = rng.Next(vocabulary), b = rng.Next(vocabulary);
                    row[a] = row[b] = row.Max() + 0.5f;   // two ids share the row's maximum
                }
                for (int v = 0; v < vocabulary; v++)
                    if (v != maskId && rng.NextDouble() < bannedRate)
                        row[v] = float.NegativeInfinity;
                if (maskHoldsMax)
                    row[maskId] = row.Max() + 1f;
                if (!row.Where((x, v) => v != maskId).Any(float.IsFinite))
                    row[(maskId + 1) % vocabulary] = 0f;
                Edit?.Invoke(request.Step, request.SequenceIds[k], pos, row);
                row.CopyTo(data, pos * vocabulary);
            }
            result.Add(type switch
            {
                LogitsElementType.Float32 => SequenceLogits.FromFloat32(data, canvas.Length, vocabulary),
                LogitsElementType.Float16 => SequenceLogits.FromFloat16(data.Select(x => (Half)x).ToArray(), canvas.Length, vocabulary),
                _ => SequenceLogits.FromBFloat16(data.Select(BFloat16Bits.FromSingle).ToArray(), canvas.Length, vocabulary),
            });
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}

/// <summary>Serves fixed logits per step: rows[step-1][sequence][position] = logits row.</summary>
internal sealed class ScriptedDenoiser(int vocabulary, int maskId, Func<int, int, int[], float[][]> rows) : IDenoiser
{
    public int VocabularySize => vocabulary;
    public int MaskId => maskId;
    public List<int[][]> Seen { get; } = [];

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Seen.Add(request.Canvases.Select(c => c.ToArray()).ToArray());
        var result = new List<SequenceLogits>();
        for (int k = 0; k < request.Canvases.Count; k++)
        {
            float[][] r = rows(request.Step, request.SequenceIds[k], request.Canvases[k].ToArray());
            result.Add(SequenceLogits.FromFloat32(r.SelectMany(x => x).ToArray(), r.Length, vocabulary));
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}
