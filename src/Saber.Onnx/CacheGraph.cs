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
/// loads on first use (it holds its own copy of the weights). The windowed canvases of a call run as one batch.
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
    /// Runs the windows of <paramref name="windows"/> as one batch and returns each one's logits: computes each window's
    /// <see cref="Window.Computed"/> positions against its cache for the rest, stores their keys and values in the cache, and
    /// takes row r from computed position <see cref="Window.RowSources"/>[r] (a shifted model's i − 1).
    /// </summary>
    /// <remarks>
    /// Canvases and windows of different sizes share the run by padding: key slots past a canvas are masked out, and a
    /// window with fewer queries than the longest gets padding queries (the mask id) at key slots after its canvas, so their
    /// keys and values land in masked slots and every real query's arithmetic is its arithmetic alone (the rows of the padded
    /// keys add exact zeros). A lone window binds its cache arrays as the past without a copy.
    /// </remarks>
    public SequenceLogits[] Run(IReadOnlyList<Window> windows, int maskId, RunOptions runOptions)
    {
        InferenceSession run = session ?? throw new InvalidOperationException("The cache graph's session is not loaded.");
        int batch = windows.Count, kv = Shape.KvHeads, hd = Shape.HeadDim, layers = Shape.Layers, vocabulary = Shape.Vocabulary;
        int queries = windows.Max(w => w.Computed.Length);
        int keys = windows.Max(w => w.Canvas.Length + queries - w.Computed.Length);
        int rows = Math.Max(1, windows.Max(w => w.RowPositions.Length));
        bool lone = batch == 1 && keys == windows[0].Canvas.Length;
        var ids = new long[batch * queries];
        var positions = new long[batch * queries];
        var mask = new long[batch * keys];
        var index = new long[batch * rows];
        for (int b = 0; b < batch; b++)
        {
            Window w = windows[b];
            ReadOnlySpan<int> canvas = w.Canvas.Span;
            int q = w.Computed.Length;
            for (int j = 0; j < queries; j++)
            {
                ids[b * queries + j] = j < q ? canvas[w.Computed[j]] : maskId;
                positions[b * queries + j] = j < q ? w.Computed[j] : canvas.Length + (j - q);   // padding: masked slots after the canvas
            }
            mask.AsSpan(b * keys, canvas.Length).Fill(1);
            for (int r = 0; r < rows; r++)
            {
                int source = r < w.RowSources.Length ? w.RowSources[r] : w.RowSources.Length > 0 ? w.RowSources[^1] : w.Computed[0];
                index[b * rows + r] = (long)b * queries + Array.BinarySearch(w.Computed, source);
            }
        }

        var values = new List<OrtValue>(4 + 2 * layers);
        try
        {
            values.Add(OrtValue.CreateTensorValueFromMemory(ids, [batch, queries]));
            values.Add(OrtValue.CreateTensorValueFromMemory(positions, [batch, queries]));
            values.Add(OrtValue.CreateTensorValueFromMemory(mask, [batch, keys]));
            values.Add(OrtValue.CreateTensorValueFromMemory(index, [batch, rows]));
            for (int l = 0; l < layers; l++)
            {
                values.Add(OrtValue.CreateTensorValueFromMemory(lone ? windows[0].Cache.Keys[l] : Gather(windows, c => c.Keys[l], keys), [batch, kv, keys, hd]));
                values.Add(OrtValue.CreateTensorValueFromMemory(lone ? windows[0].Cache.Values[l] : Gather(windows, c => c.Values[l], keys), [batch, kv, keys, hd]));
            }
            using IDisposableReadOnlyCollection<OrtValue> outputs = run.Run(runOptions, inputNames!, values, outputNames!);
            ReadOnlySpan<float> logits = outputs[0].GetTensorDataAsSpan<float>();
            var result = new SequenceLogits[batch];
            for (int b = 0; b < batch; b++)
            {
                Window w = windows[b];
                OnnxKeyValueCache cache = w.Cache;
                int count = w.RowPositions.Length * vocabulary;
                if (cache.Logits.Length < count) cache.Logits = new float[count];
                logits.Slice(b * rows * vocabulary, count).CopyTo(cache.Logits);
                for (int l = 0; l < layers; l++)
                {
                    Scatter(outputs[1 + 2 * l].GetTensorDataAsSpan<float>().Slice(b * kv * queries * hd, kv * queries * hd), cache.Keys[l], w.Computed, queries,
                        w.Canvas.Length, kv, hd);
                    Scatter(outputs[2 + 2 * l].GetTensorDataAsSpan<float>().Slice(b * kv * queries * hd, kv * queries * hd), cache.Values[l], w.Computed, queries,
                        w.Canvas.Length, kv, hd);
                }
                result[b] = SequenceLogits.FromFloat32(cache.Logits.AsMemory(0, count), w.RowPositions, vocabulary);
            }
            return result;
        }
        finally
        {
            foreach (OrtValue value in values) value.Dispose();
        }
    }

    /// <summary>One canvas's part of a batched run: its cache, canvas, computed positions (ascending), the rows it returns and their sources.</summary>
    public sealed record Window(OnnxKeyValueCache Cache, ReadOnlyMemory<int> Canvas, int[] Computed, int[] RowPositions, int[] RowSources);

    /// <summary>Every window's cached [kv, n, hd] in a batch tensor [batch, kv, keys, hd], the slots past each canvas zero.</summary>
    private float[] Gather(IReadOnlyList<Window> windows, Func<OnnxKeyValueCache, float[]> layer, int keys)
    {
        int kv = Shape.KvHeads, hd = Shape.HeadDim;
        var past = new float[windows.Count * kv * keys * hd];
        for (int b = 0; b < windows.Count; b++)
        {
            float[] cached = layer(windows[b].Cache);
            int n = windows[b].Canvas.Length;
            if (windows[b].Computed.Length == n) continue;   // a full pass replaces every slot: its past is never read
            for (int h = 0; h < kv; h++)
                cached.AsSpan(h * n * hd, n * hd).CopyTo(past.AsSpan(((b * kv + h) * keys) * hd));
        }
        return past;
    }

    /// <summary>One window's present [kv, queries, hd] into its cache's [kv, n, hd] at the computed positions (padding queries dropped).</summary>
    private static void Scatter(ReadOnlySpan<float> present, float[] cache, int[] computed, int queries, int n, int kv, int hd)
    {
        for (int h = 0; h < kv; h++)
            for (int j = 0; j < computed.Length; j++)
                present.Slice((h * queries + j) * hd, hd).CopyTo(cache.AsSpan((h * n + computed[j]) * hd, hd));
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
