using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;

namespace Saber.Onnx;

/// <summary>Session settings of an <see cref="OnnxDenoiser"/>.</summary>
public sealed record OnnxEngineOptions
{
    /// <summary>The most intra-op threads accepted: four per logical core (more only thrash, and ONNX Runtime starts them all at load).</summary>
    public static int MaxIntraOpThreads => 4 * Environment.ProcessorCount;

    /// <summary>Threads inside one operator, in <c>[0, <see cref="MaxIntraOpThreads"/>]</c>; 0 lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>ONNX Runtime's graph optimisation level.</summary>
    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>The [MASK] id; when null it is read from the model's metadata (<c>mask_id</c>).</summary>
    public int? MaskId { get; init; }

    /// <summary>
    /// For a model with an <c>attention_mask</c> input: true (default) runs every call as one batch, canvases
    /// left-padded to the longest; false runs each length as its own batch (mask all ones), as for a model without one.
    /// With the padding layout of <see cref="OnnxDenoiser.PaddingAlignment"/> a padded canvas's logits were bit-identical
    /// to its logits alone in every test (x64, AVX-512 machine); false is the fallback for a platform where they are not.
    /// </summary>
    public bool RaggedBatches { get; init; } = true;

    /// <summary>
    /// The model's cache graph (docs/caching.md); null: <c>NAME.cache.onnx</c> beside <c>NAME.onnx</c>, when it exists. Without
    /// one the engine runs cache policy <c>none</c> only.
    /// </summary>
    public string? CacheGraphPath { get; init; }

    /// <summary>
    /// The most bytes the live key/value caches may hold together (default 4 GiB): a cache takes layers × 2 × key/value width ×
    /// 4 bytes a position (4 KiB for the shipped models, 112 KiB for Dream-7B, 1 MiB for LLaDA-8B), for the whole canvas, while its sequence decodes.
    /// </summary>
    public long MaxCacheBytes { get; init; } = 4L << 30;

    /// <summary>
    /// Where ONNX Runtime runs the model (default the CPU). <see cref="ExecutionProvider.Cuda"/> and
    /// <see cref="ExecutionProvider.TensorRt"/> need the GPU build of ONNX Runtime (package Saber.Native.Onnx.Gpu) and NVIDIA's libraries
    /// (<see cref="GpuRuntime"/>); without them loading fails with <see cref="GpuUnavailableException"/> naming what is missing.
    /// </summary>
    public ExecutionProvider Provider { get; init; } = ExecutionProvider.Cpu;

    /// <summary>The CUDA device a GPU provider runs on (default 0).</summary>
    public int DeviceId { get; init; }

    /// <summary>The arithmetic a GPU provider may use; other than <see cref="GpuPrecision.Model"/> for TensorRT only.</summary>
    public GpuPrecision Precision { get; init; } = GpuPrecision.Model;

    /// <summary>Where TensorRT keeps its engines and timing cache; null: <c>engine-cache/</c> in the model's directory.</summary>
    public string? EngineCacheDirectory { get; init; }

    /// <summary>Checks every setting that needs no model or GPU to check.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting out of range, named with its value.</exception>
    public void Validate()
    {
        if (MaxCacheBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxCacheBytes), MaxCacheBytes, $"The cache limit must be >= 0 bytes; got {MaxCacheBytes}.");
        if (IntraOpThreads < 0 || IntraOpThreads > MaxIntraOpThreads)
            throw new ArgumentOutOfRangeException(nameof(IntraOpThreads), IntraOpThreads,
                $"Intra-op threads must lie in [0, {MaxIntraOpThreads}] (four per core; 0: ONNX Runtime's default); got {IntraOpThreads}.");
        ExecutionProviders.Validate(this);
    }
}

