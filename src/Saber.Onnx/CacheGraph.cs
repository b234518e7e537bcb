using System.Globalization;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx;

/// <summary>The architecture sizes a cache graph states in its metadata (what memory and FLOPs are computed from).</summary>
/// <param name="Layers">Transformer blocks.</param>
/// <param name="HiddenSize">Model width d.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="HeadDim">Width of one head.</param>
/// <param name="IntermediateSize">SwiGLU hidden width.</param>
/// <param name="Vocabulary">Logits width V.</param>
public sealed record TransformerShape(int Layers, int HiddenSize, int Heads, int KvHeads, int HeadDim, int IntermediateSize, int Vocabulary)
{
    /// <summary>Bytes one cached position takes: layers × 2 × kv_heads × head_dim × 4 (float32).</summary>
    public long BytesPerPosition => (long)Layers * 2 * KvHeads * HeadDim * sizeof(float);

    /// <summary>
    /// Multiply-add FLOPs (2 each) of <paramref name="queries"/> positions of a canvas of <paramref name="positions"/>: the q/k/v/o
    /// projections, attention over every position (QKᵀ and PV) and the SwiGLU per layer, and the head on
    /// <paramref name="logitsRows"/> rows. Norms, rotary and softmax (a few per element) are left out.
    /// </summary>
    public long PassFlops(int positions, int queries, int logitsRows)
    {
        long d = HiddenSize, q = (long)Heads * HeadDim, kv = (long)KvHeads * HeadDim;
        long perQuery = 2 * d * (2 * q + 2 * kv) + 6 * d * IntermediateSize + 4 * q * positions;
        return Layers * perQuery * queries + 2 * d * Vocabulary * logitsRows;
    }

    /// <summary>Reads the sizes from a model file's metadata (<c>layers</c>, <c>hidden_size</c>, ...); null when it has none.</summary>
    /// <exception cref="InvalidDataException">A size is present but not a positive integer, or only some are present.</exception>
    public static TransformerShape? FromMetadata(IReadOnlyDictionary<string, string> metadata, string path)
    {
        string[] keys = ["layers", "hidden_size", "heads", "kv_heads", "head_dim", "intermediate_size", "vocabulary"];
        int present = keys.Count(metadata.ContainsKey);
        if (present == 0) return null;
        var values = new int[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            if (!metadata.TryGetValue(keys[i], out string? text))
                throw new InvalidDataException($"'{path}' states some architecture sizes but not '{keys[i]}'.");
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out values[i]) || values[i] <= 0)
                throw new InvalidDataException($"Metadata '{keys[i]}' of '{path}' must be a positive integer; it is '{text}'.");
        }
        return new TransformerShape(values[0], values[1], values[2], values[3], values[4], values[5], values[6]);
    }

    /// <summary>
    /// The metadata of an ONNX file without loading it (loading would read every weight): the ModelProto's top-level
    /// <c>metadata_props</c> (field 14, key 1 / value 2), every other field skipped.
    /// </summary>
    public static Dictionary<string, string> ReadMetadata(string path)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using FileStream file = File.OpenRead(path);
        var input = new CodedInputStream(file);
        try
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (WireFormat.GetTagFieldNumber(tag) != 14 || WireFormat.GetTagWireType(tag) != WireFormat.WireType.LengthDelimited)
                {
                    input.SkipLastField();
                    continue;
                }
                ByteString entry = input.ReadBytes();
                var fields = new CodedInputStream(entry.ToByteArray());
                string key = "", value = "";
                uint inner;
                while ((inner = fields.ReadTag()) != 0)
                {
                    switch (WireFormat.GetTagFieldNumber(inner))
                    {
                        case 1: key = fields.ReadString(); break;
                        case 2: value = fields.ReadString(); break;
                        default: fields.SkipLastField(); break;
                    }
                }
                metadata[key] = value;
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"'{path}' is not an ONNX model file: {e.Message}", e);
        }
        return metadata;
    }
}

