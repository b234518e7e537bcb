// Row confidence: one pass over each active logits row computes what exact::row_reference defines (exact_math.h), bit
// for bit: the prediction (argmax without the mask id, or Gumbel-max at T > 0), c, q and the low-confidence metric, for
// any split plan, batch composition and dtype (float16 and bfloat16 widen to float exactly).
//   fast path:      a grid of the decode's row_grid blocks (whole waves, fixed at create) walks the step's work items
//                   grid-stride: each candidate row of the row plan (row_plan.h) times its splits. A block reads whole
//                   1024-id chunks of its split of the row, one warp per chunk at a time, in row_scan.h's layout:
//                   aligned 16-byte vectors for every chunk whose slots lie inside the row, whatever the row's length and
//                   16-byte alignment (a row starting past a boundary is rotated: lane 0's first vector takes the
//                   chunk's last ids from the slot past its grid), id by id only for the others (a rotated row's first
//                   chunk, the last ones); the first vectors of a warp's next chunk are loaded before it computes the
//                   current one. Per chunk: its exact maximum by one integer warp reduction, then exact::ChunkPartial's
//                   uint64 fixed-point sums (integer sums of the lanes' classes, the same in any order;
//                   scan::lane_terms), written to a [batch, G, chunks] scratch. The prediction is each warp's top two
//                   (the same in all its lanes), changed only by a chunk whose maximum beats the floor (the warp's
//                   runner-up or the block's, a warp-uniform test): then the lanes rank their candidates and two rounds
//                   of warp reductions merge them. Finishing a row (in the block with one split, else in the block of
//                   the row's last split to finish, which a per-row arrival counter names: no second kernel): the row's
//                   maximum, the chunk terms in parallel, their double additions in chunk order (exactly
//                   exact::accumulate), then exact::finish_row.
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

/// The sum over the warp's lanes of values below 2^48 (scan::lane_terms' sums): two 32-bit reductions of 24-bit halves,
/// each below 32 x 2^24, so nothing wraps. Integer sums: the same in any order.
__device__ __forceinline__ uint64_t warp_sum(uint64_t x) {
    const unsigned low = __reduce_add_sync(kAllLanes, static_cast<unsigned>(x) & 0xFFFFFFu);
    const unsigned high = __reduce_add_sync(kAllLanes, static_cast<unsigned>(x >> 24));
    return (static_cast<uint64_t>(high) << 24) + low;
}

/// A lane's 16-byte vectors of a chunk (row_scan.h's layout), and how many of them a warp loads a chunk ahead: before it
/// computes a chunk, the warp issues the loads of its next chunk's first kAhead vectors (register double buffering), so
/// that every warp has loads in flight while it computes, whatever the occupancy. kAhead = 2 for 16-bit logits (1 KB a
/// warp, half a chunk; 8 more registers per thread, no spill) and 1 for float (512 B, an eighth of a chunk): a float
/// lane's 32 values already take half of the 64 registers that keep the occupancy, and with 2 the float kernels spilled
/// 40-48 bytes a thread into the hot loop (ptxas, sm_90; 24-32 with 1; bench/kernel_report.py reports both).
template <typename T>
struct Vectors {
    static constexpr int kWidth = 16 / sizeof(T);              // ids per 16-byte vector: 4 (float) or 8 (16-bit)
    static constexpr int kCount = scan::kPerLane / kWidth;     // 8 or 4 vectors per lane and chunk
    static constexpr int kAhead = sizeof(T) == 4 ? 1 : 2;
};