/// <summary>
/// A masked diffusion LM exported to ONNX, run by ONNX Runtime on the CPU (or, with <see cref="OnnxEngineOptions.Provider"/>,
/// the forward pass on a GPU, its logits copied back to the host: docs/gpu.md): input <c>input_ids</c> int64
/// <c>[batch, sequence]</c>, optionally <c>attention_mask</c> int64 <c>[batch, sequence]</c> (1 = token, 0 = padding
/// on the left), output <c>logits</c> float32 or float16 <c>[batch, sequence, V]</c>. With an attention mask every
/// call is one run (unless <see cref="OnnxEngineOptions.RaggedBatches"/> is off): the canvases are padded to the
/// longest, on the left in multiples of <see cref="PaddingAlignment"/> and the remainder on the right (the padding holds
/// the mask id, a valid id; its value does not matter, since the model excludes padded keys from attention, each
/// row's positions count its real tokens only, and the padded rows' logits are sliced off), and each canvas gets the
/// logits of its own positions, bit-identical to its logits alone. Without one,
/// canvases of equal length run as one batch and unequal lengths run separately. Each (batch, length) shape keeps its
/// input and output buffers bound across steps (the most recently used <see cref="MaxBoundShapes"/> of them), so a step
/// allocates no logits. The session runs on the thread pool. The logits returned stay valid until the next <see cref="ForwardAsync"/>. Not thread-safe: a second
/// concurrent call throws, and a lock around calls is not enough, since the next call overwrites the logits the
/// previous caller may still be reading. To serve concurrent requests, make one <c>Saber.Service.SaberEngine</c> its
/// only caller: it batches every request into one pass per step and consumes the logits before the next pass.
/// <para><b>Row-selecting models</b> (what <c>saber import</c> writes) also take <c>logits_index</c> int64
/// <c>[batch, rows]</c>: flat indices (b × sequence + position) of the hidden states whose logits the model computes,
/// output as <c>logits</c> <c>[batch, rows, V]</c>. The engine then computes only the rows a request's
/// <see cref="DenoiseRequest.LogitsFrom"/> asks for (on a 126k vocabulary the head and the logits of prompt rows grow
/// with the prompt: with long prompts they are a large part of a step's work and memory), and applies a shifted model's convention (metadata <c>logits_shift</c> = 1, Dream: the prediction for
/// position i is the model's output at i − 1, at 0 for position 0) by the indices it passes, so the sampler always
/// receives the prediction for each position in that position's row.</para>
/// </summary>
public sealed partial class OnnxDenoiser : ICachingDenoiser, IDisposable
{
    public const string InputName = "input_ids";
    public const string OutputName = "logits";
    public const string AttentionMaskName = "attention_mask";
    public const string LogitsIndexName = "logits_index";

    /// <summary>
    /// A padded canvas gets its padding on the left in multiples of this many positions and the rest (fewer) on the
    /// right. ONNX Runtime's CPU softmax sums the key axis in SIMD lanes of up to 16 floats: padding that shifts the
    /// real keys by other than a multiple of the lane width changes the order of the sum and the logits' last bits
    /// (measured: up to 7.6e-6), while this layout keeps every canvas's logits bit-identical to its logits alone.
    /// </summary>
    public const int PaddingAlignment = 16;

    /// <summary>Bound (batch, length) shapes kept for reuse; the least recently used is released past this.</summary>
    public const int MaxBoundShapes = 16;

    private readonly InferenceSession session;
    private readonly ILogger logger;
    private readonly Dictionary<(int Batch, int Length, int Rows), BoundShape> shapes = [];
    private long uses;
    private int running;

    private readonly CacheGraph? cacheGraph;
    private readonly string? cacheUnavailable;

    private OnnxDenoiser(InferenceSession session, string path, int vocabulary, int maskId, int? maxPositions, string? weights, LogitsElementType type,
        bool attentionMask, bool selectsRows, bool shifted, bool ragged, ILogger logger, CacheGraph? cacheGraph, string? cacheUnavailable)
    {
        this.cacheGraph = cacheGraph;
        this.cacheUnavailable = cacheUnavailable;
        HasAttentionMask = attentionMask;
        SelectsRows = selectsRows;
        ShiftedLogits = shifted;
        PadsRaggedBatches = attentionMask && ragged;
        this.session = session;
        this.logger = logger;
        ModelPath = path;
        VocabularySize = vocabulary;
        MaskId = maskId;
        MaxPositions = maxPositions;
        WeightsDescription = weights;
        ElementType = type;
    }

