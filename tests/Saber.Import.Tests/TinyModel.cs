using System.Buffers.Binary;
using Microsoft.ML.OnnxRuntime;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;

namespace Saber.Import.Tests;

/// <summary>
/// A tiny checkpoint with seeded random weights, written to a data file in one element type, with its graph built by
/// <see cref="TransformerGraph"/> beside it (in a temporary folder, deleted on dispose). <see cref="Weights"/> holds the
/// values as stored (rounded to float16 or bfloat16), the ones the literal forward pass must use.
/// </summary>
internal sealed class TinyModel : IDisposable
{
    public static readonly IReadOnlyDictionary<string, string> Metadata = new Dictionary<string, string>
    {
        ["mask_id"] = "39",
        ["max_positions"] = "64",
        ["weights"] = "random (GraphTests)",
    };

    private readonly string folder;
    private readonly InferenceSession session;

    private TinyModel(ArchitectureSpec spec, WeightType type, string folder, Dictionary<string, double[]> weights,
        Dictionary<string, ExternalTensor> external)
    {
        Spec = spec;
        Type = type;
        this.folder = folder;
        Weights = weights;
        External = external;
        session = new InferenceSession(GraphPath);
    }

    public ArchitectureSpec Spec { get; }
    public WeightType Type { get; }
    public IReadOnlyDictionary<string, double[]> Weights { get; }
    public IReadOnlyDictionary<string, ExternalTensor> External { get; }
    public string GraphPath => Path.Combine(folder, "model.onnx");
    public string DataPath => Path.Combine(folder, "model.weights");

