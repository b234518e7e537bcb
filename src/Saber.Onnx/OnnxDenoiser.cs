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
}

/// <summary>
/// A masked diffusion LM exported to ONNX, run on the CPU by ONNX Runtime: input <c>input_ids</c> int64
/// <c>[batch, sequence]</c>, output <c>logits</c> float32 or float16 <c>[batch, sequence, V]</c>. Canvases of
/// equal length run as one batch (there is no attention mask input, so unequal lengths are never padded);
/// each (batch, length) shape keeps its input and output buffers bound across steps, so a step allocates
/// no logits. The logits returned stay valid until the next <see cref="ForwardAsync"/>. Not thread-safe: a second
/// concurrent call throws, and a lock around calls is not enough, since the next call overwrites the logits the
/// previous caller may still be reading. To serve concurrent requests, make one <c>Saber.Service.SaberEngine</c> its
/// only caller: it batches every request into one pass per step and consumes the logits before the next pass.
/// </summary>
public sealed partial class OnnxDenoiser : IDenoiser, IDisposable
{
    public const string InputName = "input_ids";
    public const string OutputName = "logits";

    private readonly InferenceSession session;
    private readonly ILogger logger;
    private readonly Dictionary<(int Batch, int Length), BoundShape> shapes = [];
    private int running;

