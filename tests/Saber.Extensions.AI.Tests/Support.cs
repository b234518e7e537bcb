using Saber.Denoisers;

namespace Saber.Extensions.AI.Tests;

/// <summary>
/// A toy vocabulary of 32 ids: 'a'..'z' are 0..25, then ' ', ':', '\n', '.', end-of-text (30) and the mask (31).
/// Other characters encode as '.'.
/// </summary>
internal sealed class LetterTokenizer : ITextTokenizer
{
    public const int Vocabulary = 32;
    public const int Eos = 30;
    public const int Mask = 31;
    private const string Specials = " :\n.";

    public int? EosId => Eos;

    public int[] Encode(string text) => text.Select(Id).ToArray();

    public static int Id(char c) => c is >= 'a' and <= 'z' ? c - 'a' : Specials.IndexOf(c) is int i and >= 0 ? 26 + i : 29;

    public string Decode(ReadOnlySpan<int> tokens)
    {
        var chars = new char[tokens.Length];
        for (int i = 0; i < tokens.Length; i++)
            chars[i] = tokens[i] switch
            {
                < 26 and >= 0 => (char)('a' + tokens[i]),
                >= 26 and < 30 => Specials[tokens[i] - 26],
                _ => throw new ArgumentOutOfRangeException(nameof(tokens), tokens[i], "Decode got an end-of-text or mask id."),
            };
        return new string(chars);
    }

    /// <summary>Ids of <paramref name="text"/> where '#' stands for the end-of-text id.</summary>
    public static int[] Target(string text) => text.Select(c => c == '#' ? Eos : Id(c)).ToArray();
}

/// <summary>
/// A synthetic model that knows one completion per registered prompt (a <see cref="SyntheticDenoiser"/> each, with
/// planted traps that only later context exposes, so Saber re-masks): a canvas goes to the route whose prompt it starts
/// with (the longest such), and its logits are copied out.
/// </summary>
internal sealed class ScriptedDenoiser : IDenoiser
{
    private readonly List<(int[] Prompt, SyntheticDenoiser Denoiser)> routes = [];

    public int VocabularySize => LetterTokenizer.Vocabulary;
    public int MaskId => LetterTokenizer.Mask;
    public int? MaxSequenceLength { get; init; }
    public int Calls;

    /// <summary>Registers <paramref name="prompt"/>'s completion (<paramref name="target"/> ids, padded with '.') and traps at the given generation indices.</summary>
    public void Add(int[] prompt, int[] target, int seed = 0, params int[] trapIndices)
    {
        int[] padded = target.Concat(Enumerable.Repeat(LetterTokenizer.Id('.'), 256)).ToArray();
        Trap[] traps = trapIndices.Select(i => new Trap(i, (padded[i] + 7) % 26)).ToArray();
        var task = new SyntheticTask(VocabularySize, MaskId, [prompt], [padded], [traps]);
        lock (routes) routes.Add((prompt, new SyntheticDenoiser(task, new SyntheticDenoiserOptions(Seed: seed))));
    }

    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref Calls);
        var result = new SequenceLogits[request.Canvases.Count];
        for (int i = 0; i < result.Length; i++)
        {
            ReadOnlyMemory<int> canvas = request.Canvases[i];
            SyntheticDenoiser denoiser;
            lock (routes)
                denoiser = routes.Where(r => canvas.Span.StartsWith(r.Prompt)).MaxBy(r => r.Prompt.Length).Denoiser
                    ?? throw new InvalidOperationException("No route for this canvas.");
            SequenceLogits logits = denoiser.ForwardAsync(new DenoiseRequest(request.Step, [0], [canvas]), cancellationToken).Result[0];
            float[] copy = new float[logits.Rows * logits.Vocabulary];
            for (int row = 0; row < logits.Rows; row++)
                logits.Float32Row(row).CopyTo(copy.AsSpan(row * logits.Vocabulary));
            result[i] = SequenceLogits.FromFloat32(copy, logits.Rows, logits.Vocabulary);
        }
        return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
    }
}

/// <summary>Lets calls through until <see cref="Hold"/>; then each call announces itself and waits for <see cref="Release"/>.</summary>
internal sealed class HoldingDenoiser(IDenoiser inner) : IDenoiser
{
    private readonly SemaphoreSlim releases = new(0);
    private volatile bool holding;
    private TaskCompletionSource arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int VocabularySize => inner.VocabularySize;
    public int MaskId => inner.MaskId;
    public int? MaxSequenceLength => inner.MaxSequenceLength;

    public void Hold() => holding = true;
    public Task Arrived => arrived.Task;
    public void Release() => releases.Release();

    public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        if (holding)
        {
            arrived.TrySetResult();
            await releases.WaitAsync(cancellationToken);
        }
        return await inner.ForwardAsync(request, cancellationToken);
    }
}
