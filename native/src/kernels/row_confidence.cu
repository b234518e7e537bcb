// Row confidence: one pass over each active logits row computes what exact::row_reference defines (exact_math.h), bit
// for bit: the prediction (argmax without the mask id, or Gumbel-max at T > 0), c, q and the low-confidence metric, for
// any split plan, batch composition and dtype (float16 and bfloat16 widen to float exactly).
//   fast path:      a grid of the decode's row_grid blocks (whole waves, fixed at create) walks the step's work items
//                   grid-stride: each candidate row of the row plan (row_plan.h) times its splits. A block reads whole
//                   1024-id chunks of its split of the row, one warp per chunk at a time: the chunk's exact maximum by
//                   one integer warp reduction, then exact::ChunkPartial's uint64 fixed-point sums (integer sums, the
//                   same in any order; exact::fixed_exp and fixed_exp_entropy), written to a [batch, G, chunks]
//                   scratch. Each lane keeps its best two predictions (a total order: merging them in any order is
//                   exact) and its lowest bad id. Finishing a row (in the block with one split, else in
//                   combine_row_splits_kernel, grid-stride over the planned rows): the row's maximum, the chunk terms in
//                   parallel, their double additions in chunk order (exactly exact::accumulate), then exact::finish_row.
//   reference path: one thread per row of batch x G runs exact::row_reference_of. Slow; the device tests check the fast
//                   path against it and against the host build.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "kernels.h"
#include "philox.h"
#include "row_plan.h"
#include "row_scan.h"

namespace saber {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kAllLanes = 0xFFFFFFFFu;
// Fast-path blocks resident per SM, by the register count alone, when cudaOccupancyMaxActiveBlocksPerMultiprocessor
// cannot answer (row_pass_resident_blocks): ptxas (sm_90) gives the greedy kernels 64 registers per thread (65536 /
// (64 x 256) = 4 blocks) and the sampled ones 77 to 80 (3 blocks). The split plan targets whole waves of
// multiprocessors x resident blocks; the thread limit (2048 / kThreads = 8 blocks) would over-split.
constexpr int kFallbackResidentBlocksGreedy = 4;
constexpr int kFallbackResidentBlocksSampled = 3;
// A split reads at least this many chunks, so that a block's fixed costs stay small beside its loads.
constexpr int kMinSplitChunks = 16;
using scan::kNoBad;
using scan::RowSummary;
using scan::ScanArgs;

__host__ __device__ __forceinline__ float neg_inf() { return -INFINITY; }

__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/// The 16 / sizeof(T) logits of a 16-byte vector, widened to float (exactly) in id order. A bfloat16 is the high half of
/// its float: one shift or mask per logit.
template <typename T>
__device__ __forceinline__ void unpack(const uint4 &v, float *x) {
#pragma unroll
    for (int j = 0; j < 16 / static_cast<int>(sizeof(T)); ++j) x[j] = to_float(reinterpret_cast<const T *>(&v)[j]);
}

/// The two 16-bit logits of a 32-bit word, widened to float: the lower id (the low half) first.
template <typename T>
__device__ __forceinline__ void unpack_word(unsigned w, float *x) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        x[0] = __uint_as_float(w << 16);              // a bfloat16 is the high half of its float
        x[1] = __uint_as_float(w & 0xFFFF0000u);
    } else {
        x[0] = __half2float(__ushort_as_half(static_cast<unsigned short>(w)));
        x[1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
    }
}

template <>
__device__ __forceinline__ void unpack<__nv_bfloat16>(const uint4 &v, float *x) {
    const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) unpack_word<__nv_bfloat16>(words[j], &x[2 * j]);
}

/// The larger of each pair of 16-bit logits, NaN when either is NaN (PTX max.NaN on f16x2 / bf16x2, sm_80 and later).
template <typename T>
__device__ __forceinline__ unsigned max_or_nan_x2(unsigned a, unsigned b) {
    unsigned m;
    if constexpr (std::is_same_v<T, __half>)
        asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(m) : "r"(a), "r"(b));
    else
        asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(m) : "r"(a), "r"(b));
    return m;
}