/// <summary>
/// A model's cache graph (<c>model.cache.onnx</c>, docs/caching.md) and the live caches made for it: inputs <c>input_ids</c>
/// and <c>query_positions</c> [batch, queries], <c>attention_mask</c> [batch, keys], <c>past_key_{i}</c> /
/// <c>past_value_{i}</c> [batch, kv_heads, keys, head_dim], <c>logits_index</c> [batch, rows]; outputs <c>logits</c>
/// [batch, rows, V] and <c>present_key_{i}</c> / <c>present_value_{i}</c> [batch, kv_heads, queries, head_dim]. Its session
/// loads on first use (it holds its own copy of the weights). Each windowed canvas runs alone (batch 1): its logits cannot
/// depend on the other canvases of a call.
/// </summary>
internal sealed class CacheGraph : IDisposable
{
    public const string QueryPositionsName = "query_positions";

    private readonly string path;
    private readonly OnnxEngineOptions options;
    private readonly Lock gate = new();
    private InferenceSession? session;
    private string[]? inputNames, outputNames;
    private long bytesInUse;

    public CacheGraph(string path, TransformerShape shape, OnnxEngineOptions options)
    {
        this.path = path;
        Shape = shape;
        MaxBytes = options.MaxCacheBytes;
        this.options = options;
    }

    public TransformerShape Shape { get; }
    public long MaxBytes { get; }
    public string Path => path;

    public long BytesInUse => Interlocked.Read(ref bytesInUse);

    public OnnxKeyValueCache Create(int positions)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(positions);
        if ((long)Shape.KvHeads * positions * Shape.HeadDim > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(positions), positions, $"A layer's keys for {positions} positions exceed the largest array.");
        long bytes = Shape.BytesPerPosition * positions;
        while (true)
        {
            long used = Interlocked.Read(ref bytesInUse);
            if (used + bytes > MaxBytes)
                throw new ArgumentOutOfRangeException(nameof(positions), positions,
                    $"A key/value cache for {positions} positions takes {bytes} bytes ({Shape.BytesPerPosition} a position: {Shape.Layers} layers x 2 x " +
                    $"{Shape.KvHeads * Shape.HeadDim} x 4 bytes); the engine's live caches hold {used} of at most {MaxBytes} bytes (OnnxEngineOptions.MaxCacheBytes).");
            if (Interlocked.CompareExchange(ref bytesInUse, used + bytes, used) == used) break;
        }
        try
        {
            EnsureSession();
            return new OnnxKeyValueCache(this, positions);
        }
        catch
        {
            Release(bytes);
            throw;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref bytesInUse, -bytes);

    private InferenceSession EnsureSession()
    {
        lock (gate)
        {
            if (session is not null) return session;
            InferenceSession loaded = OnnxDenoiser.OpenSession(path, options, "cache graph");
            try
            {
                var expectedInputs = new List<string> { OnnxDenoiser.InputName, QueryPositionsName, OnnxDenoiser.AttentionMaskName, OnnxDenoiser.LogitsIndexName };
                var expectedOutputs = new List<string> { OnnxDenoiser.OutputName };
                for (int l = 0; l < Shape.Layers; l++)
                {
                    expectedInputs.AddRange([$"past_key_{l}", $"past_value_{l}"]);
                    expectedOutputs.AddRange([$"present_key_{l}", $"present_value_{l}"]);
                }
                string? missing = expectedInputs.FirstOrDefault(n => !loaded.InputMetadata.ContainsKey(n))
                    ?? expectedOutputs.FirstOrDefault(n => !loaded.OutputMetadata.ContainsKey(n));
                if (missing is not null || loaded.InputMetadata.Count != expectedInputs.Count)
                    throw new InvalidDataException(
                        $"'{path}' is not a cache graph of {Shape.Layers} layers: it {(missing is null ? "has other inputs" : $"lacks '{missing}'")} " +
                        $"(inputs: {string.Join(", ", loaded.InputMetadata.Keys)}).");
                inputNames = [.. expectedInputs];
                outputNames = [.. expectedOutputs];
            }
            catch
            {
                loaded.Dispose();
                throw;
            }
            return session = loaded;
        }
    }

