// Row confidence: one pass over each active logits row computes the prediction (argmax without the
// mask id, or Gumbel-max at T > 0), the max-subtracted online softmax normaliser, c, q, and the
// low-confidence metric.
//   fast path:      one block per (generation position, sequence, split); 16-byte loads, online softmax
//                   and a CUB block reduction. When rows are too few to fill the GPU each row is cut into
//                   `row_splits` chunks whose partial results a second kernel merges in chunk order.
//   reference path: one block per row, scalar loads, one plain pass per quantity (maximum, sums, best
//                   two predictions), per-thread results folded in thread order. Slow; the device tests
//                   check the fast path against it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>

#include <cub/block/block_reduce.cuh>

#include "kernels.h"
#include "philox.h"

namespace saber {
namespace {

constexpr int kThreads = 256;
// Blocks of kThreads threads resident on one SM (2048 threads per SM on sm_80 .. sm_90).
constexpr int kResidentBlocks = 2048 / kThreads;
// A split reads at least this many logits, so that a block's fixed costs stay small beside its loads.
constexpr int kMinSplitElements = 16384;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000); }

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

__device__ __forceinline__ RowPartial empty_partial() {
    return RowPartial{neg_inf(), 0.0, 0.0, neg_inf(), neg_inf(), -1, neg_inf(), neg_inf(), -1, INT_MAX};
}

/// This thread's share of logits [begin, end) of `row`: scalar head up to 16-byte alignment, 16-byte
/// vectors, scalar tail. Softmax sums are kept in float per group and folded into double on rescale.
template <typename T>
__device__ RowPartial scan_row(const DecodeState &s, const T *row, int begin, int end, int sequence, int position, int step) {
    const int mask = s.mask_id;
    const float temperature = s.options.temperature;
    const bool sampled = temperature > 0.0f;
    const bool wants_entropy = s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE && s.options.metric == SABER_METRIC_NEGENTROPY;

    RowPartial p = empty_partial();
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
            if (sampled && (j == 0 || (v & 3) == 0)) words = random_words(s.options.seed, step, sequence, position, v);
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

    constexpr int kWidth = 16 / sizeof(T);
    const T *first = row + begin;
    const int count = end - begin;
    const uintptr_t address = reinterpret_cast<uintptr_t>(first);
    const int head = min(count, static_cast<int>(((16 - address % 16) % 16) / sizeof(T)));
    const int vectors = (count - head) / kWidth;
    const int tail_start = head + vectors * kWidth;
    float x[kWidth];
    for (int i = threadIdx.x; i < head; i += kThreads) {
        x[0] = to_float(first[i]);
        consume(x, begin + i, 1);
    }
    const uint4 *body = reinterpret_cast<const uint4 *>(first + head);
    for (int i = threadIdx.x; i < vectors; i += kThreads) {
        const uint4 packed = __ldg(body + i);
        const T *elements = reinterpret_cast<const T *>(&packed);
#pragma unroll
        for (int j = 0; j < kWidth; ++j) x[j] = to_float(elements[j]);
        consume(x, begin + head + i * kWidth, kWidth);
    }
    for (int i = tail_start + threadIdx.x; i < count; i += kThreads) {
        x[0] = to_float(first[i]);
        consume(x, begin + i, 1);
    }
    p.sum += sum;
    p.entropy += entropy;
    return p;
}

/// Turns a whole row's merged partial into the row results (or the step's error key). One thread.
template <typename T>
__device__ void write_row(const DecodeState &s, int sequence, int g, const RowTask &task, const RowPartial &r, const T *row, int step) {
    if (r.bad_index != INT_MAX || r.best_index < 0) {
        // bad_index == V marks a row with no finite logit besides the mask id.
        atomicMin(s.error, error_key(sequence, task.position, r.bad_index != INT_MAX ? r.bad_index : s.vocabulary));
        return;
    }
    const size_t at = static_cast<size_t>(sequence) * s.generation + g;
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
            case SABER_METRIC_RANDOM: metric = to_uniform(random_bits(s.options.seed, step, sequence, task.position, s.vocabulary)); break;
            default: break;
        }
    }
    s.metric[at] = metric;
}

template <typename T>
__device__ __forceinline__ const T *row_of(const DecodeState &s, const T *logits, int sequence, int position) {
    return logits + (static_cast<size_t>(sequence) * s.length + position) * s.vocabulary;
}

