namespace Saber.Denoisers;

/// <summary>A planted early mistake: at generation index <c>Index</c> the model first favours <c>Token</c>.</summary>
public readonly record struct Trap(int Index, int Token);

/// <summary>What a synthetic model "knows": the right completion of each prompt and its planted traps.</summary>
/// <param name="Vocabulary">Vocabulary size <c>V</c>.</param>
/// <param name="MaskId">The [MASK] id.</param>
/// <param name="Prompts">One prompt per sequence.</param>
/// <param name="Targets">The right generation region of each sequence (length <c>G</c> each).</param>
/// <param name="Traps">Planted mistakes of each sequence.</param>
public sealed record SyntheticTask(int Vocabulary, int MaskId, int[][] Prompts, int[][] Targets, Trap[][] Traps)
{
    public int GenerationLength => Targets.Length == 0 ? 0 : Targets[0].Length;

    /// <summary>A seeded random task: random prompts of the given lengths, random targets, <paramref name="traps"/> traps each.</summary>
    public static SyntheticTask Random(int seed, int vocabulary, IReadOnlyList<int> promptLengths, int generationLength, int traps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabulary, 3);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(traps, generationLength);
        var rng = new System.Random(seed);
        int mask = vocabulary - 1;
        int Token() => rng.Next(vocabulary - 1);
        var prompts = promptLengths.Select(p => Enumerable.Range(0, p).Select(_ => Token()).ToArray()).ToArray();
        var targets = promptLengths.Select(_ => Enumerable.Range(0, generationLength).Select(_ => Token()).ToArray()).ToArray();
        var planted = targets.Select(target =>
        {
            // Traps sit in the first half of the region so that later context exists to expose them.
            var indices = Enumerable.Range(0, Math.Max(traps, generationLength / 2)).OrderBy(_ => rng.Next()).Take(traps).Order();
            return indices.Select(i => new Trap(i, (target[i] + 1 + rng.Next(vocabulary - 2)) % (vocabulary - 1))).ToArray();
        }).ToArray();
        return new SyntheticTask(vocabulary, mask, prompts, targets, planted);
    }

    /// <summary>Generation positions whose token differs from the target.</summary>
    public int Mistakes(int sequence, ReadOnlySpan<int> generated)
    {
        int count = 0;
        for (int g = 0; g < generated.Length; g++)
            if (generated[g] != Targets[sequence][g]) count++;
        return count;
    }

    /// <summary>Trap positions left holding their trap token.</summary>
    public int TrapsLeft(int sequence, ReadOnlySpan<int> generated)
    {
        int count = 0;
        foreach (Trap trap in Traps[sequence])
            if (generated[trap.Index] == trap.Token) count++;
        return count;
    }
}

/// <summary>Knobs of <see cref="SyntheticDenoiser"/>; the defaults give the behaviour described there.</summary>
/// <param name="Seed">Seeds the fixed logit noise.</param>
/// <param name="Noise">Amplitude of the uniform noise on every logit.</param>
/// <param name="BaseBoost">Target logit boost on an empty canvas.</param>
/// <param name="FillBoost">Extra target boost on a full canvas (scaled by the filled fraction).</param>
/// <param name="TrapBoost">Trap logit boost with no later context (scaled by the missing later context).</param>
/// <param name="CopyBoost">Boost for the token a position already holds.</param>
/// <param name="ContextWindow">How many later positions count as a trap's context.</param>
public sealed record SyntheticDenoiserOptions(
    int Seed = 0,
    float Noise = 1.0f,
    float BaseBoost = 1.0f,
    float FillBoost = 7.0f,
    float TrapBoost = 11.0f,
    float CopyBoost = 1.0f,
    int ContextWindow = 8);

/// <summary>
/// A deterministic stand-in for a masked diffusion LM that reproduces what Saber exploits:
/// confidence in the right token rises as more of the generation region is filled, and planted
/// traps are predicted confidently on an empty canvas but lose to the right token once the positions
/// after them are filled. Logits depend on the current canvas (unlike a replay).
/// </summary>
public sealed class SyntheticDenoiser(SyntheticTask task, SyntheticDenoiserOptions? options = null) : IDenoiser
{
    private readonly SyntheticDenoiserOptions options = options ?? new SyntheticDenoiserOptions();
    private readonly Dictionary<int, float[]> buffers = [];

    public SyntheticTask Task { get; } = task;
    public int VocabularySize => Task.Vocabulary;
    public int MaskId => Task.MaskId;

    /// <summary>Model calls served so far.</summary>
    public int Calls { get; private set; }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        Calls++;
        var result = new SequenceLogits[request.Canvases.Count];
        for (int i = 0; i < result.Length; i++)
        {
            int sequence = request.SequenceIds[i];
            if ((uint)sequence >= (uint)Task.Prompts.Length)
                throw new ArgumentOutOfRangeException(nameof(request), sequence, $"The synthetic task holds {Task.Prompts.Length} sequences; sequence {sequence} was asked for.");
            ReadOnlySpan<int> canvas = request.Canvases[i].Span;
            int length = canvas.Length;
            if (!buffers.TryGetValue(sequence, out float[]? buffer) || buffer.Length != length * VocabularySize)
                buffers[sequence] = buffer = new float[length * VocabularySize];
            Fill(sequence, canvas, buffer);
            result[i] = SequenceLogits.FromFloat32(buffer, length, VocabularySize);
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }

    private void Fill(int sequence, ReadOnlySpan<int> canvas, float[] logits)
    {
        int prompt = Task.Prompts[sequence].Length;
        int generation = canvas.Length - prompt;
        int filled = 0;
        for (int i = prompt; i < canvas.Length; i++)
            if (canvas[i] != MaskId) filled++;
        float fill = generation == 0 ? 1f : (float)filled / generation;
        int[] target = Task.Targets[sequence];

        for (int pos = 0; pos < canvas.Length; pos++)
        {
            Span<float> row = logits.AsSpan(pos * VocabularySize, VocabularySize);
            for (int v = 0; v < row.Length; v++)
                row[v] = options.Noise * Hash(options.Seed, pos, v);
            int g = pos - prompt;
            int right = g < 0 ? canvas[pos] : g < target.Length ? target[g] : 0;
            row[right] += options.BaseBoost + options.FillBoost * fill;
            if (canvas[pos] != MaskId)
                row[canvas[pos]] += options.CopyBoost;
            if (g >= 0)
                foreach (Trap trap in Task.Traps[sequence])
                    if (trap.Index == g)
                        row[trap.Token] += options.TrapBoost * (1f - LaterContext(canvas, pos, prompt));
        }
    }

    /// <summary>Filled fraction of the next <see cref="SyntheticDenoiserOptions.ContextWindow"/> positions after <paramref name="pos"/>.</summary>
    private float LaterContext(ReadOnlySpan<int> canvas, int pos, int prompt)
    {
        int end = Math.Min(canvas.Length, pos + 1 + options.ContextWindow);
        if (end == pos + 1) return 1f;
        int filled = 0;
        for (int i = pos + 1; i < end; i++)
            if (canvas[i] != MaskId) filled++;
        return (float)filled / (end - pos - 1);
    }

    /// <summary>A fixed pseudo-random value in [-1, 1) for (seed, position, v).</summary>
    private static float Hash(int seed, int position, int v)
    {
        ulong z = ((ulong)(uint)seed << 40) ^ ((ulong)(uint)position << 20) ^ (uint)v;
        z += 0x9E3779B97F4A7C15;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        z ^= z >> 31;
        return (z >> 40) * (2f / (1 << 24)) - 1f;
    }
}
