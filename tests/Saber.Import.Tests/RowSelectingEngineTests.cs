using Saber.Checkpoints.Fixtures;
using Saber.Onnx;
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// <see cref="OnnxDenoiser"/> on graphs built by <see cref="Onnx.TransformerGraph"/>: the rows a request's LogitsFrom asks
/// for, Dream's shift applied by the engine, ragged batches, and decodes that do not depend on which rows are computed.
/// </summary>
public sealed class RowSelectingEngineTests
{
    private const double Tolerance = 1e-4;   // float32 graph against the double-precision literal pass (GraphTests)

    private static TinyModel Model(Family family)
    {
        FixtureOptions options = family == Family.LLaDA ? TinyModel.LLaDA() : TinyModel.Dream();
        return TinyModel.Create(options, metadata: new Dictionary<string, string>
        {
            ["mask_id"] = options.ResolvedMaskTokenId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["logits_shift"] = family == Family.Dream ? "1" : "0",
        });
    }

    private static readonly int[] Canvas = [5, 17, 3, 33, 8, 21, 0, 12, 30, 7, 19];

    private static async Task<SequenceLogits[]> Forward(OnnxDenoiser denoiser, int[][] canvases, int[]? logitsFrom) =>
        (await denoiser.ForwardAsync(new DenoiseRequest(1, Enumerable.Range(0, canvases.Length).ToArray(),
            canvases.Select(c => (ReadOnlyMemory<int>)c).ToArray()) { LogitsFrom = logitsFrom }, CancellationToken.None)).ToArray();

    /// <summary>The model's prediction for each position: LLaDA's output row, Dream's output row at position − 1 (row 0 for position 0).</summary>
    private static double[,] Expected(TinyModel model, int[] canvas)
    {
        double[,] raw = model.Reference(canvas);
        return model.Spec.ShiftedLogits ? ReferenceForward.ShiftForDream(raw) : raw;
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public async Task EveryRowAndTheRowsFromLogitsFromMatchTheLiteralPass(Family family)
    {
        using TinyModel model = Model(family);
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(model.GraphPath);
        Assert.That(denoiser.SelectsRows, Is.True);
        Assert.That(denoiser.ShiftedLogits, Is.EqualTo(family == Family.Dream));
        double[,] expected = Expected(model, Canvas);

        SequenceLogits all = (await Forward(denoiser, [Canvas], null))[0];
        Assert.That((all.FirstPosition, all.Rows), Is.EqualTo((0, Canvas.Length)));
        float[][] allRows = Enumerable.Range(0, Canvas.Length).Select(p => all.Float32Row(p).ToArray()).ToArray();
        SequenceLogits tail = (await Forward(denoiser, [Canvas], [6]))[0];
        Assert.That((tail.FirstPosition, tail.Rows), Is.EqualTo((6, Canvas.Length - 6)));

        double worst = 0;
        for (int p = 0; p < Canvas.Length; p++)
            for (int v = 0; v < model.Spec.Vocabulary; v++)
                worst = Math.Max(worst, Math.Abs(allRows[p][v] - expected[p, v]));
        TestContext.Out.WriteLine($"{family}: max |engine - literal| = {worst:G3}");
        Assert.That(worst, Is.LessThan(Tolerance));
        for (int p = 6; p < Canvas.Length; p++)
            Assert.That(tail.Float32Row(p).ToArray(), Is.EqualTo(allRows[p]), $"position {p}: the same row whether or not the prompt's rows are computed");
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public async Task RaggedBatchesGiveEachCanvasItsRowsAlone(Family family)
    {
        using TinyModel model = Model(family);
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(model.GraphPath);
        int[][] canvases = [Canvas, Canvas[..4], [.. Canvas, .. Canvas, 2, 9]];
        int[] from = [3, 1, 20];
        SequenceLogits[] batch = await Forward(denoiser, canvases, from);
        Assert.That(denoiser.Runs, Is.EqualTo(1), "one ONNX Runtime run for the ragged batch");
        for (int b = 0; b < canvases.Length; b++)
        {
            SequenceLogits alone = (await Forward(denoiser, [canvases[b]], [from[b]]))[0];
            Assert.That((batch[b].FirstPosition, batch[b].Rows), Is.EqualTo((from[b], canvases[b].Length - from[b])), $"canvas {b}");
            for (int p = from[b]; p < canvases[b].Length; p++)
                Assert.That(batch[b].Float32Row(p).ToArray(), Is.EqualTo(alone.Float32Row(p).ToArray()), $"canvas {b}, position {p}");
            double[,] expected = Expected(model, canvases[b]);
            for (int p = from[b]; p < canvases[b].Length; p++)
                for (int v = 0; v < model.Spec.Vocabulary; v++)
                    Assert.That(batch[b][p, v], Is.EqualTo(expected[p, v]).Within(Tolerance), $"canvas {b}, position {p}, id {v}");
        }
    }

    /// <summary>Drops LogitsFrom, so the engine computes every row (the contract before row selection).</summary>
    private sealed class EveryRow(IDenoiser inner) : IDenoiser
    {
        public int VocabularySize => inner.VocabularySize;
        public int MaskId => inner.MaskId;
        public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken) =>
            inner.ForwardAsync(request with { LogitsFrom = null }, cancellationToken);
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public async Task DecodesAreTheSameWhetherOrNotPromptRowsAreComputed(Family family)
    {
        using TinyModel model = Model(family);
        using OnnxDenoiser denoiser = OnnxDenoiser.Load(model.GraphPath);
        ReadOnlyMemory<int>[] prompts = [Canvas[..5], Canvas[..2], Canvas];
        foreach (DecodingStrategy strategy in new DecodingStrategy[] { new SaberStrategy(), new LowConfidenceStrategy(8), new ThresholdStrategy(0.3f) })
        {
            var options = new DecodeOptions { GenerationLength = 8, BlockLength = 4, Strategy = strategy, Trace = true };
            DecodeResult rows = await new CpuSampler().DecodeAsync(denoiser, prompts, options);
            DecodeResult every = await new CpuSampler().DecodeAsync(new EveryRow(denoiser), prompts, options);
            for (int b = 0; b < prompts.Length; b++)
            {
                Assert.That(rows.Sequences[b].Tokens.ToArray(), Is.EqualTo(every.Sequences[b].Tokens.ToArray()), $"{strategy}, sequence {b}");
                Assert.That(rows.Sequences[b].Nfe, Is.EqualTo(every.Sequences[b].Nfe), $"{strategy}, sequence {b}");
                Assert.That(rows.Sequences[b].Tokens.ToArray(), Has.None.EqualTo(model.Spec.MaskId), $"{strategy}, sequence {b} finished");
            }
        }
    }
}
