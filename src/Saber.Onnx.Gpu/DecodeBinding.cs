using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Saber.Cuda;

namespace Saber.Onnx.Gpu;

/// <summary>
/// What a decode's forward passes bind, fixed for the decode: the batch, row pitch, canvas lengths, and which logits rows the
/// graph computes (<see cref="FirstRow"/> and <see cref="Rows"/> per sequence).
/// </summary>
internal sealed record DecodeLayout(int Batch, int Length, int[] SequenceLengths, int FirstRow, int Rows)
{
    /// <summary>The layout of <paramref name="request"/>, checked against the request's own fields and the model.</summary>
    /// <exception cref="ArgumentException">An inconsistent request (named), or ragged canvases for a graph without an attention mask.</exception>
    public static DecodeLayout Of(GpuForwardRequest request, ModelSignature model)
    {
        if (request.Batch <= 0) throw new ArgumentOutOfRangeException(nameof(request), request.Batch, $"The batch must be > 0; got {request.Batch}.");
        if (request.Length <= 0) throw new ArgumentOutOfRangeException(nameof(request), request.Length, $"The row pitch must be > 0; got {request.Length}.");
        if (request.SequenceLengths.Count != request.Batch)
            throw new ArgumentException($"The request has {request.SequenceLengths.Count} sequence lengths for a batch of {request.Batch}.", nameof(request));
        if (request.Canvases == 0 || request.Logits == 0) throw new ArgumentException("The request's canvas or logits address is null.", nameof(request));
        if (model.MaxPositions is int max && request.Length > max)
            throw new ArgumentException($"A row pitch of {request.Length} positions is longer than the model's max_positions {max}.", nameof(request));
        int[] lengths = request.SequenceLengths.ToArray();
        for (int b = 0; b < lengths.Length; b++)
            if (lengths[b] <= 0 || lengths[b] > request.Length)
                throw new ArgumentException($"Sequence {b} has length {lengths[b]}; it must lie in [1, {request.Length}] (the row pitch).", nameof(request));
        if (!model.AttentionMask && lengths.Any(l => l != request.Length))
            throw new ArgumentException("The model has no attention_mask input, so every canvas of a batch must fill the row pitch; these are " +
                $"{string.Join(", ", lengths)} of {request.Length}.", nameof(request));
        if (request.LogitsFrom is { } from && from.Count != request.Batch)
            throw new ArgumentException($"The request has {from.Count} LogitsFrom entries for a batch of {request.Batch}.", nameof(request));
        // One sequence: its rows from LogitsFrom on land contiguously at that row of the buffer. Several: each sequence's rows lie at
        // its slice's canvas positions, so the graph writes the whole pitch.
        int firstRow = model.SelectsRows && request.Batch == 1 ? Math.Clamp(request.LogitsFrom?[0] ?? 0, 0, lengths[0] - 1) : 0;
        int rows = model.SelectsRows && request.Batch == 1 ? lengths[0] - firstRow : request.Length;
        return new DecodeLayout(request.Batch, request.Length, lengths, firstRow, rows);
    }

    public bool Equals(DecodeLayout? other) => other is not null && Batch == other.Batch && Length == other.Length && FirstRow == other.FirstRow &&
        Rows == other.Rows && SequenceLengths.AsSpan().SequenceEqual(other.SequenceLengths);

    public override int GetHashCode() => HashCode.Combine(Batch, Length, FirstRow, Rows);
}

/// <summary>
/// One decode's bound tensors: int64 ids, the attention mask and <c>logits_index</c> in <see cref="ModelMemory"/>, and the
/// logits output over the sampler's buffer. Rebuilt when the layout or the buffer changes (a new decode).
/// </summary>
internal sealed class DecodeBinding : IDisposable
{
    private readonly DecodeLayout layout;
    private readonly nint logits;
    private readonly List<IDisposable> owned = [];

    public DecodeBinding(InferenceSession session, ModelMemory memory, ModelSignature model, DecodeLayout layout, nint logits, int elementBytes)
    {
        this.layout = layout;
        this.logits = logits;
        try
        {
            int batch = layout.Batch, length = layout.Length;
            long[] shape = [batch, length];
            ModelMemory.Block ids = Own(memory.Allocate(8L * batch * length));
            InputIds = ids.Pointer;
            Binding = session.CreateIoBinding();
            Binding.BindInput(OnnxDenoiser.InputName, Own(OrtValue.CreateTensorValueWithData(memory.Info, TensorElementType.Int64, shape, ids.Pointer, 8L * batch * length)));
            if (model.AttentionMask)
            {
                var mask = new long[batch * length];
                for (int b = 0; b < batch; b++) mask.AsSpan(b * length, layout.SequenceLengths[b]).Fill(1);
                Binding.BindInput(OnnxDenoiser.AttentionMaskName, Own(Upload(memory, mask, shape)));
            }
            if (model.SelectsRows)
            {
                // Flat indices b × length + the position whose hidden state gives row r's logits: the row's own position, or the one
                // before for a shifted graph (0 for position 0); rows past a canvas repeat its last (never read).
                var index = new long[batch * layout.Rows];
                for (int b = 0; b < batch; b++)
                    for (int r = 0; r < layout.Rows; r++)
                    {
                        int position = Math.Min(layout.FirstRow + r, layout.SequenceLengths[b] - 1);
                        index[b * layout.Rows + r] = (long)b * length + (model.Shifted ? Math.Max(position - 1, 0) : position);
                    }
                Binding.BindInput(OnnxDenoiser.LogitsIndexName, Own(Upload(memory, index, [batch, layout.Rows])));
            }
            long rowBytes = (long)model.Vocabulary * elementBytes;
            TensorElementType type = model.ElementType == LogitsElementType.Float32 ? TensorElementType.Float : TensorElementType.Float16;
            Binding.BindOutput(OnnxDenoiser.OutputName, Own(OrtValue.CreateTensorValueWithData(memory.Info, type, [batch, layout.Rows, model.Vocabulary],
                logits + (nint)(layout.FirstRow * rowBytes), rowBytes * batch * layout.Rows)));

            OrtValue Upload(ModelMemory target, long[] values, long[] dimensions)
            {
                ModelMemory.Block block = Own(target.Allocate(8L * values.Length));
                target.Upload(values, block.Pointer);
                return OrtValue.CreateTensorValueWithData(target.Info, TensorElementType.Int64, dimensions, block.Pointer, 8L * values.Length);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Where the int64 ids go before each run.</summary>
    public nint InputIds { get; }

    public OrtIoBinding Binding { get; } = null!;   // null only while a failed constructor cleans up

    public bool Serves(DecodeLayout other, nint logitsAddress) => layout.Equals(other) && logits == logitsAddress;

    private T Own<T>(T resource) where T : IDisposable
    {
        owned.Add(resource);
        return resource;
    }

    public void Dispose()
    {
        // The binding first, then the values it refers to, then their memory.
        Binding?.Dispose();
        for (int i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
        owned.Clear();
    }
}
