namespace Saber;

/// <summary>Element type of a logits tensor.</summary>
public enum LogitsElementType
{
    Float32,
    Float16,
    /// <summary>bfloat16, carried as its raw 16 bits (the upper half of a float32).</summary>
    BFloat16,
}

/// <summary>
/// The logits a denoiser produced for one sequence: <c>Rows × Vocabulary</c> values in row-major order, the rows of
/// canvas positions <c>[FirstPosition, FirstPosition + Rows)</c>, or, for a cache window, of the ascending canvas positions
/// <see cref="Positions"/>. Rows are addressed by canvas position. A denoiser asked for <see cref="DenoiseRequest.LogitsFrom"/>
/// may leave out the rows before it (the prompt's, which no sampler reads): on a 126k vocabulary they are most of a step's
/// head work and memory. The memory stays owned by the denoiser and needs to stay valid only until its next forward call.
/// </summary>
public readonly struct SequenceLogits
{
    private readonly ReadOnlyMemory<float> float32;
    private readonly ReadOnlyMemory<Half> float16;
    private readonly ReadOnlyMemory<ushort> bfloat16;
    private readonly ReadOnlyMemory<int> positions;

    private SequenceLogits(LogitsElementType type, int rows, int vocabulary, ReadOnlyMemory<float> f32, ReadOnlyMemory<Half> f16, ReadOnlyMemory<ushort> bf16,
        int firstPosition, ReadOnlyMemory<int> positions = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabulary);
        ArgumentOutOfRangeException.ThrowIfNegative(firstPosition);
        ElementType = type;
        FirstPosition = firstPosition;
        Rows = rows;
        Vocabulary = vocabulary;
        float32 = f32;
        float16 = f16;
        bfloat16 = bf16;
        this.positions = positions;
        int length = type switch { LogitsElementType.Float32 => f32.Length, LogitsElementType.Float16 => f16.Length, _ => bf16.Length };
        if ((long)rows * vocabulary != length)
            throw new ArgumentException($"Logits hold {length} values but shape [{rows}, {vocabulary}] needs {(long)rows * vocabulary}.");
    }

    public LogitsElementType ElementType { get; }
    public int Rows { get; }
    public int Vocabulary { get; }

    /// <summary>The canvas position of the first row held (0 when every row of the canvas is).</summary>
    public int FirstPosition { get; }

    /// <summary>The canvas position of each row, ascending, when the rows are a cache window's queries; empty when they are contiguous.</summary>
    public ReadOnlyMemory<int> Positions => positions;

    /// <summary>Whether the logits hold the row of canvas position <paramref name="position"/>.</summary>
    public bool Holds(int position) => positions.IsEmpty
        ? (uint)(position - FirstPosition) < (uint)Rows
        : positions.Span.BinarySearch(position) >= 0;

    /// <param name="firstPosition">The canvas position of the first row in <paramref name="data"/>.</param>
    public static SequenceLogits FromFloat32(ReadOnlyMemory<float> data, int rows, int vocabulary, int firstPosition = 0) =>
        new(LogitsElementType.Float32, rows, vocabulary, data, default, default, firstPosition);

    /// <param name="firstPosition">The canvas position of the first row in <paramref name="data"/>.</param>
    public static SequenceLogits FromFloat16(ReadOnlyMemory<Half> data, int rows, int vocabulary, int firstPosition = 0) =>
        new(LogitsElementType.Float16, rows, vocabulary, default, data, default, firstPosition);

    /// <summary>bfloat16 logits as raw bit patterns (a float32's upper 16 bits).</summary>
    /// <param name="firstPosition">The canvas position of the first row in <paramref name="data"/>.</param>
    public static SequenceLogits FromBFloat16(ReadOnlyMemory<ushort> data, int rows, int vocabulary, int firstPosition = 0) =>
        new(LogitsElementType.BFloat16, rows, vocabulary, default, default, data, firstPosition);

    /// <summary>float32 logits of the rows of <paramref name="positions"/> (ascending canvas positions, no repeats), one row each.</summary>
    /// <exception cref="ArgumentException">The positions are not ascending, or their count is not the row count of <paramref name="data"/>.</exception>
    public static SequenceLogits FromFloat32(ReadOnlyMemory<float> data, ReadOnlyMemory<int> positions, int vocabulary)
    {
        ReadOnlySpan<int> p = positions.Span;
        for (int i = 1; i < p.Length; i++)
            if (p[i] <= p[i - 1])
                throw new ArgumentException($"Row positions must ascend without repeats; position {p[i]} follows {p[i - 1]}.", nameof(positions));
        return p.IsEmpty
            ? new(LogitsElementType.Float32, 0, vocabulary, data, default, default, 0)
            : new(LogitsElementType.Float32, p.Length, vocabulary, data, default, default, p[0], positions);
    }

    /// <summary>All <c>Rows × Vocabulary</c> values held, as raw little-endian bytes (for uploads to a device).</summary>
    public ReadOnlySpan<byte> RawBytes => ElementType switch
    {
        LogitsElementType.Float32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(float32.Span),
        LogitsElementType.Float16 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(float16.Span),
        _ => System.Runtime.InteropServices.MemoryMarshal.AsBytes(bfloat16.Span),
    };

    /// <summary>The row of canvas position <paramref name="position"/>.</summary>
    public ReadOnlySpan<float> Float32Row(int position) => float32.Span.Slice(Offset(position), Vocabulary);
    /// <inheritdoc cref="Float32Row"/>
    public ReadOnlySpan<Half> Float16Row(int position) => float16.Span.Slice(Offset(position), Vocabulary);
    /// <inheritdoc cref="Float32Row"/>
    public ReadOnlySpan<ushort> BFloat16Row(int position) => bfloat16.Span.Slice(Offset(position), Vocabulary);

    /// <summary>One logit of canvas position <paramref name="position"/> as float32, whatever the element type (slow path: tests, traces, errors).</summary>
    public float this[int position, int v] => ElementType switch
    {
        LogitsElementType.Float32 => float32.Span[Offset(position) + v],
        LogitsElementType.Float16 => (float)float16.Span[Offset(position) + v],
        _ => BFloat16Bits.ToSingle(bfloat16.Span[Offset(position) + v]),
    };

    private int Offset(int position)
    {
        int row = positions.IsEmpty ? position - FirstPosition : positions.Span.BinarySearch(position);
        if (row < 0 || row >= Rows)
            throw new ArgumentOutOfRangeException(nameof(position), position, positions.IsEmpty
                ? $"These logits hold the rows of positions [{FirstPosition}, {FirstPosition + Rows})."
                : $"These logits hold the rows of a cache window's {Rows} query positions, not this one.");
        return row * Vocabulary;
    }
}