/// scan::lane_max_or_bad of the lane's 16-bit logits (the same value, but for the sign of a zero maximum, which
/// scan::canonical_max removes), from their 16-byte vectors: one packed maximum per two logits.
template <typename T, int kVectors>
__device__ __forceinline__ float packed_max_or_bad(const uint4 (&packed)[kVectors]) {
    unsigned m = packed[0].x;
    m = max_or_nan_x2<T>(m, packed[0].y);
    m = max_or_nan_x2<T>(m, packed[0].z);
    m = max_or_nan_x2<T>(m, packed[0].w);
#pragma unroll
    for (int k = 1; k < kVectors; ++k)
        m = max_or_nan_x2<T>(max_or_nan_x2<T>(m, packed[k].x), max_or_nan_x2<T>(max_or_nan_x2<T>(packed[k].y, packed[k].z), packed[k].w));
    float pair[2];
    unpack_word<T>(m, pair);
    return scan::max_or_nan(pair[0], pair[1]);
}

/// The exact:: row functions' loader of a device row of T.
template <typename T>
struct RowLoader {
    const T *row;
    __host__ __device__ __forceinline__ float operator()(int v) const { return to_float(row[v]); }
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

/// The metric argument of exact::row_reference: the low-confidence metric, else maxprob (the metric output is then c).
__device__ __forceinline__ int metric_of(const DecodeState &s) {
    return s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE ? s.options.metric : SABER_METRIC_MAXPROB;
}

template <typename T>
__device__ __forceinline__ const T *row_of(const DecodeState &s, const T *logits, int sequence, int position) {
    return logits + (static_cast<size_t>(sequence) * s.length + position) * s.vocabulary;
}

__device__ __forceinline__ size_t row_index(const DecodeState &s, int sequence, int g) {
    return static_cast<size_t>(sequence) * s.generation + g;
}

/// Writes a row's results, or for a bad row the step's error key (bad_index == V: nothing finite but the mask id).
__device__ __forceinline__ void write_result(const DecodeState &s, int sequence, int g, const RowTask &task, const exact::RowResult &r) {
    if (r.prediction < 0) {
        atomicMin(s.error, error_key(sequence, task.position, r.bad_index));
        return;
    }
    const size_t at = row_index(s, sequence, g);
    s.prediction[at] = r.prediction;
    s.confidence[at] = r.confidence;
    s.token_confidence[at] = r.token_confidence;
    s.metric[at] = r.metric;
}

/// The maximum over the warp's lanes of a float that is not NaN (a zero maximum is +0 if any lane holds +0), by one
/// integer reduction of scan::order_key.
__device__ __forceinline__ float warp_max(float x) { return scan::float_of_order_key(__reduce_max_sync(kAllLanes, scan::order_key(x))); }

/// The sum over the warp's lanes of values below 2^48 (scan::lane_terms' sums): two 32-bit reductions of 24-bit halves,
/// each below 32 x 2^24, so nothing wraps. Integer sums: the same in any order.
__device__ __forceinline__ uint64_t warp_sum(uint64_t x) {
    const unsigned low = __reduce_add_sync(kAllLanes, static_cast<unsigned>(x) & 0xFFFFFFu);
    const unsigned high = __reduce_add_sync(kAllLanes, static_cast<unsigned>(x >> 24));
    return (static_cast<uint64_t>(high) << 24) + low;
}

/// One warp computes chunk `chunk`'s exact::ChunkPartial into *out (lane 0 writes it) and offers the chunk's ids to its
/// lanes' top twos (row_scan.h: lane l holds ids lane_id(begin, kWidth, l, e), e < 32). A full chunk of a 16-byte aligned
/// row is read as 16-byte vectors (coalesced: lane l reads vectors l, l + 32, ...); any other chunk id by id, in the
/// same layout.
template <typename T, bool kSampled, bool kEntropy>
__device__ __forceinline__ void scan_chunk(const T *__restrict__ row, int chunk, bool vectors, const ScanArgs &a, RowSummary &lane,
                                           exact::ChunkPartial *out) {
    constexpr int kWidth = 16 / sizeof(T);                   // ids per 16-byte vector: 4 (float) or 8 (16-bit)
    constexpr int kVectors = scan::kPerLane / kWidth;        // 8 or 4 vectors per lane
    const int l = threadIdx.x & 31;
    const int begin = chunk * exact::kChunk;

    float x[scan::kPerLane];
    float x_max;   // scan::lane_max_or_bad(x): NaN or +inf when one of the lane's logits is bad
    if (vectors) {
        const uint4 *source = reinterpret_cast<const uint4 *>(row + begin) + l;
        uint4 packed[kVectors];
#pragma unroll
        for (int k = 0; k < kVectors; ++k) packed[k] = __ldg(source + 32 * k);
        // 16-bit logits: the maximum of pairs, then of the last pair, widened (widening is exact and monotone, and NaN
        // and +inf stay NaN and +inf).
        if constexpr (sizeof(T) == 2) x_max = packed_max_or_bad<T>(packed);
#pragma unroll
        for (int k = 0; k < kVectors; ++k) unpack<T>(packed[k], &x[k * kWidth]);
        if constexpr (sizeof(T) != 2) x_max = scan::lane_max_or_bad(x);
    } else {
#pragma unroll
        for (int e = 0; e < scan::kPerLane; ++e) {
            const int v = scan::lane_id(begin, kWidth, l, e);
            x[e] = v < a.vocabulary ? to_float(__ldg(row + v)) : neg_inf();   // ids past the row: -inf, which nothing counts
        }
        x_max = scan::lane_max_or_bad(x);
    }

    // A bad logit (NaN or +inf) makes the row bad: only the lowest such id matters then. The lane's maximum is NaN or
    // +inf exactly when one of its logits is bad (one test per lane, not per logit).
    const bool good = scan::good_max(x_max);
    if (!__all_sync(kAllLanes, good)) {
        if (!good) lane.bad = min(lane.bad, scan::first_bad_id(x, begin, kWidth, l));
        return;
    }

    // The chunk's exact maximum, the same bits in every lane.
    const float m = scan::canonical_max(warp_max(x_max));
    if (m > lane.max) lane.max = m;

    // The fixed-point sums, then their integer warp sums (order-free).
    exact::ChunkPartial p = scan::lane_terms<kEntropy>(x, m);
    p.sum = warp_sum(p.sum);
    if (kEntropy) p.entropy = warp_sum(p.entropy);
    if (l == 0) *out = p;

    if (kSampled)
        scan::offer_sampled(lane, x, x_max, begin, kWidth, l, a);
    else
        scan::offer_greedy(lane, x, x_max, begin, kWidth, l, a.mask);
}

/// The block's summary of its lanes' into `out` (shared), visible to every thread on return.
__device__ __forceinline__ void reduce_block(RowSummary lane, RowSummary &out) {
    __shared__ RowSummary warps[kWarps];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        RowSummary other;
        other.top.best = __shfl_xor_sync(kAllLanes, lane.top.best, offset);
        other.top.second = __shfl_xor_sync(kAllLanes, lane.top.second, offset);
        other.top.best_score = __shfl_xor_sync(kAllLanes, lane.top.best_score, offset);
        other.top.second_score = __shfl_xor_sync(kAllLanes, lane.top.second_score, offset);
        other.bad = __shfl_xor_sync(kAllLanes, lane.bad, offset);
        other.max = __shfl_xor_sync(kAllLanes, lane.max, offset);
        other.nan_score = __shfl_xor_sync(kAllLanes, lane.nan_score, offset);
        scan::merge(lane, other);
    }
    if ((threadIdx.x & 31) == 0) warps[threadIdx.x / 32] = lane;
    __syncthreads();
    if (threadIdx.x == 0) {
        RowSummary r = warps[0];
        for (int w = 1; w < kWarps; ++w) scan::merge(r, warps[w]);
        out = r;
    }
    __syncthreads();
}