/// Lane l's first 16-byte slot of chunk `chunk` (scan::vector_offset; 16-byte aligned, and inside the row when the chunk
/// is read as vectors: only then is it dereferenced); its vector k is at + 32 k, and the same lane's of the warp's next
/// chunk (chunk + kWarps) at + kNextChunk. Integer arithmetic: the slot of a chunk that is not read as vectors may lie
/// outside the row.
template <typename T>
__device__ __forceinline__ const uint4 *lane_slots(const T *row, int chunk, int rotation) {
    const long long offset = scan::vector_offset(scan::ChunkLayout{chunk * exact::kChunk, 0, rotation, true}, Vectors<T>::kWidth,
                                                 static_cast<int>(threadIdx.x & 31), 0);
    return reinterpret_cast<const uint4 *>(reinterpret_cast<uintptr_t>(row) + offset * static_cast<long long>(sizeof(T)));
}
template <typename T>
constexpr int kNextChunk = kWarps * exact::kChunk / Vectors<T>::kWidth;

/// A lane's logits of a chunk in their 16-byte vectors, in the layout's order (row_scan.h), widened to float where one is
/// used (x[e]): a 16-bit chunk stays in 16 registers.
template <typename T>
struct LaneLogits {
    uint4 v[Vectors<T>::kCount];

    __device__ __forceinline__ float operator[](int e) const {
        constexpr int kWidth = Vectors<T>::kWidth;
        const uint4 &q = v[e / kWidth];
        const int word = (e % kWidth) * static_cast<int>(sizeof(T)) / 4;
        const unsigned w = word == 0 ? q.x : word == 1 ? q.y : word == 2 ? q.z : q.w;
        if constexpr (sizeof(T) == 4) {
            return __uint_as_float(w);
        } else {
            float pair[2];
            unpack_word<T>(w, pair);
            return pair[e % 2];
        }
    }
};

