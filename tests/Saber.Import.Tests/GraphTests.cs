using Microsoft.ML.OnnxRuntime;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import.Tests;

/// <summary>
/// TransformerGraph's unit check: tiny checkpoints with random weights, their graph run by ONNX Runtime (all optimisations
/// on, so its fusions are part of what is checked) against <see cref="LiteralForward"/>, a forward pass in double loops.
/// Logits reach 3 (untied) to 15 (tied: the head is the unit-scale embedding); every comparison allows 1e-4 absolute (float32 graph against a double reference; measured
/// differences are printed to the test output).
/// </summary>
public sealed class GraphTests
{
    private const double Tolerance = 1e-4;

    private static ArchitectureSpec LLaDA(bool tied, bool linearBias) => new(
        CheckpointFamily.LLaDA, Layers: 2, HiddenSize: 32, Heads: 4, KvHeads: 4, IntermediateSize: 48, Vocabulary: 40,
        TokenizerVocabulary: 37, RopeTheta: 500000, RmsNormEps: 1e-5, QkvBias: linearBias, LinearBias: linearBias,
        TiedEmbeddings: tied, MaxPositions: 64, MaskId: 39, EosIds: [1], ShiftedLogits: false);

    private static ArchitectureSpec Dream() => new(
        CheckpointFamily.Dream, Layers: 2, HiddenSize: 48, Heads: 6, KvHeads: 2, IntermediateSize: 64, Vocabulary: 50,
        TokenizerVocabulary: 50, RopeTheta: 10000, RmsNormEps: 1e-6, QkvBias: true, LinearBias: false,
        TiedEmbeddings: false, MaxPositions: 64, MaskId: 49, EosIds: [2], ShiftedLogits: true);

    private static readonly int[] Tokens = [5, 17, 3, 33, 8, 21, 0, 12, 30, 7, 19];

    [TestCase(false, false, TestName = "LLaDA untied, no biases: one row, every position")]
    [TestCase(true, false, TestName = "LLaDA tied: one row, every position")]
    [TestCase(false, true, TestName = "LLaDA untied with include_bias (linear, head and norm biases): one row, every position")]
    [TestCase(true, true, TestName = "LLaDA tied with include_bias: one row, every position")]
    public void OneRowMatchesTheLiteralForwardPass(bool tied, bool linearBias)
    {
        using var model = TinyModel.Create(LLaDA(tied, linearBias), WeightType.Float32, normBiases: linearBias);
        AssertCanvasesMatch(model, [Tokens]);
    }

    [Test]
    public void DreamGroupedQueryAttentionMatchesTheLiteralForwardPass()
    {
        using var model = TinyModel.Create(Dream(), WeightType.Float32);
        AssertCanvasesMatch(model, [Tokens]);
    }

    [TestCase(CheckpointFamily.LLaDA)]
    [TestCase(CheckpointFamily.Dream)]
    public void PaddedRowsOfARaggedBatchMatchEachRowAlone(CheckpointFamily family)
    {
        using var model = TinyModel.Create(family == CheckpointFamily.LLaDA ? LLaDA(tied: false, linearBias: true) : Dream(), WeightType.Float32,
            normBiases: family == CheckpointFamily.LLaDA);
        // 27 positions: padding on the left only, on the left in a multiple of 16 and the rest on the right (the engine's
        // layout), and odd amounts on both sides.
        int[][] canvases = [Tokens, Tokens[..4], Tokens[3..10], [Tokens[6]]];
        (int Left, int Right)[] padding = [(16, 0), (16, 7), (3, 17), (2, 24)];
        AssertCanvasesMatch(model, canvases, padding);

        // And each padded row's logits equal ONNX Runtime's logits of the row alone.
        float[][] batch = model.Run(canvases, padding);
        for (int i = 0; i < canvases.Length; i++)
        {
            float[] alone = model.Run([canvases[i]])[0];
            double difference = MaxAbsDifference(batch[i], alone);
            TestContext.Out.WriteLine($"{family} canvas {i} padded vs alone (ONNX Runtime both): max |diff| {difference:E2}");
            Assert.That(difference, Is.LessThanOrEqualTo(Tolerance));
        }
    }