/// n.sum and n.entropy of a row from its `chunks` partials, n.max being the row's maximum: each thread computes chunk
/// terms (exact::chunk_terms), and thread 0 adds them in chunk order, skipping chunks without a finite logit, which is
/// exactly exact::accumulate over the chunks in order. The result is thread 0's n. Every thread of the block calls it.
__device__ __forceinline__ void merge_in_chunk_order(exact::RowNormaliser &n, const exact::ChunkPartial *parts, int chunks) {
    __shared__ exact::ChunkTerms terms[kThreads];
    __shared__ bool used[kThreads];
    for (int base = 0; base < chunks; base += kThreads) {
        const int c = base + static_cast<int>(threadIdx.x);
        if (c < chunks) {
            const exact::ChunkPartial p = parts[c];   // written earlier in this kernel or by the previous one: no __ldg
            used[threadIdx.x] = p.max != neg_inf();
            if (p.max != neg_inf()) terms[threadIdx.x] = exact::chunk_terms(p, n.max);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            const int count = min(kThreads, chunks - base);
            for (int i = 0; i < count; ++i)
                if (used[i]) {
                    n.sum = exact::dadd(n.sum, terms[i].sum);
                    n.entropy = exact::dadd(n.entropy, terms[i].entropy);
                }
        }
        __syncthreads();
    }
}

