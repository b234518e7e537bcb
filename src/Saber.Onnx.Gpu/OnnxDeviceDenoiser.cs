using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Saber.Cuda;

namespace Saber.Onnx.Gpu;

/// <summary>
/// A model directory's <c>model.onnx</c> run by ONNX Runtime's CUDA or TensorRT provider for <see cref="CudaSampler"/>: each
/// step reads the decode's device canvases and writes the logits into the sampler's device buffer, with ONNX Runtime and
/// the step kernels queued on the context's one stream. No logits reach the host and a forward pass returns without
/// waiting for the GPU (ONNX Runtime's end-of-run stream synchronisation is turned off).
/// <para>Per step it queues one int32 → int64 widening of the canvases (the graph takes int64 <c>input_ids</c>) and one
/// ONNX Runtime run. The attention mask (1 up to each sequence's canvas length; the decode's padding on the right) and
/// <c>logits_index</c> depend only on the decode's shape and are uploaded once per decode. A row-selecting graph (what
/// <c>saber import</c> writes) with one sequence computes only the rows from its prompt's end (written from that row of the
/// buffer on); with several it computes every row of the <c>[batch, length]</c> pitch, prompt rows included, since the
/// buffer's rows of one sequence lie at its canvas positions. A shifted graph (Dream) gets each row's prediction from the
/// position before, as on the CPU.</para>
/// <para>Not thread-safe: one forward pass at a time (a second concurrent call throws). For the host contract
/// (<see cref="IDenoiser"/>, <c>SaberEngine</c>, the server), load <see cref="OnnxDenoiser"/> with the same provider.</para>
/// </summary>
public sealed partial class OnnxDeviceDenoiser : IGpuDenoiser, IDisposable
{
    private readonly InferenceSession session;
    private readonly ModelMemory memory;
    private readonly ModelSignature model;
    private readonly RunOptions runOptions = new();
    private readonly ILogger logger;
    private readonly int elementBytes;
    private DecodeBinding? binding;
    private int running;
    private bool disposed;

    private OnnxDeviceDenoiser(InferenceSession session, ModelMemory memory, ModelSignature model, string path, ExecutionProvider provider, ILogger logger)
    {
        this.session = session;
        this.memory = memory;
        this.model = model;
        this.logger = logger;
        ModelPath = path;
        Provider = provider;
        elementBytes = model.ElementType == LogitsElementType.Float32 ? 4 : 2;
        // The sampler orders everything on the stream and waits only for its status block: ONNX Runtime must not synchronise.
        if (provider != ExecutionProvider.Cpu) runOptions.AddRunConfigEntry("disable_synchronize_execution_providers", "1");
    }

    public string ModelPath { get; }

    /// <summary>The provider the model runs on.</summary>
    public ExecutionProvider Provider { get; }

    public int VocabularySize => model.Vocabulary;
    public int MaskId => model.MaskId;
    public int? MaxSequenceLength => model.MaxPositions;
    public LogitsElementType ElementType => model.ElementType;

    /// <summary>ONNX Runtime runs so far.</summary>
    public int Runs { get; private set; }

    /// <summary>Times the inputs were bound for a new decode shape.</summary>
    public int Bindings { get; private set; }

    /// <summary>
    /// Loads <paramref name="path"/> on <paramref name="context"/>'s device with <paramref name="options"/>'s provider (default
    /// <see cref="ExecutionProvider.Cuda"/>), running on the context's stream.
    /// </summary>
    /// <exception cref="ArgumentException">The options ask for the CPU provider or another device than the context's.</exception>
    /// <exception cref="GpuUnavailableException">This process cannot run the provider (named: ONNX Runtime's GPU build, a library, the driver, the device).</exception>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a loadable model of the expected signature.</exception>
    public static OnnxDeviceDenoiser Load(CudaContext context, string path, OnnxEngineOptions? options = null, ILogger<OnnxDeviceDenoiser>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        options ??= new OnnxEngineOptions { Provider = ExecutionProvider.Cuda, DeviceId = context.Device };
        if (options.Provider == ExecutionProvider.Cpu)
            throw new ArgumentException("The device engine runs the CUDA or TensorRT provider; for the CPU load OnnxDenoiser.", nameof(options));
        if (options.DeviceId != context.Device)
            throw new ArgumentException($"The options name CUDA device {options.DeviceId}; the context is on device {context.Device}.", nameof(options));
        var memory = new CudaModelMemory(context);
        try
        {
            return Load(path, options, memory, context.Stream, logger);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The engine on any <see cref="ModelMemory"/>: the host kind with the CPU provider is how it is tested without a GPU. The engine
    /// owns <paramref name="memory"/> once loaded; when loading fails the caller still does.
    /// </summary>
    internal static OnnxDeviceDenoiser Load(string path, OnnxEngineOptions options, ModelMemory memory, nint stream, ILogger? logger)
    {
        var (session, model) = ModelSignature.Open(path, options, stream);
        try
        {
            var denoiser = new OnnxDeviceDenoiser(session, memory, model, path, options.Provider, logger ?? NullLogger.Instance);
            denoiser.LogLoaded(path, ExecutionProviders.EngineName(options.Provider), options.DeviceId, options.Precision, model.Vocabulary,
                model.MaskId, model.ElementType, model.MaxPositions?.ToString(CultureInfo.InvariantCulture) ?? "unknown",
                options.Provider == ExecutionProvider.TensorRt ? ExecutionProviders.EngineCacheDirectory(options, path) : "-");
            return denoiser;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public ValueTask ForwardAsync(GpuForwardRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        DecodeLayout layout = DecodeLayout.Of(request, model);
        if (Interlocked.Exchange(ref running, 1) == 1)
            throw new InvalidOperationException("OnnxDeviceDenoiser runs one forward pass at a time.");
        try
        {
            if (binding is null || !binding.Serves(layout, request.Logits))
            {
                binding?.Dispose();
                binding = null;
                binding = new DecodeBinding(session, memory, model, layout, request.Logits, elementBytes);
                Bindings++;
                LogBound(layout.Batch, layout.Length, layout.Rows);
            }
            // Both are queued on the stream: the widening, then the model's kernels (ONNX Runtime runs on the same stream).
            memory.WidenIds(request.Canvases, binding.InputIds, (long)layout.Batch * layout.Length);
            session.RunWithBinding(runOptions, binding.Binding);
            Runs++;
        }
        finally
        {
            Volatile.Write(ref running, 0);
        }
        return ValueTask.CompletedTask;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        binding?.Dispose();
        runOptions.Dispose();
        session.Dispose();
        memory.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Path} on {Engine} (device {Device}, precision {Precision}): V {Vocabulary}, mask id {MaskId}, {Type} logits, max positions {MaxPositions}, engine cache {EngineCache}")]
    private partial void LogLoaded(string path, string engine, int device, GpuPrecision precision, int vocabulary, int maskId, LogitsElementType type,
        string maxPositions, string engineCache);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Bound the model's inputs for batch {Batch} x length {Length} ({Rows} logits rows each)")]
    private partial void LogBound(int batch, int length, int rows);
}