    /// <summary>
    /// Runs one canvas's window and returns the logits of <paramref name="rowPositions"/>: computes the positions
    /// <paramref name="computed"/> (ascending) against the cache for the rest, stores their keys and values in the cache, and
    /// takes row r of the output from computed position <paramref name="rowSources"/>[r] (a shifted model's i − 1).
    /// </summary>
    public SequenceLogits Run(OnnxKeyValueCache cache, ReadOnlySpan<int> canvas, int[] computed, int[] rowPositions, int[] rowSources, RunOptions runOptions)
    {
        InferenceSession run = session ?? throw new InvalidOperationException("The cache graph's session is not loaded.");
        int n = canvas.Length, q = computed.Length, rows = rowPositions.Length, kv = Shape.KvHeads, hd = Shape.HeadDim, layers = Shape.Layers;
        var ids = new long[q];
        var positions = new long[q];
        for (int j = 0; j < q; j++)
        {
            ids[j] = canvas[computed[j]];
            positions[j] = computed[j];
        }
        var mask = new long[n];
        mask.AsSpan().Fill(1);
        var index = new long[rows];
        for (int r = 0; r < rows; r++)
            index[r] = Array.BinarySearch(computed, rowSources[r]);

        var values = new List<OrtValue>(4 + 2 * layers);
        try
        {
            values.Add(OrtValue.CreateTensorValueFromMemory(ids, [1, q]));
            values.Add(OrtValue.CreateTensorValueFromMemory(positions, [1, q]));
            values.Add(OrtValue.CreateTensorValueFromMemory(mask, [1, n]));
            values.Add(OrtValue.CreateTensorValueFromMemory(index, [1, rows]));
            for (int l = 0; l < layers; l++)
            {
                values.Add(OrtValue.CreateTensorValueFromMemory(cache.Keys[l], [1, kv, n, hd]));
                values.Add(OrtValue.CreateTensorValueFromMemory(cache.Values[l], [1, kv, n, hd]));
            }
            using IDisposableReadOnlyCollection<OrtValue> outputs = run.Run(runOptions, inputNames!, values, outputNames!);
            int vocabulary = Shape.Vocabulary;
            if (cache.Logits.Length < rows * vocabulary) cache.Logits = new float[rows * vocabulary];
            outputs[0].GetTensorDataAsSpan<float>().CopyTo(cache.Logits);
            for (int l = 0; l < layers; l++)
            {
                Scatter(outputs[1 + 2 * l].GetTensorDataAsSpan<float>(), cache.Keys[l], computed, n, kv, hd);
                Scatter(outputs[2 + 2 * l].GetTensorDataAsSpan<float>(), cache.Values[l], computed, n, kv, hd);
            }
            return SequenceLogits.FromFloat32(cache.Logits.AsMemory(0, rows * vocabulary), rowPositions, vocabulary);
        }
        finally
        {
            foreach (OrtValue value in values) value.Dispose();
        }
    }

    /// <summary>Present [kv, q, hd] into the cache's [kv, n, hd] at the computed positions.</summary>
    private static void Scatter(ReadOnlySpan<float> present, float[] cache, int[] computed, int n, int kv, int hd)
    {
        int q = computed.Length;
        for (int h = 0; h < kv; h++)
            for (int j = 0; j < q; j++)
                present.Slice((h * q + j) * hd, hd).CopyTo(cache.AsSpan((h * n + computed[j]) * hd, hd));
    }

    public void Dispose()
    {
        lock (gate)
        {
            session?.Dispose();
            session = null;
        }
    }
}