/// Finishes a row from its summary (shared, visible to all) and chunk partials: the error key of a bad row, or the row's
/// results as exact::row_reference computes them. Every thread of the block calls it.
template <typename T>
__device__ void finish_row_in_block(const DecodeState &s, int sequence, int g, const RowTask &task, RowSummary &summary,
                                    const exact::ChunkPartial *parts, const T *row, int step) {
    if (summary.bad != kNoBad) {
        if (threadIdx.x == 0) atomicMin(s.error, error_key(sequence, task.position, summary.bad));
        return;
    }
    const RowLoader<T> load{row};
    if (summary.nan_score) {
        // NaN scores break the total order: rank as the definition does, in id order.
        if (threadIdx.x == 0)
            summary.top = exact::top_two(load, s.vocabulary, s.mask_id, s.options.temperature, s.options.seed, step, sequence, task.position);
        __syncthreads();
    }
    if (summary.top.best < 0) {
        if (threadIdx.x == 0) atomicMin(s.error, error_key(sequence, task.position, s.vocabulary));
        return;
    }
    exact::RowNormaliser n{summary.max, 0.0, 0.0};
    merge_in_chunk_order(n, parts, s.row_chunks);
    if (threadIdx.x == 0)
        write_result(s, sequence, g, task,
                     exact::finish_row(load, n, summary.top, s.vocabulary, task.token, metric_of(s), s.options.seed, step, sequence,
                                       task.position));
}

/// A work item of the row pass (a row of the step's row plan, kernels/row_plan.h, or one split of it) and what the row
/// pass does with it, held in shared memory by a block: thread 0 finds it, every thread reads it where it is used. The
/// fields (and the block's next item) are not kept in registers across the chunk loop (a __syncthreads between makes
/// the compiler load them again), which keeps that loop within its registers.
struct PlannedRow {
    long long item;   // the block's current work item; thread 0 advances it
    int sequence, g, split;
    RowTask task;
};

/// Thread 0 writes planned row r (split `split`) into `out`; the block's threads may read it after the
/// __syncthreads_and that returns whether the row is read this step (thread 0's answer, the same in every thread). The
/// caller keeps out's previous readers before it (a __syncthreads).
__device__ __forceinline__ bool plan_row(const DecodeState &s, long long r, int split, PlannedRow &out) {
    bool active = false;
    if (threadIdx.x == 0) {
        out.sequence = sequence_of_row(s.row_offsets, s.batch, r);
        out.g = candidate_position(s.options, s.block_length, s.block[out.sequence], static_cast<int>(r - s.row_offsets[out.sequence]));
        out.split = split;
        out.task = row_task(s, out.sequence, out.g);
        active = out.task.active;
    }
    return __syncthreads_and(threadIdx.x != 0 || active);
}

