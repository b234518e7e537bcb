namespace Saber.Tests;

/// <summary>
/// A denoiser may leave out the rows before <see cref="DenoiseRequest.LogitsFrom"/> (the prompt's): decodes are
/// bit-identical to the same denoiser returning every row, and rows that start too late are a contract error.
/// </summary>
public class LogitsFromTests
{
    /// <summary>Returns the rows from <c>LogitsFrom + Skip</c> on of an inner denoiser's answer (copied, in the same element type).</summary>
    internal sealed class TrimmingDenoiser(IDenoiser inner, int skip = 0) : IDenoiser
    {
        public int VocabularySize => inner.VocabularySize;
        public int MaskId => inner.MaskId;
        public List<IReadOnlyList<int>?> Asked { get; } = [];

        public async ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
        {
            Asked.Add(request.LogitsFrom);
            IReadOnlyList<SequenceLogits> full = await inner.ForwardAsync(request, cancellationToken);
            return full.Select((l, i) => Trim(l, (request.LogitsFrom?[i] ?? 0) + skip)).ToArray();
        }

        private static SequenceLogits Trim(SequenceLogits l, int from)
        {
            int rows = l.Rows - from, v = l.Vocabulary;
            switch (l.ElementType)
            {
                case LogitsElementType.Float32:
                    var f32 = new float[rows * v];
                    for (int r = 0; r < rows; r++) l.Float32Row(from + r).CopyTo(f32.AsSpan(r * v));
                    return SequenceLogits.FromFloat32(f32, rows, v, from);
                case LogitsElementType.Float16:
                    var f16 = new Half[rows * v];
                    for (int r = 0; r < rows; r++) l.Float16Row(from + r).CopyTo(f16.AsSpan(r * v));
                    return SequenceLogits.FromFloat16(f16, rows, v, from);
                default:
                    var bf16 = new ushort[rows * v];
                    for (int r = 0; r < rows; r++) l.BFloat16Row(from + r).CopyTo(bf16.AsSpan(r * v));
                    return SequenceLogits.FromBFloat16(bf16, rows, v, from);
            }
        }
    }

    public static IEnumerable<TestCaseData> Strategies() => BatchCompositionTests.Cases();

    [TestCaseSource(nameof(Strategies))]
    public async Task GenerationRowsOnlyDecodeLikeEveryRow(DecodingStrategy strategy, float temperature, LogitsElementType type)
    {
        const int vocabulary = 1100, mask = 1099;
        var full = new RandomDenoiser(5, vocabulary, mask, type, tieRate: 0.2, bannedRate: 0.05);
        var trimmed = new TrimmingDenoiser(full);
        var options = new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = strategy, Temperature = temperature, Seed = 2026, Trace = true };
        ReadOnlyMemory<int>[] prompts = [new[] { 3, 1, 4 }, new[] { 1, 5 }, new[] { 9, 2, 6, 5, 3 }];
        DecodeResult expected = await new CpuSampler().DecodeAsync(full, prompts, options);
        DecodeResult actual = await new CpuSampler().DecodeAsync(trimmed, prompts, options);
        TraceComparison.AssertIdenticalDecode(expected, actual);
        Assert.That(trimmed.Asked, Is.Not.Empty);
        Assert.That(trimmed.Asked[0], Is.EqualTo(new[] { 3, 2, 5 }), "the first step asks for the rows from each prompt's length");
    }

    [Test]
    public void RowsStartingAfterLogitsFromAreRejected()
    {
        var denoiser = new TrimmingDenoiser(new RandomDenoiser(5, 40, 39), skip: 1);
        var options = new DecodeOptions { GenerationLength = 4, BlockLength = 4 };
        var e = Assert.ThrowsAsync<InvalidLogitsException>(() => new CpuSampler().DecodeAsync(denoiser, [new[] { 1, 2, 3 }], options));
        Assert.That(e!.Message, Does.Contain("logits hold the rows of positions [4, 7); the canvas has 7 positions and rows from position 3 were asked for"));
    }

    [Test]
    public void RowsAreAddressedByCanvasPosition()
    {
        var logits = SequenceLogits.FromFloat32(new float[] { 1, 2, 3, 4, 5, 6 }, rows: 2, vocabulary: 3, firstPosition: 5);
        Assert.That(logits[6, 1], Is.EqualTo(5f));
        Assert.That(logits.Float32Row(5).ToArray(), Is.EqualTo(new float[] { 1, 2, 3 }));
        Assert.That(() => logits[4, 0], Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("positions [5, 7)"));
        Assert.That(() => logits[7, 0], Throws.TypeOf<ArgumentOutOfRangeException>());
    }
}
