using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Saber.Benchmarks;

/// <summary>
/// The CPU row pass as it was before issue 12's exact arithmetic (commit cebe42e): <c>Vector256.Exp</c>, float
/// partial sums folded into an online double normaliser, double <c>Math.Log</c> for the Gumbel noise. Kept only as
/// the "before" column of <see cref="CpuStepBenchmark"/>; nothing else uses it.
/// </summary>
internal static class PreviousRowConfidence
{
    private const int ChunkLength = 1024;

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
        var state = new RowState(metric == ConfidenceMetric.NegEntropy);
        bool general = temperature > 0f || metric == ConfidenceMetric.Margin;
        Span<float> buffer = logits.ElementType == LogitsElementType.Float32 ? default : stackalloc float[ChunkLength];
        for (int start = 0; start < vocabulary; start += ChunkLength)
        {
            int length = Math.Min(ChunkLength, vocabulary - start);
            ReadOnlySpan<float> chunk = RowConfidenceKernel.ReadChunk(logits, row, start, length, buffer);
            if (general)
                state.AddGeneral(chunk, start, maskId, temperature, seed, at);
            else
                state.AddFast(chunk, start, maskId);
        }

        if (state.Bad)
            RowConfidenceKernel.ThrowNonFinite(logits, row, at);
        if (state.BestIndex < 0)
            throw new InvalidLogitsException(
                $"Row for position {at.Position} (sequence {at.Sequence}, step {at.Step}) has no finite logit besides the mask id {maskId}.");