    public string ModelPath { get; }
    public int VocabularySize { get; }
    public int MaskId { get; }

    /// <summary>The longest canvas the model accepts (metadata <c>max_positions</c>); null when the model does not say.</summary>
    public int? MaxPositions { get; }

    /// <inheritdoc />
    public int? MaxSequenceLength => MaxPositions;

    /// <summary>How the weights were made (metadata <c>weights</c>, e.g. the training run); null when the model does not say.</summary>
    public string? WeightsDescription { get; }

    /// <summary>The element type of the model's logits.</summary>
    public LogitsElementType ElementType { get; }

    /// <summary>Whether the model takes an <c>attention_mask</c> input, so that canvases of any lengths share one run.</summary>
    public bool HasAttentionMask { get; }

    /// <summary>Whether calls run as one left-padded batch: the model takes an attention mask and <see cref="OnnxEngineOptions.RaggedBatches"/> is on.</summary>
    public bool PadsRaggedBatches { get; }

    /// <summary>Whether the model takes <c>logits_index</c>, so that only the rows a request asks for are computed.</summary>
    public bool SelectsRows { get; }

    /// <summary>Whether the model's output at position i − 1 is its prediction for position i (metadata <c>logits_shift</c> = 1: Dream).</summary>
    public bool ShiftedLogits { get; }

    /// <summary>Forward passes (ONNX Runtime runs) so far.</summary>
    public int Runs => Volatile.Read(ref runs);

    private int runs;

    /// <summary>Runs of the cache graph so far (each one batch of cache windows; also counted in <see cref="Runs"/>).</summary>
    public int WindowRuns => Volatile.Read(ref windowRuns);

    /// <summary>Cache windows computed so far, over the <see cref="WindowRuns"/>.</summary>
    public int WindowsRun => Volatile.Read(ref windowsRun);

    private int windowRuns, windowsRun;

    /// <summary>Loads and checks a model.</summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a loadable ONNX model, or its inputs, outputs or metadata are not the expected ones.</exception>
    public static OnnxDenoiser Load(string path, OnnxEngineOptions? options = null, ILogger<OnnxDenoiser>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= new OnnxEngineOptions();
        var (session, model) = ModelSignature.Open(path, options);
        try
        {
            var (vocabulary, type, attentionMask, selectsRows, maskId, maxPositions, weights, shifted) = model;
            var (cacheGraph, cacheUnavailable) = OpenCacheGraph(path, options, vocabulary, maskId);
            var denoiser = new OnnxDenoiser(session, path, vocabulary, maskId, maxPositions, weights, type, attentionMask, selectsRows, shifted,
                options.RaggedBatches, logger ?? (ILogger)NullLogger.Instance, cacheGraph, cacheUnavailable);
            denoiser.LogLoaded(path, ExecutionProviders.EngineName(options.Provider), vocabulary, maskId, type,
                maxPositions?.ToString(CultureInfo.InvariantCulture) ?? "unknown", attentionMask, options.IntraOpThreads);
            return denoiser;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>The cache graph beside the model (or named by the options), checked by its metadata; its session loads on first use.</summary>
    private static (CacheGraph? Graph, string? Unavailable) OpenCacheGraph(string path, OnnxEngineOptions options, int vocabulary, int maskId)
    {
        string cachePath = options.CacheGraphPath
            ?? System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, System.IO.Path.GetFileNameWithoutExtension(path) + ".cache.onnx");
        if (!File.Exists(cachePath))
        {
            if (options.CacheGraphPath is not null) throw new FileNotFoundException($"No cache graph at '{cachePath}'.", cachePath);
            return (null, $"'{path}' has no cache graph ('{cachePath}' does not exist; 'saber import --cache-graph DIR' writes one)");
        }
        Dictionary<string, string> metadata = TransformerShape.ReadMetadata(cachePath);
        if (!metadata.TryGetValue("cache_graph", out string? flag) || flag != "1")
            throw new InvalidDataException($"'{cachePath}' is not a cache graph (its metadata has no cache_graph = 1).");
        TransformerShape shape = TransformerShape.FromMetadata(metadata, cachePath)
            ?? throw new InvalidDataException($"Cache graph '{cachePath}' does not state its architecture sizes (metadata layers, hidden_size, ...).");
        if (shape.Vocabulary != vocabulary)
            throw new InvalidDataException($"Cache graph '{cachePath}' has vocabulary {shape.Vocabulary}; the model '{path}' has {vocabulary}.");
        if (MetadataInt(metadata, "mask_id", cachePath) is int cacheMask && options.MaskId is null && cacheMask != maskId)
            throw new InvalidDataException($"Cache graph '{cachePath}' has mask id {cacheMask}; the model '{path}' has {maskId}.");
        return (new CacheGraph(cachePath, shape, options), null);
    }

    /// <summary>A session on <paramref name="path"/> with the engine's settings; a file ONNX Runtime cannot load is an InvalidDataException naming it as <paramref name="what"/>.</summary>
    /// <param name="stream">A <c>cudaStream_t</c> a GPU provider must run on, or 0 for its own.</param>
    /// <exception cref="GpuUnavailableException">A GPU provider was asked for and cannot run here.</exception>
    internal static InferenceSession OpenSession(string path, OnnxEngineOptions options, string what, nint stream = 0)
    {
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = options.OptimizationLevel, IntraOpNumThreads = options.IntraOpThreads };
        ExecutionProviders.Append(sessionOptions, options, path, stream);
        try
        {
            return new InferenceSession(path, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"'{path}' is not a loadable {what}: {e.Message}", e);
        }
    }