/// Fast path: block (g, sequence, split) reads chunk `split` of the row; with one split it writes the
/// row results, otherwise its partial for combine_row_splits_kernel.
template <typename T>
__global__ void __launch_bounds__(kThreads) row_confidence_kernel(DecodeState s, const T *__restrict__ logits) {
    const int g = blockIdx.x, sequence = blockIdx.y, split = blockIdx.z;
    const RowTask task = row_task(s, sequence, g);
    if (!task.active) return;
    const T *row = row_of(s, logits, sequence, task.position);
    const int step = *s.step + 1;
    const int begin = split * s.row_chunk, end = min(s.vocabulary, begin + s.row_chunk);
    const RowPartial p = scan_row(s, row, begin, end, sequence, task.position, step);

    using Reduce = cub::BlockReduce<RowPartial, kThreads>;
    __shared__ typename Reduce::TempStorage storage;
    const RowPartial r = Reduce(storage).Reduce(p, MergeRows());
    if (threadIdx.x != 0) return;
    if (gridDim.z == 1) {
        write_row(s, sequence, g, task, r, row, step);
    } else {
        static_cast<RowPartial *>(s.row_partials)[(static_cast<size_t>(sequence) * s.generation + g) * gridDim.z + split] = r;
    }
}

/// Fast path, split rows: one thread per row merges the row's partials in chunk order (deterministic).
template <typename T>
__global__ void combine_row_splits_kernel(DecodeState s, const T *__restrict__ logits) {
    const size_t index = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= static_cast<size_t>(s.batch) * s.generation) return;
    const int sequence = static_cast<int>(index / s.generation), g = static_cast<int>(index % s.generation);
    const RowTask task = row_task(s, sequence, g);
    if (!task.active) return;
    const RowPartial *partials = static_cast<const RowPartial *>(s.row_partials) + index * s.row_splits;
    RowPartial r = partials[0];
    for (int split = 1; split < s.row_splits; ++split) r = MergeRows()(r, partials[split]);
    write_row(s, sequence, g, task, r, row_of(s, logits, sequence, task.position), *s.step + 1);
}

/// Reference path helper: every thread's value folded by thread 0 in thread order, returned to all threads.
template <typename V, typename Fold>
__device__ V fold_in_thread_order(const V &mine, Fold fold) {
    __shared__ V values[kThreads];
    __shared__ V result;
    values[threadIdx.x] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        V folded = values[0];
        for (int t = 1; t < kThreads; ++t) folded = fold(folded, values[t]);
        result = folded;
    }
    __syncthreads();
    const V r = result;
    __syncthreads();
    return r;
}

struct Best2 {
    float best_score, best_logit;
    int best_index;
    float second_score, second_logit;
    int second_index;
};