        double sum = state.Sum;
        double max = state.Max;
        float confidence = (float)(Math.Exp(logits[row, state.BestIndex] - max) / sum);
        float tokenConfidence = token >= 0 ? (float)(Math.Exp(logits[row, token] - max) / sum) : float.NaN;
        float value = metric switch
        {
            ConfidenceMetric.MaxProb => confidence,
            ConfidenceMetric.Margin => state.SecondIndex < 0
                ? confidence
                : (float)((Math.Exp(logits[row, state.BestIndex] - max) - Math.Exp(logits[row, state.SecondIndex] - max)) / sum),
            // Σ s ln s = Σ e^(l-M)(l-M) / Z − ln Z
            ConfidenceMetric.NegEntropy => (float)(state.Entropy / sum - Math.Log(sum)),
            _ => RandomLayout.Uniform(seed, at.Step, at.Sequence, at.Position, vocabulary),
        };
        return new RowConfidence(state.BestIndex, confidence, tokenConfidence, value);
    }

    private static float PreviousGumbel(float u) => (float)-Math.Log(-Math.Log(u));

    /// <summary>Running softmax normaliser and argmax of one row.</summary>
    private struct RowState(bool wantsEntropy)
    {
        public float Max = float.NegativeInfinity;
        public double Sum;
        /// <summary>Σ e^(l−Max)·(l−Max), for the negentropy metric.</summary>
        public double Entropy;
        public float BestScore = float.NegativeInfinity;
        public int BestIndex = -1;
        public float SecondScore = float.NegativeInfinity;
        public int SecondIndex = -1;
        public bool Bad;
        private readonly bool wantsEntropy = wantsEntropy;

        /// <summary>Temperature 0, maxprob or negentropy: vectorised argmax and exp-sum.</summary>
        public void AddFast(ReadOnlySpan<float> chunk, int start, int maskId)
        {
            float chunkBest = float.NegativeInfinity;
            int chunkBestIndex = -1;
            int maskOffset = maskId - start;
            if ((uint)maskOffset < (uint)chunk.Length)
            {
                RowConfidenceKernel.ScanBest(chunk[..maskOffset], start, ref chunkBest, ref chunkBestIndex, ref Bad);
                RowConfidenceKernel.ScanBest(chunk[(maskOffset + 1)..], maskId + 1, ref chunkBest, ref chunkBestIndex, ref Bad);
                float maskValue = chunk[maskOffset];
                Bad |= float.IsNaN(maskValue) || float.IsPositiveInfinity(maskValue);
                Rescale(MathF.Max(chunkBest, maskValue));
            }
            else
            {
                RowConfidenceKernel.ScanBest(chunk, start, ref chunkBest, ref chunkBestIndex, ref Bad);
                Rescale(chunkBest);
            }
            if (chunkBest > BestScore)
            {
                BestScore = chunkBest;
                BestIndex = chunkBestIndex;
            }
            if (Max != float.NegativeInfinity && !Bad)
                SumExp(chunk);
        }

        /// <summary>Gumbel noise and/or the runner-up: scalar, one Philox call per four ids.</summary>
        public void AddGeneral(ReadOnlySpan<float> chunk, int start, int maskId, float temperature, ulong seed, RowCoordinates at)
        {
            float chunkMax = float.NegativeInfinity;
            foreach (float x in chunk)
            {
                Bad |= float.IsNaN(x) || float.IsPositiveInfinity(x);
                chunkMax = MathF.Max(chunkMax, x);
            }
            if (Bad) return;
            Rescale(chunkMax);
            (uint, uint, uint, uint) words = default;
            for (int j = 0; j < chunk.Length; j++)
            {
                int v = start + j;
                float logit = chunk[j];
                if (Max != float.NegativeInfinity && logit != float.NegativeInfinity)
                {
                    float shifted = logit - Max;
                    float e = MathF.Exp(shifted);
                    Sum += e;
                    if (wantsEntropy) Entropy += e * shifted;
                }
                if (temperature > 0f && (j == 0 || (v & 3) == 0))
                    words = RandomLayout.Words(seed, at.Step, at.Sequence, at.Position, v);
                if (v == maskId) continue;
                float score = logit;
                if (temperature > 0f)
                {
                    score = logit + temperature * PreviousGumbel(RandomLayout.ToUniform(RandomLayout.Pick(words, v)));
                }
                if (score == float.NegativeInfinity) continue;
                if (score > BestScore)
                {
                    SecondScore = BestScore;
                    SecondIndex = BestIndex;
                    BestScore = score;
                    BestIndex = v;
                }
                else if (score > SecondScore)
                {
                    SecondScore = score;
                    SecondIndex = v;
                }
            }
        }

        private void Rescale(float chunkMax)
        {
            if (chunkMax > Max)
            {
                if (Max != float.NegativeInfinity)
                {
                    double delta = (double)Max - chunkMax;
                    double factor = Math.Exp(delta);
                    // Σ e^(l−M')(l−M') = e^(M−M')·(Σ e^(l−M)(l−M) + (M−M')·Σ e^(l−M))
                    Entropy = factor * (Entropy + delta * Sum);
                    Sum *= factor;
                }
                Max = chunkMax;
            }
        }

        private void SumExp(ReadOnlySpan<float> chunk)
        {
            float max = Max;
            int i = 0;
            float sum = 0f, entropy = 0f;
            if (Vector256.IsHardwareAccelerated && chunk.Length >= Vector256<float>.Count)
            {
                ref float x = ref MemoryMarshal.GetReference(chunk);
                var vmax = Vector256.Create(max);
                var vsum = Vector256<float>.Zero;
                var vent = Vector256<float>.Zero;
                var negInf = Vector256.Create(float.NegativeInfinity);
                for (; i <= chunk.Length - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    Vector256<float> v = Vector256.LoadUnsafe(ref x, (nuint)i);
                    Vector256<float> shifted = v - vmax;
                    Vector256<float> e = Vector256.Exp(shifted);
                    vsum += e;
                    if (wantsEntropy)
                        vent += Vector256.ConditionalSelect(Vector256.Equals(v, negInf), Vector256<float>.Zero, e * shifted);
                }
                sum = Vector256.Sum(vsum);
                entropy = Vector256.Sum(vent);
            }
            for (; i < chunk.Length; i++)
            {
                float logit = chunk[i];
                if (logit == float.NegativeInfinity) continue;
                float shifted = logit - max;
                float e = MathF.Exp(shifted);
                sum += e;
                entropy += e * shifted;
            }
            Sum += sum;
            if (wantsEntropy) Entropy += entropy;
        }
    }
}