    [Test]
    public void LogitsIndexSelectsRowsInAnyOrder()
    {
        using var model = TinyModel.Create(Dream(), WeightType.Float32);
        int[][] canvases = [Tokens[..6], Tokens];
        (int Left, int Right)[] padding = [(3, 2), (0, 0)];
        int sequence = Tokens.Length;
        // Batch 0: its positions 5, 0, 2 (flat 3 + 5, ...); batch 1: positions 10, 1, 1 (a row may repeat).
        long[][] index = [[3 + 5 + 0, 3 + 0, 3 + 2], [sequence + 10, sequence + 1, sequence + 1]];
        (int Canvas, int Position)[][] expected = [[(0, 5), (0, 0), (0, 2)], [(1, 10), (1, 1), (1, 1)]];

        float[] logits = model.RunRaw(canvases, padding, index, out long[] shape);
        Assert.That(shape, Is.EqualTo(new long[] { 2, 3, model.Spec.Vocabulary }));
        double[][][] reference = canvases.Select(c => LiteralForward.Logits(model.Spec, model.Weights, c)).ToArray();
        double worst = 0;
        int v = model.Spec.Vocabulary;
        for (int b = 0; b < 2; b++)
            for (int r = 0; r < 3; r++)
            {
                (int canvas, int position) = expected[b][r];
                worst = Math.Max(worst, MaxAbsDifference(logits.AsSpan((b * 3 + r) * v, v).ToArray(), reference[canvas][position]));
            }
        TestContext.Out.WriteLine($"logits_index subset: max |diff| {worst:E2}");
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance));
    }

    [TestCase(CheckpointFamily.LLaDA, WeightType.Float16)]
    [TestCase(CheckpointFamily.LLaDA, WeightType.BFloat16)]
    [TestCase(CheckpointFamily.Dream, WeightType.Float16)]
    [TestCase(CheckpointFamily.Dream, WeightType.BFloat16)]
    public void HalfPrecisionWeightsMatchTheLiteralForwardPassOnTheRoundedWeights(CheckpointFamily family, WeightType type)
    {
        // Tied LLaDA: the embedding serves both the lookup (gathered, then cast) and the head (cast whole).
        using var model = TinyModel.Create(family == CheckpointFamily.LLaDA ? LLaDA(tied: true, linearBias: true) : Dream(), type,
            normBiases: family == CheckpointFamily.LLaDA);
        AssertCanvasesMatch(model, [Tokens, Tokens[2..7]], [(0, 0), (4, 2)]);
    }

    [Test]
    public void GraphHoldsNoWeightBytesAndCarriesTheMetadata()
    {
        using var model = TinyModel.Create(LLaDA(tied: false, linearBias: false), WeightType.Float32);
        long graphBytes = new FileInfo(model.GraphPath).Length;
        long weightBytes = new FileInfo(model.DataPath).Length;
        TestContext.Out.WriteLine($"graph {graphBytes} bytes, weights {weightBytes} bytes");
        Assert.That(graphBytes, Is.LessThan(weightBytes / 4), "the graph file should hold the graph only, the weights staying external");
        using var session = new InferenceSession(model.GraphPath);
        Assert.That(session.ModelMetadata.CustomMetadataMap, Is.EquivalentTo(TinyModel.Metadata));
        Assert.That(session.InputNames, Is.EqualTo(new[] { "input_ids", "attention_mask", "logits_index" }));
        Assert.That(session.OutputMetadata["logits"].Dimensions, Is.EqualTo(new[] { -1, -1, 40 }));
    }

    [Test]
    public void MissingOrMisshapenWeightsAreNamed()
    {
        ArchitectureSpec spec = LLaDA(tied: false, linearBias: false);
        using var model = TinyModel.Create(spec, WeightType.Float32);
        string up = WeightNames.Block(spec.Family, 1).Up + ".weight";

        var missing = model.External.Where(w => w.Key != up).ToDictionary();
        Assert.That(() => TransformerGraph.Write(Stream.Null, spec, missing, TinyModel.Metadata),
            Throws.ArgumentException.With.Message.Contains(up));

        var transposed = model.External.ToDictionary();
        transposed[up] = transposed[up] with { Shape = [spec.HiddenSize, spec.IntermediateSize] };
        Assert.That(() => TransformerGraph.Write(Stream.Null, spec, transposed, TinyModel.Metadata),
            Throws.ArgumentException.With.Message.Contains(up).And.Message.Contains("[48, 32]"));
    }

    /// <summary>Runs the canvases (padded as given) with every real position's logits selected and compares each with the literal pass of its canvas alone.</summary>
    private static void AssertCanvasesMatch(TinyModel model, int[][] canvases, (int Left, int Right)[]? padding = null)
    {
        float[][] logits = model.Run(canvases, padding);
        double worst = 0;
        for (int i = 0; i < canvases.Length; i++)
        {
            double[][] reference = LiteralForward.Logits(model.Spec, model.Weights, canvases[i]);
            worst = Math.Max(worst, MaxAbsDifference(logits[i], reference.SelectMany(row => row).ToArray()));
        }
        TestContext.Out.WriteLine($"{model.Spec.Family} {model.Type}: {canvases.Length} canvas(es), max |diff| {worst:E2}, " +
            $"max |logit| {logits.SelectMany(l => l).Max(Math.Abs):F2}");
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance));
    }

    private static double MaxAbsDifference(float[] actual, IReadOnlyList<double> expected)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Count));
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.That(double.IsFinite(actual[i]), $"logit {i} is {actual[i]}");
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }
        return worst;
    }

    private static double MaxAbsDifference(float[] actual, float[] expected) => MaxAbsDifference(actual, expected.Select(e => (double)e).ToArray());
}