/// Reference path: one block per row, one plain pass over the row per quantity.
template <typename T>
__global__ void __launch_bounds__(kThreads) row_confidence_reference_kernel(DecodeState s, const T *__restrict__ logits) {
    const int g = blockIdx.x, sequence = blockIdx.y;
    const RowTask task = row_task(s, sequence, g);
    if (!task.active) return;
    const T *row = row_of(s, logits, sequence, task.position);
    const int vocabulary = s.vocabulary, step = *s.step + 1;
    const float temperature = s.options.temperature;

    // Pass 1: the first NaN / +inf logit, and the maximum.
    int bad = INT_MAX;
    float max = neg_inf();
    for (int v = threadIdx.x; v < vocabulary; v += kThreads) {
        const float x = to_float(row[v]);
        if (isnan(x) || x == pos_inf()) bad = min(bad, v);
        else max = fmaxf(max, x);
    }
    bad = fold_in_thread_order(bad, [](int a, int b) { return min(a, b); });
    max = fold_in_thread_order(max, [](float a, float b) { return fmaxf(a, b); });

    // Pass 2: z = Σ e^(l - max) and Σ e^(l - max)·(l - max), in double.
    double z = 0.0, entropy = 0.0;
    for (int v = threadIdx.x; v < vocabulary && bad == INT_MAX; v += kThreads) {
        const float x = to_float(row[v]);
        if (x == neg_inf()) continue;
        const double shifted = static_cast<double>(x) - max;
        const double weight = exp(shifted);
        z += weight;
        entropy += weight * shifted;
    }
    z = fold_in_thread_order(z, [](double a, double b) { return a + b; });
    entropy = fold_in_thread_order(entropy, [](double a, double b) { return a + b; });

    // Pass 3: the two best predictions by score (logit, plus T·Gumbel at T > 0), mask id excluded.
    RowPartial best = empty_partial();
    for (int v = threadIdx.x; v < vocabulary; v += kThreads) {
        if (v == s.mask_id) continue;
        const float x = to_float(row[v]);
        const float score = temperature > 0.0f
            ? __fadd_rn(x, __fmul_rn(temperature, to_gumbel(to_uniform(random_bits(s.options.seed, step, sequence, task.position, v)))))
            : x;
        if (score != neg_inf() && !isnan(score)) offer(best, score, x, v);
    }
    const Best2 mine{best.best_score, best.best_logit, best.best_index, best.second_score, best.second_logit, best.second_index};
    const Best2 top = fold_in_thread_order(mine, [](Best2 a, const Best2 &b) {
        RowPartial merged = empty_partial();
        offer(merged, a.best_score, a.best_logit, a.best_index);
        offer(merged, a.second_score, a.second_logit, a.second_index);
        offer(merged, b.best_score, b.best_logit, b.best_index);
        offer(merged, b.second_score, b.second_logit, b.second_index);
        return Best2{merged.best_score, merged.best_logit, merged.best_index, merged.second_score, merged.second_logit, merged.second_index};
    });

    if (threadIdx.x == 0)
        write_row(s, sequence, g, task,
                  RowPartial{max, z, entropy, top.best_score, top.best_logit, top.best_index, top.second_score, top.second_logit,
                             top.second_index, bad},
                  row, step);
}

template <typename T>
cudaError_t launch_typed(const DecodeState &state, const T *logits, cudaStream_t stream, RowPath path) {
    const unsigned generation = static_cast<unsigned>(state.generation), batch = static_cast<unsigned>(state.batch);
    if (path == RowPath::Reference) {
        row_confidence_reference_kernel<T><<<dim3(generation, batch), kThreads, 0, stream>>>(state, logits);
        return cudaGetLastError();
    }
    const unsigned splits = static_cast<unsigned>(state.row_splits);
    row_confidence_kernel<T><<<dim3(generation, batch, splits), kThreads, 0, stream>>>(state, logits);
    if (splits > 1) {
        constexpr unsigned kCombineThreads = 128;
        const unsigned rows = generation * batch;
        combine_row_splits_kernel<T><<<(rows + kCombineThreads - 1) / kCombineThreads, kCombineThreads, 0, stream>>>(state, logits);
    }
    return cudaGetLastError();
}

}  // namespace

cudaError_t launch_row_confidence(const DecodeState &state, const void *logits, int32_t dtype, cudaStream_t stream, RowPath path) {
    switch (dtype) {
        case SABER_DTYPE_FLOAT32: return launch_typed(state, static_cast<const float *>(logits), stream, path);
        case SABER_DTYPE_FLOAT16: return launch_typed(state, static_cast<const __half *>(logits), stream, path);
        default: return launch_typed(state, static_cast<const __nv_bfloat16 *>(logits), stream, path);
    }
}

RowSplit fixed_row_split(int vocabulary, int splits) {
    // Chunks of whole 64-element groups (a multiple of every dtype's 16-byte vector); no chunk is empty.
    const int per_split = (vocabulary + splits - 1) / splits;
    const int chunk = (per_split + 63) / 64 * 64;
    return RowSplit{(vocabulary + chunk - 1) / chunk, chunk};
}

RowSplit plan_row_split(int rows, int vocabulary, int multiprocessors) {
    const int wanted_blocks = std::max(1, multiprocessors) * kResidentBlocks;
    const int rows_at_least_one = std::max(1, rows);
    if (rows_at_least_one >= wanted_blocks) return RowSplit{1, vocabulary};
    const int to_fill = (wanted_blocks + rows_at_least_one - 1) / rows_at_least_one;
    const int splits = std::max(1, std::min(to_fill, vocabulary / kMinSplitElements));
    return splits == 1 ? RowSplit{1, vocabulary} : fixed_row_split(vocabulary, splits);
}

size_t row_partial_bytes(size_t rows, int splits) { return rows * static_cast<size_t>(splits) * sizeof(RowPartial); }

}  // namespace saber
