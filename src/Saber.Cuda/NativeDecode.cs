using Saber.Native;

namespace Saber.Cuda;

/// <summary>One native decode and its logits buffer, with host copies of what the sampler reads back.</summary>
internal sealed unsafe class NativeDecode : IDisposable
{
    private readonly CudaContext context;
    private readonly DecodeHandle handle = new();
    private readonly int[] promptLengths;
    private readonly int generation, vocabulary;
    private readonly bool saber;
    private DeviceBuffer? logits;
    private nint canvasPointer;
    private LogitsElementType? elementType;
    private IReadOnlyList<int>? sequenceLengths;

    private readonly int[] canvases;      // [batch, length]
    private readonly int[] done;
    private readonly int[] events, tokens;
    private readonly float[] confidences, deltas;

    private NativeDecode(CudaContext context, int batch, int length, int generation, int vocabulary, int[] promptLengths, bool saber)
    {
        this.context = context;
        Length = length;
        this.generation = generation;
        this.vocabulary = vocabulary;
        this.promptLengths = promptLengths;
        this.saber = saber;
        canvases = new int[batch * length];
        Nfe = new int[batch];
        done = new int[batch];
        Done = new bool[batch];
        events = new int[generation];
        tokens = new int[generation];
        confidences = new float[generation];
        deltas = new float[generation];
    }

    /// <summary>Row pitch of canvases and logits: longest prompt + G.</summary>
    public int Length { get; }
    public int[] Nfe { get; }
    public bool[] Done { get; }

    public static NativeDecode Create(CudaContext context, DecodeOptions options, int vocabulary, int maskId, IReadOnlyList<ReadOnlyMemory<int>> prompts)
    {
        var native = ToNative(options);
        int[] lengths = prompts.Select(p => p.Length).ToArray();
        int[] tokens = prompts.SelectMany(p => p.ToArray()).ToArray();
        nint raw;
        fixed (int* t = tokens)
        fixed (int* l = lengths)
            NativeStatus.Check(SaberNative.DecodeCreate(context.Handle.Value, &native, vocabulary, maskId, prompts.Count, t, l, 1, &raw), "saber_decode_create");
        int length;
        var decode = new NativeDecode(context, prompts.Count, lengths.Max() + options.GenerationLength, options.GenerationLength, vocabulary, lengths,
            options.Strategy is SaberStrategy);
        decode.handle.Adopt(raw, context.Handle);
        NativeStatus.Check(SaberNative.DecodeLength(raw, &length), "saber_decode_length");
        if (length != decode.Length) throw new InvalidOperationException($"native row pitch {length} differs from {decode.Length}");
        return decode;
    }

    /// <summary>The C ABI's options for <paramref name="o"/> (fields a strategy does not use hold valid placeholders).</summary>
    internal static SaberDecodeOptions ToNative(DecodeOptions o)
    {
        var n = new SaberDecodeOptions
        {
            GenerationLength = o.GenerationLength,
            BlockLength = o.EffectiveBlockLength,
            Temperature = o.Temperature,
            Seed = o.Seed,
            Backtracking = 1,
            MinTokensPerStep = 1,
            RemaskDivisor = 1,
            Threshold = 1f,
            Factor = 1f,
            Steps = 1,
        };
        switch (o.Strategy)
        {
            case SaberStrategy s:
                n.Strategy = (int)Native.SaberStrategy.Saber;
                n.Variant = (int)(s.Variant == SaberVariant.Paper ? Native.SaberVariant.Paper : Native.SaberVariant.Reference);
                n.MinTokensPerStep = s.MinTokensPerStep;
                n.RemaskDivisor = s.RemaskDivisor;
                n.Backtracking = s.Backtracking ? 1 : 0;
                n.UseFixedThreshold = s.FixedThreshold is null ? 0 : 1;
                n.FixedThreshold = s.FixedThreshold ?? 0f;
                break;
            case LowConfidenceStrategy lc:
                n.Strategy = (int)Native.SaberStrategy.LowConfidence;
                n.Steps = lc.Steps;
                n.Metric = (int)lc.Metric;   // same order: maxprob, margin, negentropy, random
                break;
            case ThresholdStrategy t:
                n.Strategy = (int)Native.SaberStrategy.Threshold;
                n.Threshold = t.Threshold;
                break;
            case FactorStrategy f:
                n.Strategy = (int)Native.SaberStrategy.Factor;
                n.Factor = f.Factor;
                break;
            default:
                throw new NotSupportedException($"Unknown strategy {o.Strategy.GetType().Name}.");
        }
        return n;
    }