    /// <param name="normBiases">Give every norm a bias, as a LLaDA config with include_bias (and no bias_for_layer_norm) does.</param>
    public static TinyModel Create(ArchitectureSpec spec, WeightType type, bool normBiases = false, int seed = 20261207)
    {
        string folder = Directory.CreateTempSubdirectory("saber-graph-").FullName;
        var random = new Random(seed);
        var weights = new Dictionary<string, double[]>();
        var external = new Dictionary<string, ExternalTensor>();
        using (var data = File.Create(Path.Combine(folder, "model.weights")))
        {
            void Add(string name, long[] shape, Func<double> value)
            {
                int count = (int)shape.Aggregate(1L, (a, b) => a * b);
                var stored = new double[count];
                byte[] bytes = new byte[count * (type == WeightType.Float32 ? 4 : 2)];
                for (int i = 0; i < count; i++)
                    stored[i] = Store((float)value(), type, bytes, i);
                external.Add(name, new ExternalTensor(name, type, shape, "model.weights", data.Position, bytes.Length));
                data.Write(bytes);
                weights.Add(name, stored);
            }
            double Uniform(double scale) => scale * (2 * random.NextDouble() - 1);
            void Linear(string prefix, int outputs, int inputs, bool bias)
            {
                Add(prefix + ".weight", [outputs, inputs], () => Uniform(1.7 / Math.Sqrt(inputs)));
                if (bias) Add(prefix + ".bias", [outputs], () => Uniform(0.1));
            }
            void Norm(string weightName)
            {
                Add(weightName, [spec.HiddenSize], () => 1 + Uniform(0.2));
                if (normBiases) Add(weightName[..^".weight".Length] + ".bias", [spec.HiddenSize], () => Uniform(0.1));
            }

            Add(WeightNames.Embedding(spec.Family), [spec.Vocabulary, spec.HiddenSize], () => Uniform(1));
            for (int layer = 0; layer < spec.Layers; layer++)
            {
                BlockNames block = WeightNames.Block(spec.Family, layer);
                int width = spec.Heads * spec.HeadDim;
                Norm(block.AttentionNorm);
                Linear(block.Query, width, spec.HiddenSize, spec.QkvBias);
                Linear(block.Key, spec.KvWidth, spec.HiddenSize, spec.QkvBias);
                Linear(block.Value, spec.KvWidth, spec.HiddenSize, spec.QkvBias);
                Linear(block.AttentionOut, spec.HiddenSize, width, spec.LinearBias);
                Norm(block.MlpNorm);
                Linear(block.Gate, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
                Linear(block.Up, spec.IntermediateSize, spec.HiddenSize, spec.LinearBias);
                Linear(block.Down, spec.HiddenSize, spec.IntermediateSize, spec.LinearBias);
            }
            Norm(WeightNames.FinalNorm(spec.Family));
            if (!spec.TiedEmbeddings) Linear(WeightNames.OutputHead(spec.Family), spec.Vocabulary, spec.HiddenSize, spec.LinearBias);
        }
        using (var graph = File.Create(Path.Combine(folder, "model.onnx")))
            TransformerGraph.Write(graph, spec, external, Metadata);
        return new TinyModel(spec, type, folder, weights, external);
    }

    /// <summary>Writes one value as the element type into <paramref name="bytes"/> and returns the value as stored.</summary>
    private static double Store(float value, WeightType type, byte[] bytes, int index)
    {
        switch (type)
        {
            case WeightType.Float32:
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * index), value);
                return value;
            case WeightType.Float16:
                var half = (Half)value;
                BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * index), half);
                return (double)half;
            default:
                // bfloat16: the float's upper 16 bits, rounded to nearest even.
                uint bits = BitConverter.SingleToUInt32Bits(value);
                ushort upper = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * index), upper);
                return BitConverter.UInt32BitsToSingle((uint)upper << 16);
        }
    }

    /// <summary>
    /// Runs the canvases as one batch, each padded with (left, right) mask-id positions (none when not given), asking
    /// for every real position's logits; returns each canvas's logits, [its length × V] flattened.
    /// </summary>
    public float[][] Run(int[][] canvases, (int Left, int Right)[]? padding = null)
    {
        padding ??= canvases.Select(_ => (0, 0)).ToArray();
        int sequence = canvases.Select((c, i) => padding[i].Left + c.Length + padding[i].Right).Distinct().Single();
        int rows = canvases.Max(c => c.Length);
        // Rows past a short canvas's length repeat its first position; they are dropped below.
        long[][] index = canvases.Select((c, b) => Enumerable.Range(0, rows)
            .Select(r => (long)(b * sequence + padding[b].Left + (r < c.Length ? r : 0))).ToArray()).ToArray();
        float[] logits = RunRaw(canvases, padding, index, out _);
        int v = Spec.Vocabulary;
        return canvases.Select((c, b) => logits.AsSpan(b * rows * v, c.Length * v).ToArray()).ToArray();
    }

    /// <summary>One run with the given logits_index [batch, rows]; returns the logits flattened and their shape.</summary>
    public float[] RunRaw(int[][] canvases, (int Left, int Right)[] padding, long[][] logitsIndex, out long[] shape)
    {
        int batch = canvases.Length;
        int sequence = padding[0].Left + canvases[0].Length + padding[0].Right;
        var ids = new long[batch * sequence];
        var mask = new long[batch * sequence];
        for (int b = 0; b < batch; b++)
        {
            Array.Fill(ids, Spec.MaskId, b * sequence, sequence);
            for (int t = 0; t < canvases[b].Length; t++)
            {
                ids[b * sequence + padding[b].Left + t] = canvases[b][t];
                mask[b * sequence + padding[b].Left + t] = 1;
            }
        }
        int rows = logitsIndex[0].Length;
        long[] index = logitsIndex.SelectMany(r => r).ToArray();
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [batch, sequence]);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [batch, sequence]);
        using var indexValue = OrtValue.CreateTensorValueFromMemory(index, [batch, rows]);
        using var runOptions = new RunOptions();
        using IDisposableReadOnlyCollection<OrtValue> outputs = session.Run(runOptions,
            ["input_ids", "attention_mask", "logits_index"], [idsValue, maskValue, indexValue], ["logits"]);
        shape = outputs[0].GetTensorTypeAndShape().Shape;
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose()
    {
        session.Dispose();
        Directory.Delete(folder, recursive: true);
    }
}
