using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Saber;

/// <summary>What one row of logits says about its position (spec §2).</summary>
/// <param name="Prediction"><c>x̂</c>: argmax of the (noisy) score over every id but the mask id.</param>
/// <param name="Confidence"><c>c = s[x̂]</c> under the noise-free softmax.</param>
/// <param name="TokenConfidence"><c>q = s[token]</c> for the token the caller asked about, else NaN.</param>
/// <param name="Metric">The requested low-confidence metric (equals <c>c</c> for maxprob).</param>
public readonly record struct RowConfidence(int Prediction, float Confidence, float TokenConfidence, float Metric);

/// <summary>Where a row sits, for its random draws (see <see cref="RandomLayout"/>).</summary>
public readonly record struct RowCoordinates(int Step, int Sequence, int Position);

/// <summary>
/// Computes <see cref="RowConfidence"/> in one pass over a row, with the exact arithmetic of docs/arithmetic.md: the
/// results equal <see cref="ExactMath.Row"/> (and the native kernels) bit for bit. The row is walked in the constant
/// 1024-id chunks of that definition; each chunk is scanned for its maximum and the prediction, then, while still in
/// L1, summed into its fixed-point <see cref="ExactMath.ChunkPartial"/>; the partials are merged in chunk order at the
/// end. Nothing proportional to the vocabulary is allocated below V = 163,840 (the partials of larger rows come from
/// the array pool).
/// </summary>
public static class RowConfidenceKernel
{
    private const int ChunkLength = ExactMath.Chunk;
    private const int StackChunks = 160;

    /// <summary>Computes one row's prediction, confidence and metric.</summary>
    /// <param name="logits">The sequence's logits.</param>
    /// <param name="row">Row (= canvas position) to read.</param>
    /// <param name="maskId">Never predicted.</param>
    /// <param name="token">Token whose probability to report as <c>q</c>, or -1.</param>
    /// <param name="metric">Metric to report (maxprob unless a low-confidence strategy asks).</param>
    /// <param name="temperature">0 for argmax, above 0 for Gumbel-max.</param>
    /// <param name="seed">Philox key.</param>
    /// <param name="at">Coordinates of the row's draws.</param>
    /// <exception cref="InvalidLogitsException">A NaN or +∞ logit, or no finite logit besides the mask id.</exception>
    public static RowConfidence Compute(in SequenceLogits logits, int row, int maskId, int token, ConfidenceMetric metric,
        float temperature, ulong seed, RowCoordinates at)
    {
        int vocabulary = logits.Vocabulary;
        int chunks = (vocabulary + ChunkLength - 1) / ChunkLength;
        bool withEntropy = metric == ConfidenceMetric.NegEntropy;
        // Gumbel noise and the runner-up (margin) take the scalar scan; the plain argmax is vectorised.
        bool scalarScan = temperature > 0f || metric == ConfidenceMetric.Margin;
        ExactMath.ChunkPartial[]? rented = null;
        Span<ExactMath.ChunkPartial> partials = chunks <= StackChunks
            ? stackalloc ExactMath.ChunkPartial[StackChunks]
            : rented = ArrayPool<ExactMath.ChunkPartial>.Shared.Rent(chunks);
        Span<float> buffer = logits.ElementType == LogitsElementType.Float32 ? default : stackalloc float[ChunkLength];
        try
        {
            var best = new Candidates();
            for (int j = 0; j < chunks; j++)
            {
                int start = j * ChunkLength;
                ReadOnlySpan<float> chunk = ReadChunk(logits, row, start, Math.Min(ChunkLength, vocabulary - start), buffer);
                if (ScanMax(chunk, out float max, out float min))
                    ThrowNonFinite(logits, row, at);
                if (scalarScan)
                    best.OfferScores(chunk, start, maskId, temperature, seed, at);
                else
                    best.OfferChunkArgmax(chunk, start, maskId, max);
                partials[j] = ExactMath.ChunkOf(chunk, max, withEntropy, min);
            }
            if (best.Top.Best < 0)
                throw new InvalidLogitsException(
                    $"Row for position {at.Position} (sequence {at.Sequence}, step {at.Step}) has no finite logit besides the mask id {maskId}.");

            var n = ExactMath.RowNormaliser.Merge(partials[..chunks]);
            float bestLogit = logits[row, best.Top.Best];
            float confidence = n.Probability(bestLogit);
            float tokenConfidence = token >= 0 ? n.Probability(logits[row, token]) : float.NaN;
            float value = n.MetricOf(metric, confidence, bestLogit, best.Top.Second, best.Top.Second >= 0 ? logits[row, best.Top.Second] : 0f, seed, at, vocabulary);
            return new RowConfidence(best.Top.Best, confidence, tokenConfidence, value);
        }
        finally
        {
            if (rented is not null) ArrayPool<ExactMath.ChunkPartial>.Shared.Return(rented);
        }
    }