    /// <summary>The architecture sizes from the cache graph's metadata; null when the model has no cache graph.</summary>
    public TransformerShape? Architecture => cacheGraph?.Shape;

    /// <inheritdoc />
    public long? PassFlops(int positions, int queries, int logitsRows) => cacheGraph?.Shape.PassFlops(positions, queries, logitsRows);

    /// <inheritdoc />
    public string? CacheUnavailable => cacheUnavailable;

    /// <inheritdoc />
    public long CacheBytesPerPosition => cacheGraph?.Shape.BytesPerPosition ?? 0;

    /// <inheritdoc />
    public long MaxCacheBytes => cacheGraph?.MaxBytes ?? 0;

    /// <summary>Bytes the live caches hold now.</summary>
    public long CacheBytesInUse => cacheGraph?.BytesInUse ?? 0;

    /// <inheritdoc />
    public IDenoiserCache CreateCache(int positions)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (cacheGraph is null) throw new NotSupportedException($"Cannot cache keys and values: {cacheUnavailable}.");
        if (MaxPositions is int max && positions > max)
            throw new ArgumentOutOfRangeException(nameof(positions), positions, $"A canvas of {positions} positions is longer than the model's max_positions {max}.");
        return cacheGraph.Create(positions);
    }

    internal static (int Vocabulary, LogitsElementType Type, bool AttentionMask, bool SelectsRows) CheckSignature(InferenceSession session, string path)
    {
        string Describe(IReadOnlyDictionary<string, NodeMetadata> nodes) =>
            string.Join(", ", nodes.Select(n => $"{n.Key} {n.Value.ElementType.Name} [{string.Join(", ", n.Value.Dimensions)}]"));

        IReadOnlyDictionary<string, NodeMetadata> inputs = session.InputMetadata;
        bool attentionMask = inputs.ContainsKey(AttentionMaskName), selectsRows = inputs.ContainsKey(LogitsIndexName);
        if (inputs.Count != 1 + (attentionMask ? 1 : 0) + (selectsRows ? 1 : 0) || !inputs.TryGetValue(InputName, out NodeMetadata? input))
            throw new InvalidDataException(
                $"'{path}' must have the input '{InputName}' and optionally '{AttentionMaskName}' and '{LogitsIndexName}', nothing else; it has {Describe(inputs)}.");
        if (selectsRows && (inputs[LogitsIndexName].ElementType != typeof(long) || inputs[LogitsIndexName].Dimensions.Length != 2))
            throw new InvalidDataException(
                $"Input '{LogitsIndexName}' of '{path}' must be int64 [batch, rows] (flat indices batch × sequence + position); it is {Describe(inputs)}.");
        if (selectsRows && !attentionMask)
            throw new InvalidDataException($"'{path}' has '{LogitsIndexName}' but no '{AttentionMaskName}'; a row-selecting model must take both.");
        if (input.ElementType != typeof(long) || input.Dimensions.Length != 2)
            throw new InvalidDataException($"Input '{InputName}' of '{path}' must be int64 [batch, sequence]; it is {Describe(inputs)}.");
        if (attentionMask && (inputs[AttentionMaskName].ElementType != typeof(long) || inputs[AttentionMaskName].Dimensions.Length != 2))
            throw new InvalidDataException(
                $"Input '{AttentionMaskName}' of '{path}' must be int64 [batch, sequence] (1 = token, 0 = left padding); it is {Describe(inputs)}.");
        if (!session.OutputMetadata.TryGetValue(OutputName, out NodeMetadata? output))
            throw new InvalidDataException($"'{path}' has no output '{OutputName}'; it has {Describe(session.OutputMetadata)}.");
        LogitsElementType type = output.ElementType == typeof(float) ? LogitsElementType.Float32
            : output.ElementType == typeof(Float16) ? LogitsElementType.Float16
            : throw new InvalidDataException($"Output '{OutputName}' of '{path}' must be float32 or float16; it is {output.ElementType.Name}.");
        if (output.Dimensions.Length != 3 || output.Dimensions[2] <= 0)
            throw new InvalidDataException($"Output '{OutputName}' of '{path}' must be [batch, sequence, V] with a fixed V; it is [{string.Join(", ", output.Dimensions)}].");
        return (output.Dimensions[2], type, attentionMask, selectsRows);
    }

    internal static int? MetadataInt(IReadOnlyDictionary<string, string> metadata, string key, string path)
    {
        if (!metadata.TryGetValue(key, out string? text)) return null;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw new InvalidDataException($"Metadata '{key}' of '{path}' must be an integer; it is '{text}'.");
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        foreach (ReadOnlyMemory<int> canvas in request.Canvases)
        {
            if (canvas.Length == 0) throw new ArgumentException("A canvas is empty.", nameof(request));
            if (MaxPositions is int max && canvas.Length > max)
                throw new ArgumentException($"A canvas of {canvas.Length} positions is longer than the model's max_positions {max}.", nameof(request));
            if ((long)canvas.Length * VocabularySize > Array.MaxLength)
                throw new ArgumentException($"A canvas of {canvas.Length} positions has logits [{canvas.Length}, {VocabularySize}], more than the largest array holds.", nameof(request));
        }
        if (Interlocked.Exchange(ref running, 1) == 1)
            throw new InvalidOperationException("OnnxDenoiser runs one forward pass at a time.");
        // The session runs on the thread pool, so the caller gets its task back before the pass; the flag is
        // cleared when the pass ends, however it ends (CancellationToken.None: the body always runs to its finally).
        Task<IReadOnlyList<SequenceLogits>> pass = Task.Run(() =>
        {
            try
            {
                cancellationToken.ThrowIfCancellationRequested();
                return Run(request, cancellationToken);
            }
            finally
            {
                Volatile.Write(ref running, 0);
            }
        }, CancellationToken.None);
        return new ValueTask<IReadOnlyList<SequenceLogits>>(pass);
    }

    private IReadOnlyList<SequenceLogits> Run(DenoiseRequest request, CancellationToken cancellationToken)
    {
        var result = new SequenceLogits[request.Canvases.Count];
        if (result.Length == 0) return result;
        using var runOptions = new RunOptions();
        using CancellationTokenRegistration registration = cancellationToken.Register(() => runOptions.Terminate = true);
        // Windowed canvases run one by one on the cache graph; the rest as before.
        int[] plain = Enumerable.Range(0, request.Canvases.Count).Where(i => request.Windows?[i] is null).ToArray();
        int[] windowed = Enumerable.Range(0, request.Canvases.Count).Where(i => request.Windows?[i] is not null).ToArray();
        if (windowed.Length > 0)
        {
            SequenceLogits[] logits = RunWindows(request, windowed, runOptions, cancellationToken);
            for (int k = 0; k < windowed.Length; k++) result[windowed[k]] = logits[k];
        }
        if (plain.Length == 0) return result;
        IEnumerable<(int Length, int[] Members)> groups;
        if (PadsRaggedBatches)
        {
            // One run over every canvas, left-padded to the longest; split only where one logits array could not hold them.
            int longest = plain.Max(i => request.Canvases[i].Length);
            groups = plain.Chunk((int)Math.Max(1, Array.MaxLength / ((long)longest * VocabularySize)))
                .Select(members => (members.Max(i => request.Canvases[i].Length), members));
        }
        else
        {
            // Equal lengths share a run, as many as fit one logits array; the order of the request is kept in the result.
            groups = plain.GroupBy(i => request.Canvases[i].Length)
                .SelectMany(g => g.Chunk((int)Math.Max(1, Array.MaxLength / ((long)g.Key * VocabularySize))).Select(members => (g.Key, members)));
        }
        foreach (var (length, members) in groups)
        {
            // A row-selecting model computes each member's rows from its LogitsFrom on; the output has the most any
            // member needs, the others repeating their last index (those rows are not handed out).
            int rows = SelectsRows ? members.Max(i => request.Canvases[i].Length - From(request, i)) : length;
            BoundShape shape = Shape(members.Length, length, rows);
            for (int m = 0; m < members.Length; m++)
            {
                ReadOnlySpan<int> canvas = request.Canvases[members[m]].Span;
                int left = Left(length, canvas.Length);
                Span<long> ids = shape.InputIds.AsSpan(m * length, length);
                ids.Fill(MaskId);
                for (int i = 0; i < canvas.Length; i++) ids[left + i] = canvas[i];
                if (shape.AttentionMask is long[] mask)
                {
                    Span<long> row = mask.AsSpan(m * length, length);
                    row.Clear();
                    row.Slice(left, canvas.Length).Fill(1);
                }
                if (shape.LogitsIndex is long[] index)
                {
                    int from = From(request, members[m]), last = canvas.Length - 1;
                    for (int r = 0; r < rows; r++)
                    {
                        int position = Math.Min(from + r, last);
                        int source = ShiftedLogits ? Math.Max(position - 1, 0) : position;
                        index[m * rows + r] = (long)m * length + left + source;
                    }
                }
            }
            try
            {
                session.RunWithBinding(runOptions, shape.Binding);
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
            Interlocked.Increment(ref runs);
            for (int m = 0; m < members.Length; m++)
            {
                int canvasLength = request.Canvases[members[m]].Length;
                result[members[m]] = SelectsRows
                    ? shape.Logits(m, 0, canvasLength - From(request, members[m]), From(request, members[m]))
                    : shape.Logits(m, Left(length, canvasLength), canvasLength, 0);
            }
        }
        return result;
    }

    /// <summary>
    /// The canvases with a cache window, as one batch on the cache graph: per canvas the queries (every position for a
    /// refresh; for a shifted model also the position before each row asked for, whose output is that row's prediction) and
    /// the rows of the queries from LogitsFrom on.
    /// </summary>
    private SequenceLogits[] RunWindows(DenoiseRequest request, int[] windowed, RunOptions runOptions, CancellationToken cancellationToken)
    {
        var windows = new CacheGraph.Window[windowed.Length];
        for (int k = 0; k < windowed.Length; k++)
        {
            int i = windowed[k];
            CacheWindow window = request.Windows![i]!;
            ReadOnlySpan<int> canvas = request.Canvases[i].Span;
            if (window.Cache is not OnnxKeyValueCache cache || cache.Owner != cacheGraph)
                throw new ArgumentException($"Canvas {i}'s cache window holds a cache this engine did not make.", nameof(request));
            if (cache.IsDisposed) throw new ObjectDisposedException(nameof(IDenoiserCache), $"Canvas {i}'s cache was disposed.");
            if (cache.Positions != canvas.Length)
                throw new ArgumentException($"Canvas {i} has {canvas.Length} positions; its cache holds {cache.Positions}.", nameof(request));
            int[] queries = window.Refresh ? Enumerable.Range(0, canvas.Length).ToArray() : window.Queries;
            if (queries.Length == 0) throw new ArgumentException($"Canvas {i}'s window has no query.", nameof(request));
            for (int j = 0; j < queries.Length; j++)
                if (queries[j] < 0 || queries[j] >= canvas.Length || (j > 0 && queries[j] <= queries[j - 1]))
                    throw new ArgumentException($"Canvas {i}'s window queries must ascend within [0, {canvas.Length}); query {j} is {queries[j]}.", nameof(request));
            if (windowed.Count(other => request.Windows[other]!.Cache == cache) > 1)
                throw new ArgumentException($"Canvas {i}'s cache serves another canvas of the same call.", nameof(request));
            int from = Math.Clamp(request.LogitsFrom?[i] ?? 0, 0, canvas.Length - 1);
            int[] rows = queries.Where(p => p >= from).ToArray();
            int[] sources = ShiftedLogits ? rows.Select(p => Math.Max(p - 1, 0)).ToArray() : rows;
            int[] computed = ShiftedLogits ? queries.Union(sources).Order().ToArray() : queries;
            windows[k] = new CacheGraph.Window(cache, request.Canvases[i], computed, rows, sources);
        }
        try
        {
            var logits = new SequenceLogits[windows.Length];
            foreach (int[] group in WindowGroups(windows))
            {
                SequenceLogits[] run = cacheGraph!.Run(group.Select(k => windows[k]).ToArray(), MaskId, runOptions);
                for (int g = 0; g < group.Length; g++) logits[group[g]] = run[g];
                Interlocked.Increment(ref runs);
                Interlocked.Increment(ref windowRuns);
                Interlocked.Add(ref windowsRun, group.Length);
            }
            return logits;
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>
    /// The runs of a call's windows: every window computes as many queries as the longest of its run, so windows of similar
    /// query counts share a run (a block's window beside a full pass would compute the whole canvas). Sorted by query count,
    /// a run takes windows up to twice its smallest count (or 16 more). Padding queries sit at key slots after their canvas;
    /// a window whose padding would pass the model's positions (a rotary table's end) runs alone.
    /// </summary>
    private IEnumerable<int[]> WindowGroups(CacheGraph.Window[] windows)
    {
        var group = new List<int>();
        foreach (int k in Enumerable.Range(0, windows.Length).OrderBy(k => windows[k].Computed.Length).ThenBy(k => k))
        {
            int queries = windows[k].Computed.Length;
            bool fits = group.Count == 0 || (queries <= 2 * windows[group[0]].Computed.Length || queries <= windows[group[0]].Computed.Length + 16)
                && group.Append(k).All(j => windows[j].Canvas.Length + queries - windows[j].Computed.Length <= (MaxPositions ?? int.MaxValue));
            if (!fits)
            {
                yield return [.. group];
                group.Clear();
            }
            group.Add(k);
        }
        if (group.Count > 0) yield return [.. group];
    }

    /// <summary>The first position whose row a row-selecting model computes for canvas <paramref name="i"/>: the request's LogitsFrom, else 0.</summary>
    private int From(DenoiseRequest request, int i) => SelectsRows ? Math.Clamp(request.LogitsFrom?[i] ?? 0, 0, request.Canvases[i].Length - 1) : 0;

    /// <summary>The padding before a canvas of <paramref name="rows"/> positions in a run of <paramref name="length"/>.</summary>
    private static int Left(int length, int rows) => (length - rows) / PaddingAlignment * PaddingAlignment;

    private BoundShape Shape(int batch, int length, int rows)
    {
        if (!shapes.TryGetValue((batch, length, rows), out BoundShape? shape))
        {
            if (shapes.Count >= MaxBoundShapes)
            {
                // Ragged traffic makes many (batch, longest) shapes: release the least recently used (its arrays stay
                // alive for as long as an earlier call's logits still refer to them; only the native binding goes).
                var oldest = shapes.MinBy(s => s.Value.LastUse);
                oldest.Value.Dispose();
                shapes.Remove(oldest.Key);
            }
            shape = new BoundShape(session, batch, length, SelectsRows ? rows : length, VocabularySize, ElementType, HasAttentionMask, SelectsRows);
            shapes.Add((batch, length, rows), shape);
            LogShape(batch, length, rows);
        }
        shape.LastUse = ++uses;
        return shape;
    }

    /// <summary>Input and output buffers of one (batch, length, output rows), bound to the session once.</summary>
    private sealed class BoundShape : IDisposable
    {
        private readonly int rows, vocabulary;
        private readonly float[]? float32;
        private readonly Float16[]? float16Bits;
        private readonly Half[]? float16;
        private readonly OrtValue input, output;
        private readonly OrtValue? mask, logitsIndex;

        /// <param name="rows">Output rows per member: the sequence length, or a row-selecting model's row count.</param>
        public BoundShape(InferenceSession session, int batch, int length, int rows, int vocabulary, LogitsElementType type, bool attentionMask,
            bool selectsRows)
        {
            this.rows = rows;
            this.vocabulary = vocabulary;
            InputIds = new long[batch * length];
            input = OrtValue.CreateTensorValueFromMemory(InputIds, [batch, length]);
            if (attentionMask)
            {
                AttentionMask = new long[batch * length];
                mask = OrtValue.CreateTensorValueFromMemory(AttentionMask, [batch, length]);
            }
            if (selectsRows)
            {
                LogitsIndex = new long[batch * rows];
                logitsIndex = OrtValue.CreateTensorValueFromMemory(LogitsIndex, [batch, rows]);
            }
            long[] outputShape = [batch, rows, vocabulary];
            if (type == LogitsElementType.Float32)
            {
                float32 = new float[batch * rows * vocabulary];
                output = OrtValue.CreateTensorValueFromMemory(float32, outputShape);
            }
            else
            {
                float16Bits = new Float16[batch * rows * vocabulary];
                float16 = new Half[float16Bits.Length];
                output = OrtValue.CreateTensorValueFromMemory(float16Bits, outputShape);
            }
            Binding = session.CreateIoBinding();
            Binding.BindInput(InputName, input);
            if (mask is not null) Binding.BindInput(AttentionMaskName, mask);
            if (logitsIndex is not null) Binding.BindInput(LogitsIndexName, logitsIndex);
            Binding.BindOutput(OutputName, output);
        }

        public long[] InputIds { get; }
        public long[]? AttentionMask { get; }
        public long[]? LogitsIndex { get; }
        public OrtIoBinding Binding { get; }
        public long LastUse { get; set; }

        /// <summary>
        /// <paramref name="count"/> output rows of one member after its first <paramref name="skip"/> ones, as the rows of
        /// canvas positions from <paramref name="firstPosition"/> on.
        /// </summary>
        public SequenceLogits Logits(int member, int skip, int count, int firstPosition)
        {
            int size = count * vocabulary, start = (member * rows + skip) * vocabulary;
            if (float32 is not null) return SequenceLogits.FromFloat32(float32.AsMemory(start, size), count, vocabulary, firstPosition);
            // ONNX Runtime's Float16 and Half share the IEEE binary16 layout.
            System.Runtime.InteropServices.MemoryMarshal.Cast<Float16, Half>(float16Bits!.AsSpan(start, size)).CopyTo(float16!.AsSpan(start, size));
            return SequenceLogits.FromFloat16(float16.AsMemory(start, size), count, vocabulary, firstPosition);
        }

        public void Dispose()
        {
            Binding.Dispose();
            input.Dispose();
            mask?.Dispose();
            logitsIndex?.Dispose();
            output.Dispose();
        }
    }

    private bool disposed;

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (BoundShape shape in shapes.Values) shape.Dispose();
        shapes.Clear();
        session.Dispose();
        cacheGraph?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Path} on {Engine}: V {Vocabulary}, mask id {MaskId}, {Type} logits, max positions {MaxPositions}, attention mask {AttentionMask}, intra-op threads {Threads} (0: default)")]
    private partial void LogLoaded(string path, string engine, int vocabulary, int maskId, LogitsElementType type, string maxPositions, bool attentionMask, int threads);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Bound buffers for batch {Batch} x length {Length} ({Rows} logits rows each)")]
    private partial void LogShape(int batch, int length, int rows);
}