    /// <summary>Copies canvases, NFE and done flags back from the device.</summary>
    public void Read()
    {
        fixed (int* c = canvases)
        fixed (int* n = Nfe)
        fixed (int* d = done)
            NativeStatus.Check(SaberNative.DecodeRead(handle.Value, c, n, d), "saber_decode_read");
        for (int b = 0; b < done.Length; b++) Done[b] = done[b] != 0;
    }

    /// <summary>Sequence <paramref name="b"/>'s canvas (prompt + G), a fresh array.</summary>
    /// <summary>The prompt length of sequence <paramref name="b"/>.</summary>
    public int PromptLength(int b) => promptLengths[b];

    /// <summary>Every sequence's prompt length.</summary>
    public IReadOnlyList<int> PromptLengths => promptLengthsView ??= Array.AsReadOnly(promptLengths);

    private IReadOnlyList<int>? promptLengthsView;

    public int[] Canvas(int b) => canvases.AsSpan(b * Length, promptLengths[b] + generation).ToArray();

    /// <summary>Sequences in the batch.</summary>
    public int Batch => Nfe.Length;

    /// <summary>Per sequence, its canvas length P_b + G.</summary>
    public IReadOnlyList<int> SequenceLengths => sequenceLengths ??= Array.AsReadOnly(promptLengths.Select(p => p + generation).ToArray());

    /// <summary>Device address of the canvases, int32 [batch, length].</summary>
    public nint CanvasPointer
    {
        get
        {
            if (canvasPointer == 0)
            {
                void* pointer;
                NativeStatus.Check(SaberNative.DecodeCanvasPointer(handle.Value, &pointer), "saber_decode_canvas_pointer");
                canvasPointer = (nint)pointer;
            }
            return canvasPointer;
        }
    }

    /// <summary>
    /// Device address of the [batch, length, V] logits buffer for logits of <paramref name="type"/>, allocated on
    /// first use; every step of a decode must use the element type of its first.
    /// </summary>
    public nint LogitsPointer(LogitsElementType type, int step)
    {
        elementType ??= type;
        if (type != elementType)
            throw new InvalidLogitsException($"Step {step}: logits are {type}; earlier logits were {elementType}.");
        logits ??= DeviceBuffer.Create(context, RowPitchBytes * (ulong)Batch);
        return logits.Pointer;
    }

    private ulong RowPitchBytes => (ulong)Length * (ulong)vocabulary * (ulong)(elementType == LogitsElementType.Float32 ? 4 : 2);

    /// <summary>Checks a host model's logits as the CPU sampler does and uploads them into the logits buffer.</summary>
    public void Upload(DenoiseRequest request, IReadOnlyList<SequenceLogits> logits)
    {
        DecodeInputs.CheckLogits(request, vocabulary, logits);
        IReadOnlyList<int> active = request.SequenceIds;
        if (active.Count == 0) return;
        // One element type per decode: every row must match the first ever uploaded (the buffer's pitch).
        LogitsElementType type = elementType ?? logits[0].ElementType;
        for (int i = 0; i < active.Count; i++)
            if (logits[i].ElementType != type)
                throw new InvalidLogitsException($"Step {request.Step}, sequence {active[i]}: logits are {logits[i].ElementType}; earlier logits were {type}.");
        nint device = LogitsPointer(type, request.Step);
        // Rows land at their canvas positions; rows a denoiser left out (prompt rows) are never read on the device.
        ulong rowBytes = RowPitchBytes / (ulong)Length;
        for (int i = 0; i < active.Count; i++)
            context.CopyToDevice(logits[i].RawBytes, device + (nint)((ulong)active[i] * RowPitchBytes + (ulong)logits[i].FirstPosition * rowBytes));
    }

