using System.Text.Json.Serialization;

namespace Saber;

/// <summary>
/// What Saber's re-masking (spec §3 step 7) did to one sequence: how often decoded tokens were set back to the mask, how
/// many of those came back as a different token, and how many positions went back and forth. Zero for the strategies that
/// never re-mask.
/// </summary>
/// <param name="Remasks">Re-mask events: a decoded position set back to the mask (a position re-masked twice counts twice).</param>
/// <param name="RemasksChanged">
/// Re-masks whose position was next committed to a different token than the one it held when it was re-masked. A re-mask
/// whose position has not been committed again (<paramref name="RemasksPending"/>) is not counted: it has no outcome yet.
/// </param>
/// <param name="PositionsRemaskedTwice">Positions re-masked more than once (oscillation).</param>
/// <param name="RemasksPending">
/// Re-masks whose position has not been committed again: 0 at the end of a finished decode (every position then holds a
/// token); above 0 in the steps of a stream and in a decode stopped before its end.
/// </param>
/// <remarks>In JSON: <c>remasks</c>, <c>remasksChanged</c>, <c>positionsRemaskedTwice</c>, <c>remasksPending</c>.</remarks>
public sealed record RemaskStatistics(
    [property: JsonPropertyName("remasks")] int Remasks,
    [property: JsonPropertyName("remasksChanged")] int RemasksChanged,
    [property: JsonPropertyName("positionsRemaskedTwice")] int PositionsRemaskedTwice,
    [property: JsonPropertyName("remasksPending")] int RemasksPending)
{
    /// <summary>No re-mask.</summary>
    public static RemaskStatistics None { get; } = new(0, 0, 0, 0);
}

/// <summary>
/// Counts <see cref="RemaskStatistics"/> for one sequence from its commits and re-masks, step by step: a sampler calls
/// <see cref="Committed"/> and <see cref="Remasked"/> as it changes the canvas, or <see cref="Add"/> with each step's trace.
/// </summary>
public sealed class RemaskCounter
{
    private const int None = -1;
    private readonly int promptLength;
    private readonly int[] held;           // per generation position: the token last committed there, or None
    private readonly int[] heldAtRemask;   // the token it held when last re-masked, while not committed again; else None
    private readonly byte[] times;         // re-masks of the position, saturating at 2
    private int remasks, changed, twice, pending;

    /// <param name="promptLength"><c>P</c>: positions are canvas indices, the generation region is <c>[P, P+G)</c>.</param>
    /// <param name="generationLength"><c>G</c>.</param>
    public RemaskCounter(int promptLength, int generationLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptLength);
        ArgumentOutOfRangeException.ThrowIfNegative(generationLength);
        this.promptLength = promptLength;
        held = new int[generationLength];
        heldAtRemask = new int[generationLength];
        times = new byte[generationLength];
        held.AsSpan().Fill(None);
        heldAtRemask.AsSpan().Fill(None);
    }

    /// <summary>The counts so far.</summary>
    public RemaskStatistics Statistics => new(remasks, changed, twice, pending);

    /// <summary>Canvas position <paramref name="position"/> received <paramref name="token"/>.</summary>
    public void Committed(int position, int token)
    {
        int g = Index(position);
        held[g] = token;
        if (heldAtRemask[g] == None) return;
        if (heldAtRemask[g] != token) changed++;
        heldAtRemask[g] = None;
        pending--;
    }

    /// <summary>Canvas position <paramref name="position"/>, which holds a committed token, was set back to the mask.</summary>
    public void Remasked(int position)
    {
        int g = Index(position);
        if (held[g] == None)
            throw new InvalidOperationException($"Position {position} was re-masked without a committed token.");
        remasks++;
        if (times[g] < 2 && ++times[g] == 2) twice++;
        heldAtRemask[g] = held[g];
        held[g] = None;
        pending++;
    }

    /// <summary>Counts one step's trace: its commits, then its re-masks (the order of spec §3 steps 5 and 7).</summary>
    public void Add(StepTrace step)
    {
        ArgumentNullException.ThrowIfNull(step);
        foreach (CommittedToken c in step.Committed) Committed(c.Position, c.Token);
        foreach (RemaskedToken r in step.Remasked) Remasked(r.Position);
    }

    private int Index(int position)
    {
        int g = position - promptLength;
        if ((uint)g >= (uint)held.Length)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"Not a generation position: [{promptLength}, {promptLength + held.Length}).");
        return g;
    }
}