    private OnnxDenoiser(InferenceSession session, string path, int vocabulary, int maskId, int? maxPositions, string? weights, LogitsElementType type,
        ILogger logger)
    {
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

    /// <summary>Forward passes (ONNX Runtime runs) so far.</summary>
    public int Runs { get; private set; }

    /// <summary>Loads and checks a model.</summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a loadable ONNX model, or its inputs, outputs or metadata are not the expected ones.</exception>
    public static OnnxDenoiser Load(string path, OnnxEngineOptions? options = null, ILogger<OnnxDenoiser>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= new OnnxEngineOptions();
        if (options.IntraOpThreads < 0 || options.IntraOpThreads > OnnxEngineOptions.MaxIntraOpThreads)
            throw new ArgumentOutOfRangeException(nameof(options.IntraOpThreads), options.IntraOpThreads,
                $"Intra-op threads must lie in [0, {OnnxEngineOptions.MaxIntraOpThreads}] (four per core; 0: ONNX Runtime's default); got {options.IntraOpThreads}.");
        if (!File.Exists(path)) throw new FileNotFoundException($"No ONNX model at '{path}'.", path);

        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = options.OptimizationLevel, IntraOpNumThreads = options.IntraOpThreads };
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"'{path}' is not a loadable ONNX model: {e.Message}", e);
        }
        try
        {
            var (vocabulary, type) = CheckSignature(session, path);
            IReadOnlyDictionary<string, string> metadata = session.ModelMetadata.CustomMetadataMap;
            int maskId = options.MaskId ?? MetadataInt(metadata, "mask_id", path)
                ?? throw new InvalidDataException($"'{path}' has no mask_id metadata; set OnnxEngineOptions.MaskId.");
            if (maskId < 0 || maskId >= vocabulary)
                throw new InvalidDataException($"Mask id {maskId} of '{path}' lies outside the vocabulary [0, {vocabulary}).");
            int? maxPositions = MetadataInt(metadata, "max_positions", path);
            if (maxPositions <= 0)
                throw new InvalidDataException($"Metadata 'max_positions' of '{path}' must be > 0; it is {maxPositions}.");
            string? weights = metadata.TryGetValue("weights", out string? text) ? text : null;
            var denoiser = new OnnxDenoiser(session, path, vocabulary, maskId, maxPositions, weights, type, logger ?? (ILogger)NullLogger.Instance);
            denoiser.LogLoaded(path, vocabulary, maskId, type, maxPositions?.ToString(CultureInfo.InvariantCulture) ?? "unknown", options.IntraOpThreads);
            return denoiser;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private static (int Vocabulary, LogitsElementType Type) CheckSignature(InferenceSession session, string path)
    {
        string Describe(IReadOnlyDictionary<string, NodeMetadata> nodes) =>
            string.Join(", ", nodes.Select(n => $"{n.Key} {n.Value.ElementType.Name} [{string.Join(", ", n.Value.Dimensions)}]"));

        if (session.InputMetadata.Count != 1 || !session.InputMetadata.TryGetValue(InputName, out NodeMetadata? input))
            throw new InvalidDataException($"'{path}' must have one input '{InputName}'; it has {Describe(session.InputMetadata)}.");
        if (input.ElementType != typeof(long) || input.Dimensions.Length != 2)
            throw new InvalidDataException($"Input '{InputName}' of '{path}' must be int64 [batch, sequence]; it is {Describe(session.InputMetadata)}.");
        if (!session.OutputMetadata.TryGetValue(OutputName, out NodeMetadata? output))
            throw new InvalidDataException($"'{path}' has no output '{OutputName}'; it has {Describe(session.OutputMetadata)}.");
        LogitsElementType type = output.ElementType == typeof(float) ? LogitsElementType.Float32
            : output.ElementType == typeof(Float16) ? LogitsElementType.Float16
            : throw new InvalidDataException($"Output '{OutputName}' of '{path}' must be float32 or float16; it is {output.ElementType.Name}.");
        if (output.Dimensions.Length != 3 || output.Dimensions[2] <= 0)
            throw new InvalidDataException($"Output '{OutputName}' of '{path}' must be [batch, sequence, V] with a fixed V; it is [{string.Join(", ", output.Dimensions)}].");
        return (output.Dimensions[2], type);
    }

    private static int? MetadataInt(IReadOnlyDictionary<string, string> metadata, string key, string path)
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
        try
        {
            var result = new SequenceLogits[request.Canvases.Count];
            using var runOptions = new RunOptions();
            using CancellationTokenRegistration registration = cancellationToken.Register(() => runOptions.Terminate = true);
            // Equal lengths share a run, as many as fit one logits array; the order of the request is kept in the result.
            var groups = Enumerable.Range(0, request.Canvases.Count).GroupBy(i => request.Canvases[i].Length)
                .SelectMany(g => g.Chunk((int)Math.Max(1, Array.MaxLength / ((long)g.Key * VocabularySize))).Select(members => (Length: g.Key, Members: members)));
            foreach (var group in groups)
            {
                int[] members = group.Members;
                BoundShape shape = Shape(members.Length, group.Length);
                for (int m = 0; m < members.Length; m++)
                {
                    ReadOnlySpan<int> canvas = request.Canvases[members[m]].Span;
                    Span<long> ids = shape.InputIds.AsSpan(m * group.Length, group.Length);
                    for (int i = 0; i < canvas.Length; i++) ids[i] = canvas[i];
                }
                try
                {
                    session.RunWithBinding(runOptions, shape.Binding);
                }
                catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
                {
                    throw new OperationCanceledException(cancellationToken);
                }
                Runs++;
                for (int m = 0; m < members.Length; m++)
                    result[members[m]] = shape.Logits(m);
            }
            return ValueTask.FromResult<IReadOnlyList<SequenceLogits>>(result);
        }
        finally
        {
            Volatile.Write(ref running, 0);
        }
    }

    private BoundShape Shape(int batch, int length)
    {
        if (!shapes.TryGetValue((batch, length), out BoundShape? shape))
        {
            shape = new BoundShape(session, batch, length, VocabularySize, ElementType);
            shapes.Add((batch, length), shape);
            LogShape(batch, length);
        }
        return shape;
    }

    /// <summary>Input and output buffers of one (batch, length), bound to the session once.</summary>
    private sealed class BoundShape : IDisposable
    {
        private readonly int rows, vocabulary;
        private readonly float[]? float32;
        private readonly Float16[]? float16Bits;
        private readonly Half[]? float16;
        private readonly OrtValue input, output;

        public BoundShape(InferenceSession session, int batch, int length, int vocabulary, LogitsElementType type)
        {
            rows = length;
            this.vocabulary = vocabulary;
            InputIds = new long[batch * length];
            input = OrtValue.CreateTensorValueFromMemory(InputIds, [batch, length]);
            long[] outputShape = [batch, length, vocabulary];
            if (type == LogitsElementType.Float32)
            {
                float32 = new float[batch * length * vocabulary];
                output = OrtValue.CreateTensorValueFromMemory(float32, outputShape);
            }
            else
            {
                float16Bits = new Float16[batch * length * vocabulary];
                float16 = new Half[float16Bits.Length];
                output = OrtValue.CreateTensorValueFromMemory(float16Bits, outputShape);
            }
            Binding = session.CreateIoBinding();
            Binding.BindInput(InputName, input);
            Binding.BindOutput(OutputName, output);
        }

        public long[] InputIds { get; }
        public OrtIoBinding Binding { get; }

        public SequenceLogits Logits(int member)
        {
            int size = rows * vocabulary, start = member * size;
            if (float32 is not null) return SequenceLogits.FromFloat32(float32.AsMemory(start, size), rows, vocabulary);
            // ONNX Runtime's Float16 and Half share the IEEE binary16 layout.
            System.Runtime.InteropServices.MemoryMarshal.Cast<Float16, Half>(float16Bits!.AsSpan(start, size)).CopyTo(float16!.AsSpan(start, size));
            return SequenceLogits.FromFloat16(float16.AsMemory(start, size), rows, vocabulary);
        }

        public void Dispose()
        {
            Binding.Dispose();
            input.Dispose();
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
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Path}: V {Vocabulary}, mask id {MaskId}, {Type} logits, max positions {MaxPositions}, intra-op threads {Threads} (0: default)")]
    private partial void LogLoaded(string path, int vocabulary, int maskId, LogitsElementType type, string maxPositions, int threads);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Bound buffers for batch {Batch} x length {Length}")]
    private partial void LogShape(int batch, int length);
}