/// Fast path: the grid's blocks walk the work items (row, split) of the step's row plan, grid-stride: item w is split
/// w % splits of planned row w / splits. A block reads the chunks of its split of the row; with one split it finishes
/// the row, otherwise it leaves its summary for combine_row_splits_kernel. Every __syncthreads is reached by the whole
/// block: the loop bounds come from memory the row pass does not write (and the item from shared memory), and whether a
/// row is read is thread 0's answer, shared by __syncthreads_and.
template <typename T, bool kSampled, bool kEntropy>
__global__ void __launch_bounds__(kThreads, kSampled ? kFallbackResidentBlocksSampled : kFallbackResidentBlocksGreedy)
    row_confidence_kernel(DecodeState s, const T *__restrict__ logits) {
    __shared__ PlannedRow planned;
    __shared__ RowSummary summary;
    if (threadIdx.x == 0) planned.item = blockIdx.x;
    while (true) {
        __syncthreads();   // the previous item's reads of `planned` and `summary` come first; the next item is visible
        const long long w = planned.item;
        if (w >= s.row_offsets[s.batch] * s.row_splits) break;
        const long long r = w / s.row_splits;
        const bool active = plan_row(s, r, static_cast<int>(w - r * s.row_splits), planned);
        if (threadIdx.x == 0) planned.item = w + gridDim.x;   // every thread has read w (before plan_row's barrier)
        if (!active) continue;
        const T *row = row_of(s, logits, planned.sequence, planned.task.position);
        const ScanArgs a{s.vocabulary, s.mask_id, s.options.temperature, exact::mul(s.options.temperature, exact::kGumbelMax), s.options.seed,
                         *s.step + 1, planned.sequence, planned.task.position};
        exact::ChunkPartial *parts =
            static_cast<exact::ChunkPartial *>(s.chunk_partials) + row_index(s, planned.sequence, planned.g) * s.row_chunks;
        const bool aligned = reinterpret_cast<uintptr_t>(row) % 16 == 0;
        const int full_chunks = s.vocabulary / exact::kChunk;
        const int first = planned.split * s.row_split_chunks, last = min(s.row_chunks, first + s.row_split_chunks);

        RowSummary lane = scan::empty_summary();
        for (int c = first + static_cast<int>(threadIdx.x / 32); c < last; c += kWarps)
            scan_chunk<T, kSampled, kEntropy>(row, c, aligned && c < full_chunks, a, lane, parts + c);

        reduce_block(lane, summary);   // also orders the chunk partials' writes before the reads below
        const int sequence = planned.sequence, g = planned.g;
        if (s.row_splits == 1) {
            finish_row_in_block(s, sequence, g, planned.task, summary,
                                static_cast<const exact::ChunkPartial *>(s.chunk_partials) + row_index(s, sequence, g) * s.row_chunks,
                                row_of(s, logits, sequence, planned.task.position), *s.step + 1);
        } else if (threadIdx.x == 0) {
            static_cast<RowSummary *>(s.split_partials)[row_index(s, sequence, g) * s.row_splits + planned.split] = summary;
        }
    }
}

/// Fast path, split rows: the grid's blocks walk the planned rows grid-stride; a block merges a row's splits' summaries
/// and finishes the row.
template <typename T>
__global__ void __launch_bounds__(kThreads) combine_row_splits_kernel(DecodeState s, const T *__restrict__ logits) {
    __shared__ PlannedRow planned;
    __shared__ RowSummary summary;
    const long long rows = s.row_offsets[s.batch];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        __syncthreads();   // the previous row's reads of `planned` and `summary` come first
        if (!plan_row(s, r, 0, planned)) continue;
        const int sequence = planned.sequence, g = planned.g;
        if (threadIdx.x == 0) {
            const RowSummary *splits = static_cast<const RowSummary *>(s.split_partials) + row_index(s, sequence, g) * s.row_splits;
            RowSummary m = splits[0];
            for (int split = 1; split < s.row_splits; ++split) scan::merge(m, splits[split]);
            summary = m;
        }
        __syncthreads();
        finish_row_in_block(s, sequence, g, planned.task, summary,
                            static_cast<const exact::ChunkPartial *>(s.chunk_partials) + row_index(s, sequence, g) * s.row_chunks,
                            row_of(s, logits, sequence, planned.task.position), *s.step + 1);
    }
}