    /// <summary>
    /// Queues the step on the logits buffer and waits for its status (the only wait of a step); returns the
    /// sequences still unfinished. Bad logits become <see cref="InvalidLogitsException"/>.
    /// </summary>
    public int Step(int step)
    {
        Queue(step);
        SaberDecodeStatus status;
        NativeStatus.Check(SaberNative.DecodePoll(handle.Value, &status), "saber_decode_poll");
        return Unfinished(status);
    }

    /// <summary>Queues the step on the logits buffer without waiting for it.</summary>
    public void Queue(int step)
    {
        if (logits is null) throw new InvalidOperationException($"Step {step}: no logits were written.");
        var dtype = elementType switch
        {
            LogitsElementType.Float32 => SaberDtype.Float32,
            LogitsElementType.Float16 => SaberDtype.Float16,
            _ => SaberDtype.Bfloat16,
        };
        NativeStatus.Check(SaberNative.DecodeStep(handle.Value, (void*)logits.Pointer, (int)dtype), "saber_decode_step");
    }

    /// <summary>
    /// Never waits (<c>saber_decode_query</c>): whether the device has finished step <paramref name="step"/> or a later
    /// one, and then the sequences unfinished after the newest finished step. Bad logits become
    /// <see cref="InvalidLogitsException"/>.
    /// </summary>
    public bool TryFinished(int step, out int unfinished)
    {
        SaberDecodeStatus status;
        long finished;
        NativeStatus.Check(SaberNative.DecodeQuery(handle.Value, &status, &finished), "saber_decode_query");
        unfinished = Unfinished(status);
        return finished >= step;
    }

    /// <summary>Waits for every queued step (the last one's status).</summary>
    public int Poll()
    {
        SaberDecodeStatus status;
        NativeStatus.Check(SaberNative.DecodePoll(handle.Value, &status), "saber_decode_poll");
        return Unfinished(status);
    }

    private int Unfinished(in SaberDecodeStatus status)
    {
        if ((SaberStatus)status.Error == SaberStatus.ErrorInvalidLogits)
            throw new InvalidLogitsException(status.ErrorVocabularyIndex == vocabulary
                ? $"Row for position {status.ErrorPosition} (sequence {status.ErrorSequence}, step {status.ErrorStep}) has no finite logit besides the mask id."
                : $"Non-finite logit at vocabulary index {status.ErrorVocabularyIndex} of position {status.ErrorPosition} (sequence {status.ErrorSequence}, step {status.ErrorStep}).");
        return status.ActiveSequences;
    }

    /// <summary>What the step did to sequence <paramref name="b"/>, from the device's trace ring.</summary>
    public StepTrace Trace(int b, int step)
    {
        SaberTraceStep header;
        fixed (int* e = events)
        fixed (int* t = tokens)
        fixed (float* c = confidences)
        fixed (float* d = deltas)
            NativeStatus.Check(SaberNative.DecodeReadTrace(handle.Value, b, step, &header, e, t, c, d), "saber_decode_read_trace");
        if (header.Step != step) return new StepTrace(step, null, [], []);
        var committed = new List<CommittedToken>();
        var remasked = new List<RemaskedToken>();
        int p = promptLengths[b];
        for (int g = 0; g < generation; g++)
        {
            if ((events[g] & SaberNativeConstants.TraceCommitted) != 0) committed.Add(new CommittedToken(p + g, tokens[g], confidences[g]));
            if ((events[g] & SaberNativeConstants.TraceRemasked) != 0) remasked.Add(new RemaskedToken(p + g, deltas[g]));
        }
        return new StepTrace(step, saber ? header.Tau : null, committed, remasked);
    }

    public void Dispose()
    {
        logits?.Dispose();
        handle.Dispose();
    }
}