/// <summary>Conversions between float32 and bfloat16 bit patterns.</summary>
public static class BFloat16Bits
{
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round-to-nearest-even conversion (NaN stays NaN), as PyTorch does.</summary>
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}

/// <summary>What a denoiser is asked to run: the canvases of the sequences still decoding.</summary>
/// <param name="Step">1-based step of the decode (one step = one model call).</param>
/// <param name="SequenceIds">Index in the caller's batch of each canvas below.</param>
/// <param name="Canvases">Token ids of each canvas: prompt followed by the generation region.</param>
public sealed record DenoiseRequest(int Step, IReadOnlyList<int> SequenceIds, IReadOnlyList<ReadOnlyMemory<int>> Canvases)
{
    /// <summary>
    /// Per canvas, the first position whose logits row the caller reads (the samplers: the prompt's length), or null
    /// for every row. A denoiser may return the rows from any position up to this one on
    /// (<see cref="SequenceLogits.FirstPosition"/>); returning every row stays correct.
    /// </summary>
    public IReadOnlyList<int>? LogitsFrom { get; init; }

    /// <summary>
    /// Per canvas, the cache window to run it with (a <see cref="ICachingDenoiser"/>), or null for a plain pass; null for
    /// every canvas when the request has none. The logits of a windowed canvas hold the rows of its queries from
    /// <see cref="LogitsFrom"/> on (<see cref="SequenceLogits.Positions"/>).
    /// </summary>
    public IReadOnlyList<CacheWindow?>? Windows { get; init; }
}

/// <summary>
/// A masked diffusion language model's forward pass: canvas token ids for a batch in,
/// logits <c>[batch][length, vocabulary]</c> out.
/// </summary>
/// <remarks>
/// <para><b>Lifetime of the logits.</b> The <see cref="SequenceLogits"/> returned by <see cref="ForwardAsync"/> may be
/// views of buffers the denoiser reuses: they stay valid only until the next <see cref="ForwardAsync"/> call on the same
/// denoiser. A caller reads (or copies) every row it needs before it calls again.</para>
/// <para><b>Concurrency.</b> Callers must not call <see cref="ForwardAsync"/> concurrently, nor call it again before they
/// have consumed the previous call's logits, unless the implementation documents that it is thread-safe and that its
/// results do not share buffers. A lock around <see cref="ForwardAsync"/> alone is not enough: another caller's pass
/// can overwrite the logits between the return and the read. To serve many requests on one model, let one caller own
/// it: <c>Saber.Service.SaberEngine</c> runs one pass at a time for every request and consumes each pass's logits
/// before the next.</para>
/// <para><b>Batches.</b> The canvases of one request may differ in length (prompts of different lengths); a model that
/// cannot stack them runs each length separately inside the call. The logits of a canvas should not depend on the
/// other canvases of the call: samplers promise results that do not depend on batch composition only under that
/// condition.</para>
/// </remarks>
public interface IDenoiser
{
    /// <summary>Vocabulary size <c>V</c>.</summary>
    int VocabularySize { get; }

    /// <summary>The [MASK] token id, in <c>[0, V)</c>.</summary>
    int MaskId { get; }

    /// <summary>
    /// The longest canvas (prompt + <c>G</c>) the model takes, e.g. its position-embedding table; null when it
    /// does not say. Samplers reject a longer decode before allocating anything.
    /// </summary>
    int? MaxSequenceLength => null;

    /// <summary>
    /// Runs the model on every canvas of <paramref name="request"/> and returns one
    /// <see cref="SequenceLogits"/> per canvas, in the same order, with one row per canvas position from at most
    /// <see cref="DenoiseRequest.LogitsFrom"/> (every position when it is null) to the canvas's end.
    /// </summary>
    ValueTask<IReadOnlyList<SequenceLogits>> ForwardAsync(DenoiseRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// The model FLOPs of computing <paramref name="queries"/> positions of a canvas of <paramref name="positions"/>
    /// (attention over all of them) and the head on <paramref name="logitsRows"/> rows: 2 per multiply-add of the
    /// projections, the attention and the head; null when the denoiser does not know its architecture.
    /// </summary>
    long? PassFlops(int positions, int queries, int logitsRows) => null;
}

/// <summary>A denoiser broke the contract: wrong count or shape of logits, or a non-finite logit in a row the sampler reads.</summary>
public sealed class InvalidLogitsException(string message) : Exception(message);