/// Reference path: one thread per row runs the definition.
template <typename T>
__global__ void row_confidence_reference_kernel(DecodeState s, const T *__restrict__ logits) {
    const size_t index = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= static_cast<size_t>(s.batch) * s.generation) return;
    const int sequence = static_cast<int>(index / s.generation), g = static_cast<int>(index % s.generation);
    const RowTask task = row_task(s, sequence, g);
    if (!task.active) return;
    const int step = *s.step + 1;
    write_result(s, sequence, g, task,
                 exact::row_reference_of(RowLoader<T>{row_of(s, logits, sequence, task.position)}, s.vocabulary, s.mask_id, task.token,
                                         metric_of(s), s.options.temperature, s.options.seed, step, sequence, task.position));
}

/// Blocks of a fast-path launch: the decode's row_grid (whole waves, fixed at create so that a captured graph stays
/// valid), or, for a state that has none, one block per work item the step can have (batch x G x splits, at most 2^31 - 1),
/// as the grid was before the row plan.
unsigned fast_grid(const DecodeState &state) {
    if (state.row_grid > 0) return static_cast<unsigned>(state.row_grid);
    const long long items = static_cast<long long>(state.batch) * state.generation * std::max(1, state.row_splits);
    return static_cast<unsigned>(std::max(1LL, std::min(items, 0x7FFFFFFFLL)));
}

template <typename T, bool kSampled, bool kEntropy>
void launch_fast(const DecodeState &state, const T *logits, cudaStream_t stream) {
    row_confidence_kernel<T, kSampled, kEntropy><<<fast_grid(state), kThreads, 0, stream>>>(state, logits);
}

template <typename T>
cudaError_t launch_typed(const DecodeState &state, const T *logits, cudaStream_t stream, RowPath path) {
    const unsigned generation = static_cast<unsigned>(state.generation), batch = static_cast<unsigned>(state.batch);
    if (path == RowPath::Reference) {
        constexpr uint64_t kReferenceThreads = 32;
        // batch x G passes 2^32 (65535 x 2^20): counted in 64 bits, and a grid past 2^31 - 1 blocks is refused, not wrapped.
        const uint64_t rows = static_cast<uint64_t>(generation) * batch, blocks = (rows + kReferenceThreads - 1) / kReferenceThreads;
        if (blocks > 0x7FFFFFFFu) return cudaErrorInvalidConfiguration;
        row_confidence_reference_kernel<T>
            <<<static_cast<unsigned>(blocks), static_cast<unsigned>(kReferenceThreads), 0, stream>>>(state, logits);
        return cudaGetLastError();
    }
    // The row plan of this step (kernels/row_plan.h) was written by the previous step's last decide block, or at create.
    const bool sampled = state.options.temperature > 0.0f;
    const bool entropy = state.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE && state.options.metric == SABER_METRIC_NEGENTROPY;
    if (sampled)
        entropy ? launch_fast<T, true, true>(state, logits, stream) : launch_fast<T, true, false>(state, logits, stream);
    else
        entropy ? launch_fast<T, false, true>(state, logits, stream) : launch_fast<T, false, false>(state, logits, stream);
    if (state.row_splits > 1) combine_row_splits_kernel<T><<<fast_grid(state), kThreads, 0, stream>>>(state, logits);
    return cudaGetLastError();
}