    /// <summary>Logits [start, start + length) of a row as floats: float32 rows directly, 16-bit rows widened (exactly) into <paramref name="buffer"/>.</summary>
    internal static ReadOnlySpan<float> ReadChunk(in SequenceLogits logits, int row, int start, int length, Span<float> buffer)
    {
        switch (logits.ElementType)
        {
            case LogitsElementType.Float32:
                return logits.Float32Row(row).Slice(start, length);
            case LogitsElementType.Float16:
                TensorPrimitives.ConvertToSingle(logits.Float16Row(row).Slice(start, length), buffer[..length]);
                return buffer[..length];
            default:
                BFloat16ToSingle(logits.BFloat16Row(row).Slice(start, length), buffer[..length]);
                return buffer[..length];
        }
    }

    private static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            Span<uint> bits = MemoryMarshal.Cast<float, uint>(destination);
            for (; i <= source.Length - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                Vector128<ushort> packed = Vector128.LoadUnsafe(ref src, (nuint)i);
                Vector256<uint> wide = Vector256.Create(Vector128.WidenLower(packed), Vector128.WidenUpper(packed)) << 16;
                wide.StoreUnsafe(ref MemoryMarshal.GetReference(bits), (nuint)i);
            }
        }
        for (; i < source.Length; i++)
            destination[i] = BFloat16Bits.ToSingle(source[i]);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowNonFinite(in SequenceLogits logits, int row, RowCoordinates at)
    {
        for (int v = 0; v < logits.Vocabulary; v++)
        {
            float x = logits[row, v];
            if (float.IsNaN(x) || float.IsPositiveInfinity(x))
                throw new InvalidLogitsException(
                    $"Non-finite logit {x} at vocabulary index {v} of position {at.Position} (sequence {at.Sequence}, step {at.Step}).");
        }
        throw new InvalidLogitsException($"Non-finite logit in position {at.Position} (sequence {at.Sequence}, step {at.Step}).");
    }

    /// <summary>
    /// The chunk's maximum and minimum over every id (the mask id's too); true when it holds a NaN or +∞. The maximum's value
    /// is exact in any order; only the sign of a zero maximum may differ from an ascending scan's, which no result sees
    /// (e^(±0 − ±0) = 1 and ±0·Σ = 0 in the merge).
    /// </summary>
    private static bool ScanMax(ReadOnlySpan<float> chunk, out float max, out float min)
    {
        int i = 0;
        max = float.NegativeInfinity;
        min = float.PositiveInfinity;
        bool bad = false;
        if (Vector256.IsHardwareAccelerated && chunk.Length >= Vector256<float>.Count)
        {
            ref float x = ref MemoryMarshal.GetReference(chunk);
            var laneMax = Vector256.Create(float.NegativeInfinity);
            var laneMin = Vector256.Create(float.PositiveInfinity);
            var finiteOrNegInf = Vector256<float>.AllBitsSet;   // NaN and +∞ fail v < +∞
            var posInf = Vector256.Create(float.PositiveInfinity);
            for (; i <= chunk.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> v = Vector256.LoadUnsafe(ref x, (nuint)i);
                laneMax = Vector256.Max(laneMax, v);
                laneMin = Vector256.Min(laneMin, v);
                finiteOrNegInf &= Vector256.LessThan(v, posInf);
            }
            bad = finiteOrNegInf.AsInt32() != Vector256<int>.AllBitsSet;
            for (int lane = 0; lane < Vector256<float>.Count; lane++)
            {
                max = MathF.Max(max, laneMax[lane]);
                min = MathF.Min(min, laneMin[lane]);
            }
        }
        for (; i < chunk.Length; i++)
        {
            float value = chunk[i];
            bad |= float.IsNaN(value) || float.IsPositiveInfinity(value);
            if (value > max) max = value;
            if (value < min) min = value;
        }
        return bad;
    }

    /// <summary>The best two predictions of a row so far (<see cref="ExactMath.TopTwo"/>), fed chunk by chunk.</summary>
    private struct Candidates()
    {
        public ExactMath.TopTwo Top = new();

        /// <summary>
        /// Scores of a chunk (logit, plus T·Gumbel at T &gt; 0), best two kept. At T &gt; 0 an id whose best possible score
        /// l + T·<see cref="ExactMath.GumbelMax"/> cannot beat the runner-up is skipped without its draw: rounding is
        /// monotone, so its score could not either. Draws come from one Philox call per four ids.
        /// </summary>
        public void OfferScores(ReadOnlySpan<float> chunk, int start, int maskId, float temperature, ulong seed, RowCoordinates at)
        {
            if (temperature == 0f)
            {
                for (int j = 0; j < chunk.Length; j++)
                    if (start + j != maskId && chunk[j] != float.NegativeInfinity)
                        Top.Offer(start + j, chunk[j]);
                return;
            }
            float reach = temperature * ExactMath.GumbelMax;
            int group = -1;
            (uint, uint, uint, uint) words = default;
            for (int j = 0; j < chunk.Length; j++)
            {
                int v = start + j;
                float logit = chunk[j];
                if (v == maskId || logit + reach <= Top.SecondScore) continue;   // a NaN bound (−∞ + ∞) is not skipped
                if (v >> 2 != group)
                {
                    group = v >> 2;
                    words = RandomLayout.Words(seed, at.Step, at.Sequence, at.Position, v);
                }
                float score = ExactMath.Score(logit, temperature, RandomLayout.Pick(words, v));
                if (score != float.NegativeInfinity)
                    Top.Offer(v, score);
            }
        }

        /// <summary>
        /// Temperature 0 without a runner-up: the chunk's argmax (mask id excluded), given the chunk's maximum over every
        /// id. Most chunks cannot beat the best so far, and then nothing more is read; otherwise the first id holding the
        /// maximum wins, as in an ascending scan with a strict comparison.
        /// </summary>
        public void OfferChunkArgmax(ReadOnlySpan<float> chunk, int start, int maskId, float max)
        {
            int maskOffset = maskId - start;
            if ((uint)maskOffset < (uint)chunk.Length)
            {
                // The maximum may be the mask id's own logit: rank the ids on both sides of it.
                float chunkBest = float.NegativeInfinity;
                int chunkBestIndex = -1;
                bool ignored = false;
                RowConfidenceKernel.ScanBest(chunk[..maskOffset], start, ref chunkBest, ref chunkBestIndex, ref ignored);
                RowConfidenceKernel.ScanBest(chunk[(maskOffset + 1)..], maskId + 1, ref chunkBest, ref chunkBestIndex, ref ignored);
                if (chunkBestIndex >= 0 && chunkBest > Top.BestScore)
                    Top.Offer(chunkBestIndex, chunkBest);
                return;
            }
            if (!(max > Top.BestScore)) return;   // also skips a chunk of −∞ only
            int at = 0;
            while (chunk[at] != max) at++;
            Top.Offer(start + at, max);
        }
    }

    /// <summary>
    /// The first id of <paramref name="values"/> (ids from <paramref name="start"/>) whose logit beats
    /// <paramref name="best"/>, as an ascending scan with a strict comparison finds it; flags a NaN or +∞.
    /// </summary>
    internal static void ScanBest(ReadOnlySpan<float> values, int start, ref float best, ref int bestIndex, ref bool bad)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated && values.Length >= Vector256<float>.Count)
        {
            ref float x = ref MemoryMarshal.GetReference(values);
            var laneBest = Vector256.Create(float.NegativeInfinity);
            var laneIndex = Vector256.Create(-1);
            var index = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) + Vector256.Create(start);
            var step = Vector256.Create(Vector256<float>.Count);
            var posInf = Vector256.Create(float.PositiveInfinity);
            var finiteOrNegInf = Vector256<float>.AllBitsSet;   // NaN and +∞ fail v < +∞
            for (; i <= values.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> v = Vector256.LoadUnsafe(ref x, (nuint)i);
                Vector256<float> greater = Vector256.GreaterThan(v, laneBest);
                laneBest = Vector256.ConditionalSelect(greater, v, laneBest);
                laneIndex = Vector256.ConditionalSelect(greater.AsInt32(), index, laneIndex);
                finiteOrNegInf &= Vector256.LessThan(v, posInf);
                index += step;
            }
            bad |= finiteOrNegInf.AsInt32() != Vector256<int>.AllBitsSet;
            for (int lane = 0; lane < Vector256<float>.Count; lane++)
            {
                float value = laneBest.GetElement(lane);
                int at = laneIndex.GetElement(lane);
                if (at >= 0 && (value > best || (value == best && (bestIndex < 0 || at < bestIndex))))
                {
                    best = value;
                    bestIndex = at;
                }
            }
        }
        for (; i < values.Length; i++)
        {
            float value = values[i];
            bad |= float.IsNaN(value) || float.IsPositiveInfinity(value);
            if (value > best)
            {
                best = value;
                bestIndex = start + i;
            }
        }
    }
}