/// The bits of a logit as its vector holds them, and those of -inf (what the layout's ids past the row read as).
__device__ __forceinline__ unsigned logit_bits(float x) { return __float_as_uint(x); }
__device__ __forceinline__ unsigned logit_bits(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ unsigned logit_bits(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
template <typename T>
constexpr unsigned kNegInfBits = sizeof(T) == 4 ? 0xFF800000u : std::is_same_v<T, __half> ? 0xFC00u : 0xFF80u;

/// A chunk that is not read as vectors (the row's first with a rotation, its last ones): its logits id by id in the same
/// layout, coalesced, -inf past the row.
template <typename T>
__device__ __forceinline__ void gather(const T *__restrict__ row, const scan::ChunkLayout &c, LaneLogits<T> &x) {
    constexpr int kWidth = Vectors<T>::kWidth;
    const int l = threadIdx.x & 31;
    unsigned bits[scan::kPerLane];
#pragma unroll
    for (int e = 0; e < scan::kPerLane; ++e) {
        const int v = scan::lane_id(c, kWidth, l, e);
        bits[e] = v < c.end ? logit_bits(__ldg(row + v)) : kNegInfBits<T>;
    }
#pragma unroll
    for (int k = 0; k < Vectors<T>::kCount; ++k) {
        unsigned w[4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
            w[j] = sizeof(T) == 4 ? bits[k * kWidth + j] : bits[k * kWidth + 2 * j] | bits[k * kWidth + 2 * j + 1] << 16;
        x.v[k] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

/// The warp's top two merged with the chunk's best two candidates: each lane's best two (lane_top_*), then two rounds of
/// a warp maximum of their keys and a warp minimum of the ids holding it (row_scan.h). Every lane gets the same bits.
__device__ __forceinline__ void merge_lane_tops(exact::TopTwo &top, const scan::LaneTop &t) {
    const int32_t key1 = __reduce_max_sync(kAllLanes, scan::candidate_key(t.score1, t.id1));
    if (key1 == scan::kNoKey) return;   // no candidate in the chunk
    const int id1 = __reduce_min_sync(kAllLanes, scan::candidate_id(t.score1, t.id1, key1));
    float score2;
    int id2;
    scan::second_round(t, id1, score2, id2);
    const int32_t key2 = __reduce_max_sync(kAllLanes, scan::candidate_key(score2, id2));
    const int second = key2 == scan::kNoKey ? -1 : __reduce_min_sync(kAllLanes, scan::candidate_id(score2, id2, key2));
    scan::merge_chunk_best(top, key1, id1, key2, second);
}

/// The block's floor (row_scan.h: scan::no_floor_key, floor_key_below) at shared address `address`, read while other
/// warps may raise it (atomicMax): a relaxed load, every time (a stale value is a valid floor).
__device__ __forceinline__ int32_t read_floor(unsigned address) {
    int32_t key;
    asm volatile("ld.relaxed.cta.shared.b32 %0, [%1];" : "=r"(key) : "r"(address));
    return key;
}

/// One warp computes chunk `chunk`'s exact::ChunkPartial into *out (lane 0 writes it) and merges the chunk's ids into the
/// warp's top two (row_scan.h; `warp`: top and max the same in every lane, bad and nan_score the lane's own). A chunk read
/// as vectors (`vectors`: scan::chunk_layout's) has its first kAhead vectors in `ahead` (loaded while the previous chunk
/// was computed); any other chunk is read here id by id, in the same layout. Before its arithmetic, the warp issues the
/// loads of the first kAhead vectors of its next chunk (chunk + kWarps) into `ahead` when that one is read as vectors
/// (next_vectors). The block's floor is at shared address floor_address (in `floor_key`). kRunnerUp: the warp keeps the
/// runner-up (the margin metric), else only the best (row_scan.h: the floors are the best's, and a greedy chunk's best
/// needs no ranking).
template <typename T, bool kSampled, bool kEntropy, bool kRunnerUp>
__device__ __forceinline__ void scan_chunk(const T *__restrict__ row, int chunk, int rotation, bool vectors, bool next_vectors,
                                           uint4 (&ahead)[Vectors<T>::kAhead], const ScanArgs &a, RowSummary &warp, int32_t *floor_key,
                                           unsigned floor_address, exact::ChunkPartial *out) {
    constexpr int kWidth = Vectors<T>::kWidth;
    constexpr int kAhead = Vectors<T>::kAhead;
    const int l = threadIdx.x & 31;
    const int begin = chunk * exact::kChunk;
    const scan::ChunkLayout c{begin, min(begin + exact::kChunk, a.vocabulary), rotation, vectors};
    const uint4 *slots = lane_slots(row, chunk, rotation);

    LaneLogits<T> x;
    if (vectors) {
#pragma unroll
        for (int k = 0; k < Vectors<T>::kCount; ++k) x.v[k] = k < kAhead ? ahead[k] : __ldg(slots + scan::kLanes * k);
        uint4 tail = make_uint4(0, 0, 0, 0);
        if (c.rotation != 0 && l == 0) tail = __ldg(reinterpret_cast<const uint4 *>(row + scan::tail_offset(c)));
        // Unconditional loads (so that `ahead` never keeps an old value): the current chunk's slots again when the next
        // chunk is not read as vectors (or there is none): valid addresses, L1 hits, never used.
        const uint4 *ahead_slots = next_vectors ? slots + kNextChunk<T> : slots;
#pragma unroll
        for (int k = 0; k < kAhead; ++k) ahead[k] = __ldg(ahead_slots + scan::kLanes * k);
        if (c.rotation != 0) {
            // Lane 0's first vector: below the rotation, the chunk's last ids (the tail slot) instead of the previous
            // chunk's (scan::rotated_word; the other lanes take nothing from the tail).
            const int tail_bytes = l == 0 ? c.rotation * static_cast<int>(sizeof(T)) : 0;
            x.v[0].x = scan::rotated_word(x.v[0].x, tail.x, tail_bytes, 0);
            x.v[0].y = scan::rotated_word(x.v[0].y, tail.y, tail_bytes, 1);
            x.v[0].z = scan::rotated_word(x.v[0].z, tail.z, tail_bytes, 2);
            x.v[0].w = scan::rotated_word(x.v[0].w, tail.w, tail_bytes, 3);
        }
    } else {
        gather(row, c, x);   // first: its 32 loads in flight need registers that the next chunk's would take
        if (next_vectors) {
#pragma unroll
            for (int k = 0; k < kAhead; ++k) ahead[k] = __ldg(slots + kNextChunk<T> + scan::kLanes * k);
        } else {
#pragma unroll
            for (int k = 0; k < kAhead; ++k) ahead[k] = make_uint4(0, 0, 0, 0);
        }
    }
    // scan::lane_max_or_bad(x): NaN or +inf when one of the lane's logits is bad. 16-bit logits: the maximum of pairs,
    // then of the last pair, widened (widening is exact and monotone, and NaN and +inf stay NaN and +inf).
    float x_max;
    if constexpr (sizeof(T) == 2)
        x_max = packed_max_or_bad<T>(x.v);
    else
        x_max = scan::lane_max_or_bad(x);

    // A bad logit (NaN or +inf) makes the row bad: only the lowest such id matters then. The lane's maximum is NaN or
    // +inf exactly when one of its logits is bad (one test per lane, not per logit).
    const bool good = scan::good_max(x_max);
    if (!__all_sync(kAllLanes, good)) {
        if (!good) warp.bad = min(warp.bad, scan::lowest_bad_id(x, c, kWidth, l));
        return;
    }

    // The chunk's exact maximum, the same bits in every lane: one integer warp maximum of scan::order_key.
    const int32_t max_key = __reduce_max_sync(kAllLanes, scan::order_key(x_max));
    const float m = scan::canonical_max(scan::float_of_order_key(max_key));
    if (m > warp.max) warp.max = m;

    // The prediction: a warp-uniform test of the chunk's maximum against the floor; only a chunk that passes it is ranked.
    // The block's floor as lane 0 read it, so that every lane takes the same branch (the ranking's warp reductions need
    // all 32 lanes).
    const int32_t block_floor = __shfl_sync(kAllLanes, read_floor(floor_address), 0);
    const bool rank = kSampled ? scan::chunk_may_rank_sampled(m, warp.top, block_floor, a.score_bound, kRunnerUp)
                               : scan::chunk_may_rank_greedy(max_key, warp.top, block_floor, kRunnerUp);
    if (rank) {
        const int32_t floor = scan::candidate_floor_key(warp.top, block_floor, kRunnerUp);
        if (kSampled)
            merge_lane_tops(warp.top, scan::lane_top_sampled(x, c, kWidth, l, a, scan::float_of_order_key(floor), warp.nan_score));
        else if (!kRunnerUp && __builtin_expect(!scan::chunk_holds(c, a.mask), 1))   // one chunk of a row holds the mask id
            exact::offer(warp.top, m, __reduce_min_sync(kAllLanes, scan::lane_best_greedy(x, c, kWidth, l, m)));
        else
            merge_lane_tops(warp.top, scan::lane_top_greedy(x, c, kWidth, l, a.mask, scan::float_of_order_key(floor)));
        const int32_t published = scan::published_floor_key(warp.top, kRunnerUp);
        if (l == 0 && published != scan::no_floor_key()) atomicMax(floor_key, published);
    }

    // The fixed-point sums, then their integer warp sums (order-free).
    exact::ChunkPartial p = scan::lane_terms<kEntropy, kWidth>(x, m);
    p.sum = warp_sum(p.sum);
    if (kEntropy) p.entropy = warp_sum(p.entropy);
    if (l == 0) *out = p;
}

/// The block's summary of its warps' into `out` (shared), visible to every thread on return: a warp's top two and maximum
/// are the same in all its lanes (each warp's chunks are disjoint id sets: merged once per warp), its lowest bad id and
/// NaN flag are reduced over its lanes.
__device__ __forceinline__ void reduce_block(RowSummary warp, RowSummary &out) {
    __shared__ RowSummary warps[kWarps];
    warp.bad = __reduce_min_sync(kAllLanes, warp.bad);
    warp.nan_score = __any_sync(kAllLanes, warp.nan_score);
    if ((threadIdx.x & 31) == 0) warps[threadIdx.x / 32] = warp;
    __syncthreads();
    if (threadIdx.x == 0) {
        RowSummary r = warps[0];
        for (int w = 1; w < kWarps; ++w) scan::merge(r, warps[w]);
        out = r;
    }
    __syncthreads();
}

/// A chunk partial written in this kernel, by this block or another one (a split row's), read from L2 (ld.global.cg): an
/// SM's L1 is not updated by another SM's writes, and a line of it may hold a neighbouring row's partials read earlier.
__device__ __forceinline__ exact::ChunkPartial load_partial(const exact::ChunkPartial *p) {
    return exact::ChunkPartial{__ldcg(&p->max), static_cast<uint64_t>(__ldcg(reinterpret_cast<const unsigned long long *>(&p->sum))),
                               static_cast<uint64_t>(__ldcg(reinterpret_cast<const unsigned long long *>(&p->entropy)))};
}

/// A split's summary written by another block of this kernel, read from L2 word by word (as load_partial).
__device__ __forceinline__ RowSummary load_summary(const RowSummary *p) {
    static_assert(sizeof(RowSummary) % sizeof(int) == 0, "RowSummary is read as ints");
    constexpr int kWords = sizeof(RowSummary) / sizeof(int);
    int words[kWords];
#pragma unroll
    for (int i = 0; i < kWords; ++i) words[i] = __ldcg(reinterpret_cast<const int *>(p) + i);
    RowSummary r;
    memcpy(&r, words, sizeof r);
    return r;
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
            const exact::ChunkPartial p = load_partial(parts + c);
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

/// What a split's block adds to its row's arrival counter: 1 (the low 16 bits count arrivals), plus kSkippedArrival when
/// it skipped the row. Splits number at most 65535 (set_row_splits' limit; plan_row_split's is 128), so neither field
/// carries into the other.
constexpr unsigned kSkippedArrival = 0x10000u;

/// The end of a split row's work item, read (`read`: its summary in `summary`) or skipped (the row is not read this step,
/// or the step failed before the item was planned: row_task): the block publishes its summary and arrives at the row's
/// counter; the block that arrives last, every split's chunk partials and summary being written, merges the summaries
/// and finishes the row, as a block finishes an unsplit row, when every split read it. Every item of a split row
/// arrives, read or not, so each counter is back at 0 when the row pass ends. Every thread of the block calls it.
template <typename T>
__device__ void finish_split_item(const DecodeState &s, const T *__restrict__ logits, const PlannedRow &planned, bool read,
                                  RowSummary &summary) {
    __shared__ bool finish;
    const size_t row = row_index(s, planned.sequence, planned.g);
    RowSummary *splits = static_cast<RowSummary *>(s.split_partials) + row * s.row_splits;
    if (read && threadIdx.x == 0) splits[planned.split] = summary;
    // The handshake of cooperative groups' grid sync: the barrier orders the block's writes of the item (its warps'
    // chunk partials, the summary) before thread 0's fence, which is cumulative, so they are visible GPU-wide before the
    // block is counted; the last block's thread 0 fences after the count, and the barrier orders its threads' reads after.
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();   // release
        const unsigned mine = read ? 1u : kSkippedArrival + 1u;
        const unsigned before = atomicAdd(s.split_arrivals + row, mine);
        const bool last = (before & (kSkippedArrival - 1u)) == static_cast<unsigned>(s.row_splits) - 1;
        if (last) s.split_arrivals[row] = 0;   // for the next step's row pass (a kernel boundary orders it)
        __threadfence();                        // acquire: what the other splits wrote before arriving
        finish = last && (before + mine) < kSkippedArrival;   // every split read the row
        if (finish) {
            RowSummary merged = load_summary(splits);
            for (int split = 1; split < s.row_splits; ++split) scan::merge(merged, load_summary(splits + split));
            summary = merged;
        }
    }
    __syncthreads();
    if (!finish) return;
    finish_row_in_block(s, planned.sequence, planned.g, planned.task, summary,
                        static_cast<const exact::ChunkPartial *>(s.chunk_partials) + row * s.row_chunks,
                        row_of(s, logits, planned.sequence, planned.task.position), *s.step + 1);
}

/// Fast path: the grid's blocks walk the work items (row, split) of the step's row plan, grid-stride: item w is split
/// w % splits of planned row w / splits. A block reads the chunks of its split of the row; with one split it finishes
/// the row, otherwise the last of the row's splits to finish does (finish_split_item). Every __syncthreads is reached by
/// the whole block: the loop bounds come from memory the row pass does not write (and the item from shared memory), and
/// whether a row is read, and whether this block finishes a split row, is thread 0's answer shared by a barrier.
template <typename T, bool kSampled, bool kEntropy, bool kRunnerUp>
__global__ void __launch_bounds__(kThreads, kSampled ? kFallbackResidentBlocksSampled : kFallbackResidentBlocksGreedy)
    row_confidence_kernel(DecodeState s, const T *__restrict__ logits) {
    __shared__ PlannedRow planned;
    __shared__ RowSummary summary;
    __shared__ int32_t floor_key;   // the block's floor for the item's prediction (scan_chunk)
    if (threadIdx.x == 0) planned.item = blockIdx.x;
    while (true) {
        __syncthreads();   // the previous item's reads of `planned`, `summary` and `floor_key` come first; the next item is visible
        if (threadIdx.x == 0) floor_key = scan::no_floor_key();   // visible after plan_row's barrier
        const long long w = planned.item;
        if (w >= s.row_offsets[s.batch] * s.row_splits) break;
        const long long r = w / s.row_splits;
        const bool active = plan_row(s, r, static_cast<int>(w - r * s.row_splits), planned);
        if (threadIdx.x == 0) planned.item = w + gridDim.x;   // every thread has read w (before plan_row's barrier)
        if (!active) {
            if (s.row_splits > 1) finish_split_item(s, logits, planned, false, summary);
            continue;
        }
        const T *row = row_of(s, logits, planned.sequence, planned.task.position);
        const ScanArgs a{s.vocabulary, s.mask_id, s.options.temperature, exact::mul(s.options.temperature, exact::kGumbelMax), s.options.seed,
                         *s.step + 1, planned.sequence, planned.task.position};
        exact::ChunkPartial *parts =
            static_cast<exact::ChunkPartial *>(s.chunk_partials) + row_index(s, planned.sequence, planned.g) * s.row_chunks;
        constexpr int kWidth = Vectors<T>::kWidth;
        const int rotation = scan::row_rotation(reinterpret_cast<uintptr_t>(row), sizeof(T));
        const int first = planned.split * s.row_split_chunks, last = min(s.row_chunks, first + s.row_split_chunks);

        // Each warp reads chunks c, c + 8, ... of the split; scan_chunk issues the next one's loads before it computes.
        RowSummary warp = scan::empty_summary();
        const scan::VectorChunks vector_chunks = scan::vector_chunks(s.vocabulary, kWidth, rotation);
        const int vector_limit = min(last, vector_chunks.end);   // a chunk c >= 8 (every next one) is read as vectors iff c < this
        const unsigned floor_address = static_cast<unsigned>(__cvta_generic_to_shared(&floor_key));
        uint4 ahead[Vectors<T>::kAhead];
        int c = first + static_cast<int>(threadIdx.x / 32);
        bool vectors = c < vector_limit && c >= vector_chunks.first;
        if (vectors) {
            const uint4 *slots = lane_slots(row, c, rotation);
#pragma unroll
            for (int k = 0; k < Vectors<T>::kAhead; ++k) ahead[k] = __ldg(slots + scan::kLanes * k);
        }
        for (; c < last; c += kWarps) {
            const bool next_vectors = c + kWarps < vector_limit;
            scan_chunk<T, kSampled, kEntropy, kRunnerUp>(row, c, rotation, vectors, next_vectors, ahead, a, warp, &floor_key, floor_address, parts + c);
            vectors = next_vectors;
        }

        reduce_block(warp, summary);   // also orders the chunk partials' writes before the reads below
        const int sequence = planned.sequence, g = planned.g;
        if (s.row_splits == 1) {
            finish_row_in_block(s, sequence, g, planned.task, summary,
                                static_cast<const exact::ChunkPartial *>(s.chunk_partials) + row_index(s, sequence, g) * s.row_chunks,
                                row_of(s, logits, sequence, planned.task.position), *s.step + 1);
        } else {
            finish_split_item(s, logits, planned, true, summary);
        }
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

/// Calls f(sampled, entropy, runner_up), each a std::bool_constant, for the fast row pass a step of these options runs:
/// Gumbel-max at T > 0; the entropy sums for the negentropy metric, the runner-up for the margin metric (the
/// low-confidence strategy's metric; never both, and neither for any other strategy). The launch and the occupancy query
/// both choose through it, so they name the same instantiation.
template <typename F>
decltype(auto) with_row_pass(const saber_decode_options &options, F &&f) {
    const bool low_confidence = options.strategy == SABER_STRATEGY_LOW_CONFIDENCE;
    const bool entropy = low_confidence && options.metric == SABER_METRIC_NEGENTROPY;
    const bool runner_up = low_confidence && options.metric == SABER_METRIC_MARGIN;
    const auto with_extras = [&](auto sampled) -> decltype(auto) {
        if (entropy) return f(sampled, std::true_type{}, std::false_type{});
        if (runner_up) return f(sampled, std::false_type{}, std::true_type{});
        return f(sampled, std::false_type{}, std::false_type{});
    };
    return options.temperature > 0.0f ? with_extras(std::true_type{}) : with_extras(std::false_type{});
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
    with_row_pass(state.options, [&](auto sampled, auto entropy, auto runner_up) {
        using S = decltype(sampled);
        using E = decltype(entropy);
        using R = decltype(runner_up);
        row_confidence_kernel<T, S::value, E::value, R::value><<<fast_grid(state), kThreads, 0, stream>>>(state, logits);
    });
    return cudaGetLastError();
}

template <typename T, bool kSampled, bool kEntropy, bool kRunnerUp>
int resident_blocks_of() {
    int blocks = 0;
    const cudaError_t error =
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, row_confidence_kernel<T, kSampled, kEntropy, kRunnerUp>, kThreads, 0);
    if (error == cudaSuccess && blocks > 0) return blocks;
    // The query failed (or found no room, which a launch would then report): consume its error so that the next launch
    // does not report it as pending, and fall back to the figure the register count gives.
    if (error != cudaSuccess) (void)cudaGetLastError();
    return kSampled ? kFallbackResidentBlocksSampled : kFallbackResidentBlocksGreedy;
}

/// resident_blocks_of for the instantiation a step of these options launches (with_row_pass).
template <typename T>
int resident_blocks_typed(const saber_decode_options &options) {
    return with_row_pass(options, [](auto sampled, auto entropy, auto runner_up) {
        return resident_blocks_of<T, decltype(sampled)::value, decltype(entropy)::value, decltype(runner_up)::value>();
    });
}

}  // namespace

int row_pass_resident_blocks(int32_t dtype, const saber_decode_options &options) {
    switch (dtype) {
        case SABER_DTYPE_FLOAT32: return resident_blocks_typed<float>(options);
        case SABER_DTYPE_FLOAT16: return resident_blocks_typed<__half>(options);
        default: return resident_blocks_typed<__nv_bfloat16>(options);
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