template <typename T, bool kSampled, bool kEntropy>
int resident_blocks_of() {
    int blocks = 0;
    const cudaError_t error =
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, row_confidence_kernel<T, kSampled, kEntropy>, kThreads, 0);
    if (error == cudaSuccess && blocks > 0) return blocks;
    // The query failed (or found no room, which a launch would then report): consume its error so that the next launch
    // does not report it as pending, and fall back to the figure the register count gives.
    if (error != cudaSuccess) (void)cudaGetLastError();
    return kSampled ? kFallbackResidentBlocksSampled : kFallbackResidentBlocksGreedy;
}

template <typename T>
int resident_blocks_typed(bool sampled, bool entropy) {
    if (sampled) return entropy ? resident_blocks_of<T, true, true>() : resident_blocks_of<T, true, false>();
    return entropy ? resident_blocks_of<T, false, true>() : resident_blocks_of<T, false, false>();
}

}  // namespace

int row_pass_resident_blocks(int32_t dtype, const saber_decode_options &options) {
    // The instantiation launch_typed selects for these options.
    const bool sampled = options.temperature > 0.0f;
    const bool entropy = options.strategy == SABER_STRATEGY_LOW_CONFIDENCE && options.metric == SABER_METRIC_NEGENTROPY;
    switch (dtype) {
        case SABER_DTYPE_FLOAT32: return resident_blocks_typed<float>(sampled, entropy);
        case SABER_DTYPE_FLOAT16: return resident_blocks_typed<__half>(sampled, entropy);
        default: return resident_blocks_typed<__nv_bfloat16>(sampled, entropy);
    }
}

cudaError_t launch_row_confidence(const DecodeState &state, const void *logits, int32_t dtype, cudaStream_t stream, RowPath path) {
    switch (dtype) {
        case SABER_DTYPE_FLOAT32: return launch_typed(state, static_cast<const float *>(logits), stream, path);
        case SABER_DTYPE_FLOAT16: return launch_typed(state, static_cast<const __half *>(logits), stream, path);
        default: return launch_typed(state, static_cast<const __nv_bfloat16 *>(logits), stream, path);
    }
}

namespace {

int chunks_of(int vocabulary) { return (vocabulary + exact::kChunk - 1) / exact::kChunk; }

}  // namespace

RowSplit fixed_row_split(int vocabulary, int splits) {
    const int chunks = chunks_of(vocabulary);
    const int wanted = std::max(1, std::min(splits, chunks));
    const int per_split = (chunks + wanted - 1) / wanted;
    return RowSplit{(chunks + per_split - 1) / per_split, per_split};   // no split is empty
}

RowSplit plan_row_split(int rows, int vocabulary, int multiprocessors, int resident_blocks) {
    const int chunks = chunks_of(vocabulary);
    const RowSplit whole{1, chunks};
    // A wave: the blocks the GPU runs at once. Rows that fill one are not cut.
    const long long wave = static_cast<long long>(std::max(1, multiprocessors)) * std::max(1, resident_blocks);
    const long long active = std::max(1, rows);
    if (active >= wave) return whole;
    // Fewer rows: the split whose blocks finish soonest, taking a block's time as its chunks and blocks as running in
    // waves: waves(rows x splits) x chunks per split, least over 1 .. chunks / 16 splits (the fewest splits on a tie).
    // So rows x splits fills whole waves as nearly as whole-chunk splits of at least 16 chunks allow.
    const int most = std::max(1, chunks / kMinSplitChunks);
    RowSplit best = whole;
    long long best_time = chunks;
    for (int wanted = 2; wanted <= most; ++wanted) {
        const RowSplit split = fixed_row_split(vocabulary, wanted);
        const long long waves = (active * split.splits + wave - 1) / wave;
        const long long time = waves * split.chunks;
        if (time < best_time) {
            best = split;
            best_time = time;
        }
    }
    return best;
}

size_t chunk_partial_bytes(size_t rows, int vocabulary) { return rows * static_cast<size_t>(chunks_of(vocabulary)) * sizeof(exact::ChunkPartial); }

size_t split_partial_bytes(size_t rows, int splits) { return splits > 1 ? rows * static_cast<size_t>(splits) * sizeof(RowSummary) : 0; }

}  // namespace saber
