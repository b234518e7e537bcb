using Microsoft.ML.OnnxRuntime;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// TransformerGraph's unit check: tiny fixture checkpoints with random weights (<see cref="TinyModel"/>), their graph run
/// by ONNX Runtime (all optimisations on, so its fusions are part of what is checked) against the fixtures' literal
/// forward pass in double loops (<see cref="ReferenceForward"/>, reading the same safetensors file).
/// Logits reach about 4 (untied) to 29 (tied: the head is the unit-variance embedding); every comparison allows 1e-4
/// absolute (float32 graph against a double reference; measured differences are printed to the test output).
/// </summary>
public sealed class GraphTests
{
    private const double Tolerance = 1e-4;

    private static readonly int[] Tokens = [5, 17, 3, 33, 8, 21, 0, 12, 30, 7, 19];

    // include_bias gives every linear layer and the head a bias; the norms have none (the fixture writes
    // bias_for_layer_norm: false, and the importer refuses norm biases).
    [TestCase(false, false, TestName = "LLaDA untied, no biases: one row, every position")]
    [TestCase(true, false, TestName = "LLaDA tied: one row, every position")]
    [TestCase(false, true, TestName = "LLaDA untied with include_bias (linear and head biases): one row, every position")]
    [TestCase(true, true, TestName = "LLaDA tied with include_bias: one row, every position")]
    public void OneRowMatchesTheLiteralForwardPass(bool tied, bool includeBias)
    {
        using var model = TinyModel.Create(TinyModel.LLaDA(tied, includeBias));
        AssertCanvasesMatch(model, [Tokens]);
    }

    [Test]
    public void DreamGroupedQueryAttentionMatchesTheLiteralForwardPass()
    {
        using var model = TinyModel.Create(TinyModel.Dream());
        AssertCanvasesMatch(model, [Tokens]);
    }

    [TestCase(Family.LLaDA)]
    [TestCase(Family.Dream)]
    public void PaddedRowsOfARaggedBatchMatchEachRowAlone(Family family)
    {
        using var model = TinyModel.Create(family == Family.LLaDA ? TinyModel.LLaDA(includeBias: true) : TinyModel.Dream());
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
        using var model = TinyModel.Create(TinyModel.Dream());
        int[][] canvases = [Tokens[..6], Tokens];
        (int Left, int Right)[] padding = [(3, 2), (0, 0)];
        int sequence = Tokens.Length;
        // Batch 0: its positions 5, 0, 2 (flat 3 + 5, ...); batch 1: positions 10, 1, 1 (a row may repeat).
        long[][] index = [[3 + 5 + 0, 3 + 0, 3 + 2], [sequence + 10, sequence + 1, sequence + 1]];
        (int Canvas, int Position)[][] expected = [[(0, 5), (0, 0), (0, 2)], [(1, 10), (1, 1), (1, 1)]];

        float[] logits = model.RunRaw(canvases, padding, index, out long[] shape);
        Assert.That(shape, Is.EqualTo(new long[] { 2, 3, model.Spec.Vocabulary }));
        double[][,] reference = canvases.Select(model.Reference).ToArray();
        double worst = 0;
        int v = model.Spec.Vocabulary;
        for (int b = 0; b < 2; b++)
            for (int r = 0; r < 3; r++)
            {
                (int canvas, int position) = expected[b][r];
                worst = Math.Max(worst, MaxAbsDifference(logits.AsSpan((b * 3 + r) * v, v).ToArray(),
                    Enumerable.Range(0, v).Select(j => reference[canvas][position, j]).ToArray()));
            }
        TestContext.Out.WriteLine($"logits_index subset: max |diff| {worst:E2}");
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance));
    }

    [TestCase(Family.LLaDA, FixtureDType.F16)]
    [TestCase(Family.LLaDA, FixtureDType.BF16)]
    [TestCase(Family.Dream, FixtureDType.F16)]
    [TestCase(Family.Dream, FixtureDType.BF16)]
    public void HalfPrecisionWeightsMatchTheLiteralForwardPassOnTheRoundedWeights(Family family, FixtureDType type)
    {
        // Tied LLaDA: the embedding serves both the lookup (gathered, then cast) and the head (cast whole).
        using var model = TinyModel.Create((family == Family.LLaDA ? TinyModel.LLaDA(tied: true, includeBias: true) : TinyModel.Dream())
            with { DType = type });
        AssertCanvasesMatch(model, [Tokens, Tokens[2..7]], [(0, 0), (4, 2)]);
    }

    [Test]
    public void GraphHoldsNoWeightBytesAndCarriesTheMetadata()
    {
        using var model = TinyModel.Create(TinyModel.LLaDA());
        long graphBytes = new FileInfo(model.GraphPath).Length;
        long weightBytes = model.WeightBytes;
        TestContext.Out.WriteLine($"graph {graphBytes} bytes, weights {weightBytes} bytes");
        Assert.That(graphBytes, Is.LessThan(weightBytes / 4), "the graph file should hold the graph only, the weights staying external");
        using var session = new InferenceSession(model.GraphPath);
        Assert.That(session.ModelMetadata.CustomMetadataMap, Is.EquivalentTo(model.Metadata));
        Assert.That(session.InputNames, Is.EqualTo(new[] { "input_ids", "attention_mask", "logits_index" }));
        Assert.That(session.OutputMetadata["logits"].Dimensions, Is.EqualTo(new[] { -1, -1, FixtureVocabulary.LLaDA.EmbeddingSize }));
    }

    [Test]
    public void MissingOrMisshapenWeightsAreNamed()
    {
        using var model = TinyModel.Create(TinyModel.LLaDA());
        ArchitectureSpec spec = model.Spec;
        string up = WeightNames.Block(spec.Family, 1).Up + ".weight";

        var missing = model.External.Where(w => w.Key != up).ToDictionary();
        Assert.That(() => TransformerGraph.Write(Stream.Null, spec, missing, model.Metadata),
            Throws.ArgumentException.With.Message.Contains(up));

        var transposed = model.External.ToDictionary();
        transposed[up] = transposed[up] with { Shape = [spec.HiddenSize, spec.IntermediateSize] };
        Assert.That(() => TransformerGraph.Write(Stream.Null, spec, transposed, model.Metadata),
            Throws.ArgumentException.With.Message.Contains(up).And.Message.Contains("[48, 32]"));
    }

    /// <summary>Runs the canvases (padded as given) with every real position's logits selected and compares each with the literal pass of its canvas alone.</summary>
    private static void AssertCanvasesMatch(TinyModel model, int[][] canvases, (int Left, int Right)[]? padding = null)
    {
        float[][] logits = model.Run(canvases, padding);
        double worst = 0;
        for (int i = 0; i < canvases.Length; i++)
        {
            double[,] reference = model.Reference(canvases[i]);
            worst = Math.Max(worst, MaxAbsDifference(logits[i], reference.Cast<double>().ToArray()));
        }
        TestContext.Out.WriteLine($"{model.Spec.Family} {model.Options.DType}: {canvases.Length} canvas(es), max |diff| {worst:E2}, " +
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
