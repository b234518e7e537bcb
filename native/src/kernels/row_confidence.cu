// Row confidence: one pass over each active logits row computes the prediction (argmax without the
// mask id, or Gumbel-max at T > 0), the max-subtracted online softmax normaliser, c, q, and the
// low-confidence metric. One block per (generation position, sequence); 16-byte loads.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>

#include <cub/block/block_reduce.cuh>

#include "kernels.h"
#include "philox.h"

namespace saber {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/// One thread's (then a block's) view of a row: online softmax state plus the two best candidates.
struct RowPartial {
    float max;           // running maximum of the logits seen
    double sum;          // Σ e^(l - max)
    double entropy;      // Σ e^(l - max)·(l - max)
    float best_score;    // prediction score (logit, plus T·g at T > 0); index -1 when none
    float best_logit;
    int best_index;
    float second_score;
    float second_logit;
    int second_index;
    int bad_index;       // lowest index of a NaN / +inf logit, INT_MAX when none
};

__device__ __forceinline__ bool before(float score_a, int index_a, float score_b, int index_b) {
    // Ranking of predictions: higher score first, lower index on ties; index -1 means "none".
    if (index_b < 0) return index_a >= 0;
    if (index_a < 0) return false;
    return score_a > score_b || (score_a == score_b && index_a < index_b);
}

__device__ __forceinline__ void offer(RowPartial &p, float score, float logit, int index) {
    if (before(score, index, p.best_score, p.best_index)) {
        p.second_score = p.best_score;
        p.second_logit = p.best_logit;
        p.second_index = p.best_index;
        p.best_score = score;
        p.best_logit = logit;
        p.best_index = index;
    } else if (before(score, index, p.second_score, p.second_index)) {
        p.second_score = score;
        p.second_logit = logit;
        p.second_index = index;
    }
}

/// Rescales the running sums of `p` to a new maximum m (>= p.max).
__device__ __forceinline__ void rescale(RowPartial &p, float m) {
    if (m <= p.max) return;
    if (p.max != neg_inf()) {
        const double shift = static_cast<double>(p.max) - m;
        const double factor = exp(shift);
        p.entropy = factor * (p.entropy + shift * p.sum);
        p.sum *= factor;
    }
    p.max = m;
}

struct MergeRows {
    __device__ RowPartial operator()(RowPartial a, const RowPartial &b) const {
        const float m = fmaxf(a.max, b.max);
        RowPartial c = b;
        rescale(a, m);
        rescale(c, m);
        a.sum += c.sum;
        a.entropy += c.entropy;
        offer(a, b.best_score, b.best_logit, b.best_index);
        offer(a, b.second_score, b.second_logit, b.second_index);
        a.bad_index = min(a.bad_index, b.bad_index);
        return a;
    }
};

/// The generation positions a strategy reads this step, and for Saber which token's q it needs.
struct RowTask {
    bool active;
    int position;   // absolute canvas index
    int token;      // current token for q, or -1
};

__device__ __forceinline__ RowTask row_task(const DecodeState &s, int sequence, int g) {
    RowTask task{false, 0, -1};
    if (s.done[sequence] || *s.error != kNoError) return task;
    const int block = s.block[sequence];
    const int end = (block + 1) * s.block_length;
    if (g >= end) return task;
    const bool saber = s.options.strategy == SABER_STRATEGY_SABER;
    const size_t at = static_cast<size_t>(sequence) * s.generation + g;
    // Saber tracks every position before the active end; the baselines score masked positions of the block.
    if (!saber && (g < block * s.block_length || s.decoded[at])) return task;
    task.active = true;
    task.position = s.prompt_length[sequence] + g;
    if (saber && s.options.variant == SABER_VARIANT_PAPER && s.decoded[at])
        task.token = s.canvas[static_cast<size_t>(sequence) * s.length + task.position];
    return task;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) row_confidence_kernel(DecodeState s, const T *__restrict__ logits) {
    const int g = blockIdx.x, sequence = blockIdx.y;
    const RowTask task = row_task(s, sequence, g);
    if (!task.active) return;

    const int vocabulary = s.vocabulary, mask = s.mask_id;
    const T *row = logits + (static_cast<size_t>(sequence) * s.length + task.position) * vocabulary;
    const float temperature = s.options.temperature;
    const bool sampled = temperature > 0.0f;
    const int step = *s.step + 1;
    const bool wants_entropy = s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE && s.options.metric == SABER_METRIC_NEGENTROPY;

    RowPartial p{neg_inf(), 0.0, 0.0, neg_inf(), neg_inf(), -1, neg_inf(), neg_inf(), -1, INT_MAX};
    float sum = 0.0f, entropy = 0.0f;   // this thread's sums relative to p.max, folded into p on rescale

    // Elements [first, first + count): update the softmax state once per group, then offer predictions.
    auto consume = [&](const float *x, int first, int count) {
        float group_max = neg_inf();
        for (int j = 0; j < count; ++j) {
            if (isnan(x[j]) || (isinf(x[j]) && x[j] > 0.0f)) p.bad_index = min(p.bad_index, first + j);
            group_max = fmaxf(group_max, x[j]);
        }
        if (p.bad_index != INT_MAX) return;
        if (group_max > p.max) {
            p.sum += sum;
            p.entropy += entropy;
            sum = entropy = 0.0f;
            rescale(p, group_max);
        }
        PhiloxWords words{0, 0, 0, 0};
        for (int j = 0; j < count; ++j) {
            const int v = first + j;
            if (x[j] != neg_inf()) {
                const float shifted = x[j] - p.max;
                const float e = expf(shifted);
                sum += e;
                if (wants_entropy) entropy += e * shifted;
            }
            if (sampled && (j == 0 || (v & 3) == 0)) words = random_words(s.options.seed, step, sequence, task.position, v);
            if (v == mask) continue;
            float score = x[j];
            if (sampled) {
                const uint32_t bits = (v & 3) == 0 ? words.x0 : (v & 3) == 1 ? words.x1 : (v & 3) == 2 ? words.x2 : words.x3;
                // Explicit rounding: no fused multiply-add, so the score matches the CPU's float32 arithmetic.
                score = __fadd_rn(x[j], __fmul_rn(temperature, to_gumbel(to_uniform(bits))));
            }
            if (score != neg_inf()) offer(p, score, x[j], v);
        }
    };

    // Scalar head up to 16-byte alignment, 16-byte vectors, scalar tail.
    constexpr int kWidth = 16 / sizeof(T);
    const uintptr_t address = reinterpret_cast<uintptr_t>(row);
    const int head = min(vocabulary, static_cast<int>(((16 - address % 16) % 16) / sizeof(T)));
    const int vectors = (vocabulary - head) / kWidth;
    const int tail_start = head + vectors * kWidth;
    float x[kWidth];
    for (int v = threadIdx.x; v < head; v += kThreads) {
        x[0] = to_float(row[v]);
        consume(x, v, 1);
    }
    const uint4 *body = reinterpret_cast<const uint4 *>(row + head);
    for (int i = threadIdx.x; i < vectors; i += kThreads) {
        const uint4 packed = __ldg(body + i);
        const T *elements = reinterpret_cast<const T *>(&packed);
#pragma unroll
        for (int j = 0; j < kWidth; ++j) x[j] = to_float(elements[j]);
        consume(x, head + i * kWidth, kWidth);
    }
    for (int v = tail_start + threadIdx.x; v < vocabulary; v += kThreads) {
        x[0] = to_float(row[v]);
        consume(x, v, 1);
    }
    p.sum += sum;
    p.entropy += entropy;

    using Reduce = cub::BlockReduce<RowPartial, kThreads>;
    __shared__ typename Reduce::TempStorage storage;
    const RowPartial r = Reduce(storage).Reduce(p, MergeRows());
    if (threadIdx.x != 0) return;

    const size_t at = static_cast<size_t>(sequence) * s.generation + g;
    if (r.bad_index != INT_MAX || r.best_index < 0) {
        // bad_index == V marks a row with no finite logit besides the mask id.
        atomicMin(s.error, error_key(sequence, task.position, r.bad_index != INT_MAX ? r.bad_index : vocabulary));
        return;
    }
    const double max = r.max;
    const float c = static_cast<float>(exp(static_cast<double>(r.best_logit) - max) / r.sum);
    s.prediction[at] = r.best_index;
    s.confidence[at] = c;
    s.token_confidence[at] =
        task.token >= 0 ? static_cast<float>(exp(static_cast<double>(to_float(row[task.token])) - max) / r.sum) : __int_as_float(0x7fc00000);
    float metric = c;
    if (s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE) {
        switch (s.options.metric) {
            case SABER_METRIC_MARGIN:
                if (r.second_index >= 0)
                    metric = static_cast<float>((exp(static_cast<double>(r.best_logit) - max) - exp(static_cast<double>(r.second_logit) - max)) / r.sum);
                break;
            case SABER_METRIC_NEGENTROPY: metric = static_cast<float>(r.entropy / r.sum - log(r.sum)); break;
            case SABER_METRIC_RANDOM: metric = to_uniform(random_bits(s.options.seed, step, sequence, task.position, vocabulary)); break;
            default: break;
        }
    }
    s.metric[at] = metric;
}

}  // namespace

cudaError_t launch_row_confidence(const DecodeState &state, const void *logits, int32_t dtype, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>(state.generation), static_cast<unsigned>(state.batch));
    switch (dtype) {
        case SABER_DTYPE_FLOAT32:
            row_confidence_kernel<float><<<grid, kThreads, 0, stream>>>(state, static_cast<const float *>(logits));
            break;
        case SABER_DTYPE_FLOAT16:
            row_confidence_kernel<__half><<<grid, kThreads, 0, stream>>>(state, static_cast<const __half *>(logits));
            break;
        default:
            row_confidence_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(state, static_cast<const __nv_bfloat16 *>(logits));
            break;
    }
    return cudaGetLastError();
}

}  // namespace saber
