using Microsoft.ML.OnnxRuntime;
using Saber.Checkpoints.Fixtures;
using Saber.Import.Checkpoints;
using Saber.Import.Onnx;
using ReferenceForward = Saber.Checkpoints.Fixtures.LiteralForward;

namespace Saber.Import.Tests;

/// <summary>
/// A tiny fixture checkpoint (<see cref="CheckpointFixture.Write"/>, in a temporary folder deleted on dispose) with its
/// graph built by <see cref="TransformerGraph"/> beside it: the architecture is the importer's reading of config.json
/// (<see cref="CheckpointConfig.Read"/>), and every weight an external tensor pointing straight into the checkpoint's
/// safetensors file, so the graph runs on the very bytes the fixtures' literal pass (<see cref="Reference"/>) reads.
/// </summary>
internal sealed class TinyModel : IDisposable
{
    private readonly InferenceSession session;
    private readonly Lazy<ReferenceForward> reference;

    private TinyModel(FixtureOptions options, string folder, ArchitectureSpec spec, SafetensorsCheckpoint checkpoint,
        IReadOnlyDictionary<string, ExternalTensor> external, IReadOnlyDictionary<string, string> metadata)
    {
        Options = options;
        Folder = folder;
        Spec = spec;
        WeightBytes = checkpoint.Files.Sum(f => f.Length);
        External = external;
        Metadata = metadata;
        session = new InferenceSession(GraphPath);
        reference = new Lazy<ReferenceForward>(() => ReferenceForward.Load(folder));
    }

    /// <summary>The LLaDA shapes of the graph tests: 2 layers, width 32, 4 heads (no grouping), SwiGLU width 48.</summary>
    public static FixtureOptions LLaDA(bool tied = false, bool includeBias = false) => new()
    {
        Family = Family.LLaDA, Layers = 2, HiddenSize = 32, Heads = 4, KvHeads = 4, IntermediateSize = 48,
        TiedEmbeddings = tied, IncludeBias = includeBias,
    };

    /// <summary>The Dream shapes of the graph tests: 2 layers, width 48, 6 query heads on 2 key/value heads, SwiGLU width 64.</summary>
    public static FixtureOptions Dream() => new()
    {
        Family = Family.Dream, Layers = 2, HiddenSize = 48, Heads = 6, KvHeads = 2, IntermediateSize = 64,
    };

    /// <summary>What the fixture checkpoint was written with.</summary>
    public FixtureOptions Options { get; }

    /// <summary>The checkpoint folder (config.json, model.safetensors), which holds the graph too.</summary>
    public string Folder { get; }

    /// <summary>The architecture as the importer reads it from the checkpoint.</summary>
    public ArchitectureSpec Spec { get; }

    /// <summary>The graph's initializers: each checkpoint tensor where it lies in the safetensors file.</summary>
    public IReadOnlyDictionary<string, ExternalTensor> External { get; }

    /// <summary>The metadata written into the graph.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Bytes of the checkpoint's safetensors files together.</summary>
    public long WeightBytes { get; }

    public string GraphPath => Path.Combine(Folder, "model.onnx");

    /// <param name="options">The fixture to write (its tokenizer files are not needed and not written).</param>
    /// <param name="metadata">Metadata entries added to (or replacing) the defaults: mask_id and max_positions of the checkpoint.</param>
    public static TinyModel Create(FixtureOptions options, IReadOnlyDictionary<string, string>? metadata = null)
    {
        string folder = Directory.CreateTempSubdirectory("saber-graph-").FullName;
        options = options with { Tokenizer = false };
        CheckpointFixture.Write(folder, options);
        ArchitectureSpec spec = CheckpointConfig.Read(folder, maxPositions: null);
        SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(folder);
        Dictionary<string, ExternalTensor> external = checkpoint.Tensors.Values.ToDictionary(
            t => t.Name,
            t => new ExternalTensor(t.Name, t.WeightType ?? throw new InvalidDataException($"{t.Name}: dtype {t.DType}"), t.Shape,
                Path.GetFileName(t.File), t.Offset, t.Length));
        var entries = new Dictionary<string, string>
        {
            ["mask_id"] = spec.MaskId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["max_positions"] = spec.MaxPositions.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["weights"] = "fixture (GraphTests)",
        };
        foreach ((string key, string value) in metadata ?? new Dictionary<string, string>())
            entries[key] = value;
        using (var graph = File.Create(Path.Combine(folder, "model.onnx")))
            TransformerGraph.Write(graph, spec, external, entries);
        return new TinyModel(options, folder, spec, checkpoint, external, entries);
    }

    /// <summary>The fixtures' literal forward pass of one unpadded canvas: raw logits [position, V] in double precision.</summary>
    public double[,] Reference(int[] tokens) => reference.Value.Run(tokens);

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
        Directory.Delete(Folder, recursive: true);
    }
}
