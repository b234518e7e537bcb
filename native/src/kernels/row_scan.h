// The per-lane and per-warp steps of the fast row pass (row_confidence.cu), as __host__ __device__ functions over one
// lane's 32 logits of a 1024-id chunk, so that the host tests can run the same steps for 32 emulated lanes (and the
// warp's reductions as loops over them) and check them bit for bit against exact::row_reference without a GPU. The
// kernel adds the loads, the warp reductions and the block's reductions.
//
// The layout (ChunkLayout): lane l of a warp holds 32 ids of chunk j, 16 bytes (W = 16 / sizeof(logit) ids: 4 for float,
// 8 for the 16-bit types) per vector. The chunk's ids sit on the 16-byte grid of the row's memory: a row whose start lies
// `rotation` ids past a 16-byte boundary (0 <= rotation < W) has grid position i of chunk j at id
// j 1024 + ((i - rotation) mod 1024), and lane l's element e is at grid position 32 W k + W l + j' (k = e / W, j' = e % W),
// so lane l's vector k is one aligned 16-byte slot. With a rotation, lane 0's first vector holds, below the rotation, the
// chunk's last ids (the slot past the chunk's grid) instead of the previous chunk's: every chunk keeps its own 1024 ids,
// whatever the row's alignment. The chunk sums are integer sums and the maximum a maximum, so the layout changes none of
// their bits; the prediction's ranking breaks ties by id wherever ids may come out of order.
//
// The prediction (argmax and runner-up) is the WARP's: every lane holds the same exact::TopTwo of the ids of the chunks
// the warp has read, which all lie below the ids of the chunk it reads next (a warp reads its chunks in ascending order).
// A chunk can change it only if its maximum beats the floor (candidate_floor_key): the warp's runner-up, or the block's floor
// (a float below which a score is beaten by two candidates some warp of the block holds). Only then (a warp-uniform test)
// does the warp rank the chunk: each lane its best two candidates (lane_top_greedy / lane_top_sampled), then two rounds
// of a warp maximum of their score keys and a warp minimum of the ids holding it give the chunk's best two, which the
// warp merges into its top two (merge_chunk_best).
//
// Only the margin metric reads the runner-up (exact::finish_row). Without it (`runner_up` false: every other strategy
// and metric) the floors are the warp's best and the block's best instead, which fewer chunks beat; the top two's
// second is then no runner-up and is never read. A greedy chunk that beats such a floor and does not hold the mask id
// has its maximum as its best score, at the lowest id holding it (lane_best_greedy and one warp minimum): no ranking.
#pragma once

#include <limits.h>

#include "exact_math.h"
#include "philox.h"

// Loops over a lane's logits must unroll on the device, so that the 32 logits stay in registers.
#if defined(__CUDA_ARCH__)
#define SABER_UNROLL _Pragma("unroll")
#else
#define SABER_UNROLL
#endif

namespace saber {
namespace scan {

constexpr int kLanes = 32;
constexpr int kPerLane = exact::kChunk / kLanes;   // 32 ids per lane and chunk
constexpr int kNoBad = INT_MAX;

// ---- the layout ----

/// How a warp reads one chunk of a row.
struct ChunkLayout {
    int begin, end;   // the chunk's ids: [begin, end), end = min(begin + 1024, V)
    int rotation;     // ids the row's start lies past a 16-byte boundary: 0 <= rotation < W
    bool vectors;     // every 16-byte slot the lanes read lies inside the row: aligned 16-byte loads, else id by id
};

/// The rotation of a row of `logit_bytes`-byte logits starting at byte address `address` (a multiple of logit_bytes).
SABER_EXACT_FN int row_rotation(unsigned long long address, int logit_bytes) { return static_cast<int>(address % 16u) / logit_bytes; }

/// Chunk `chunk` of a row of `vocabulary` ids, `width` ids per 16-byte vector. Its grid spans the slots from id
/// begin - rotation up to begin - rotation + 1024, plus, with a rotation, the slot at begin - rotation + 1024 that holds the
/// chunk's last `rotation` ids; the chunk is read as vectors when all of them lie inside the row (the loads never touch a
/// byte outside it), which holds for every chunk but the first (with a rotation) and the last ones.
SABER_EXACT_FN ChunkLayout chunk_layout(int chunk, int vocabulary, int width, int rotation) {
    const int begin = chunk * exact::kChunk;
    const int end = vocabulary - begin < exact::kChunk ? vocabulary : begin + exact::kChunk;
    const int first = begin - rotation, past = begin - rotation + exact::kChunk + (rotation != 0 ? width : 0);
    return ChunkLayout{begin, end, rotation, first >= 0 && past <= vocabulary};
}

/// The chunks of a row that chunk_layout reads as vectors: [first, end) (first: 1 with a rotation, else 0).
struct VectorChunks {
    int first, end;
    SABER_EXACT_FN bool holds(int chunk) const { return chunk >= first && chunk < end; }
};

SABER_EXACT_FN VectorChunks vector_chunks(int vocabulary, int width, int rotation) {
    // chunk_layout's conditions: 1024 chunk >= rotation, and 1024 (chunk + 1) + (width - rotation, with a rotation) <= V.
    return VectorChunks{rotation != 0 ? 1 : 0, (vocabulary - (rotation != 0 ? width - rotation : 0)) / exact::kChunk};
}

/// The grid position of lane `lane`'s element e (ids per vector `width`).
SABER_EXACT_FN int grid_position(int width, int lane, int e) { return kLanes * width * (e / width) + width * lane + e % width; }

/// The id of lane `lane`'s element e: in [c.begin, c.begin + 1024). A lane's ids ascend in e except lane 0's first
/// `rotation` elements, which hold the chunk's last ids.
SABER_EXACT_FN int lane_id(const ChunkLayout &c, int width, int lane, int e) {
    const int i = grid_position(width, lane, e) - c.rotation;
    return c.begin + (i < 0 ? i + exact::kChunk : i);
}

/// The row offset (in ids) of lane `lane`'s vector k: a 16-byte aligned slot.
SABER_EXACT_FN int vector_offset(const ChunkLayout &c, int width, int lane, int k) {
    return c.begin - c.rotation + kLanes * width * k + width * lane;
}

/// The row offset (in ids) of the slot past the chunk's grid, whose first `rotation` ids are the chunk's last ones (lane 0
/// reads it when the rotation is not 0).
SABER_EXACT_FN int tail_offset(const ChunkLayout &c) { return c.begin - c.rotation + exact::kChunk; }

/// Whether chunk c holds id v.
SABER_EXACT_FN bool chunk_holds(const ChunkLayout &c, int v) { return v >= c.begin && v < c.begin + exact::kChunk; }

/// Word `word` (0-3, in memory order) of lane 0's first vector with a rotation: its first `tail_bytes` bytes (rotation x
/// the logit's size) from the tail slot's word, the others from the head slot's (head: the slot at vector_offset(c, W, 0, 0)).
SABER_EXACT_FN uint32_t rotated_word(uint32_t head, uint32_t tail, int tail_bytes, int word) {
    const int bytes = tail_bytes - 4 * word;   // bytes of this word taken from the tail
    const uint32_t take = bytes <= 0 ? 0u : bytes >= 4 ? 0xFFFFFFFFu : (1u << (8 * bytes)) - 1u;
    return (tail & take) | (head & ~take);
}

// ---- what a lane, warp, block or split reports of a row besides its chunk partials ----

struct RowSummary {
    exact::TopTwo top;
    int bad;        // lowest id of a NaN / +inf logit, kNoBad when none
    float max;      // maximum of the chunk maxima seen
    int nan_score;  // a score was NaN (l = -inf against T g = +inf at an enormous T): the prediction is rescanned in id order
};

SABER_EXACT_FN RowSummary empty_summary() { return RowSummary{exact::no_candidates(), kNoBad, -INFINITY, 0}; }

/// Merges the summary of another, disjoint, set of ids (any order: each field's merge is a total order or a max).
SABER_EXACT_FN void merge(RowSummary &a, const RowSummary &b) {
    exact::merge(a.top, b.top);
    if (b.bad < a.bad) a.bad = b.bad;
    if (b.max > a.max) a.max = b.max;
    a.nan_score |= b.nan_score;
}

/// What the prediction offers need besides the logits.
struct ScanArgs {
    int vocabulary, mask;
    float temperature;
    float score_bound;   // mul(T, kGumbelMax): exact::score(l, T, bits) <= add(l, score_bound)
    uint64_t seed;
    int step, sequence, position;
};

// ---- bad logits, the maximum and the sums ----
//
// A lane's logits of a chunk: x[e] for e < 32, in the layout's order (a float array on the host; on the device the
// lane's 16-byte vectors, widened where a logit is used).

/// False when one of the lane's logits is bad (NaN or +inf: not below +inf).
template <typename Logits>
SABER_EXACT_FN bool all_good(const Logits &x) {
    bool good = true;
    SABER_UNROLL
    for (int e = 0; e < kPerLane; ++e) good &= x[e] < INFINITY;
    return good;
}

/// The lane's lowest id of a bad logit, or kNoBad (the lowest over all its elements: lane 0's ids may be rotated).
template <typename Logits>
SABER_EXACT_FN int lowest_bad_id(const Logits &x, const ChunkLayout &c, int width, int lane) {
    int bad = kNoBad;
    SABER_UNROLL
    for (int e = 0; e < kPerLane; ++e) {
        const int v = lane_id(c, width, lane, e);
        if (exact::is_bad(x[e]) && v < bad) bad = v;
    }
    return bad;
}

/// The maximum of the lane's logits (fmaxf may return either zero of +0 and -0).
template <typename Logits>
SABER_EXACT_FN float lane_max(const Logits &x) {
    float m = x[0];
    SABER_UNROLL
    for (int e = 1; e < kPerLane; ++e) m = fmaxf(m, x[e]);
    return m;
}

/// The larger of a and b, or NaN when either is NaN (PTX max.NaN.f32, sm_80 and later).
SABER_EXACT_FN float max_or_nan(float a, float b) {
#if defined(__CUDA_ARCH__)
    float m;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
    return m;
#else
    return a != a || b != b ? NAN : fmaxf(a, b);
#endif
}

/// lane_max(x) when the lane's logits are good; NaN or +inf when one is bad (NaN or +inf). So one test of the result,
/// good_max, tells all_good(x): the kernel's hot loop needs no test per logit.
template <typename Logits>
SABER_EXACT_FN float lane_max_or_bad(const Logits &x) {
    float m = x[0];
    SABER_UNROLL
    for (int e = 1; e < kPerLane; ++e) m = max_or_nan(m, x[e]);
    return m;
}

/// all_good(x) from m = lane_max_or_bad(x): neither NaN nor +inf.
SABER_EXACT_FN bool good_max(float m) { return m < INFINITY; }

/// An int whose order is the float order of x (not NaN), -0 just below +0: the key of an integer warp maximum. The map is
/// its own inverse (float_of_order_key undoes it).
SABER_EXACT_FN int32_t order_key(float x) {
    const int32_t i = static_cast<int32_t>(exact::bits(x));
    return i ^ ((i >> 31) & 0x7FFFFFFF);
}

SABER_EXACT_FN float float_of_order_key(int32_t key) { return exact::from_bits(static_cast<uint32_t>(key ^ ((key >> 31) & 0x7FFFFFFF))); }

/// The chunk's maximum from its lanes' maxima: -0 becomes +0 so that every lane holds the same bits. The sign of a zero
/// maximum changes no bit of any result (l - m, exp_nonpositive, the fixed terms and chunk_terms agree for both).
SABER_EXACT_FN float canonical_max(float m) { return exact::add(m, 0.0f); }

/// The lane's share of the chunk partial of maximum m (the chunk's is the integer sum over its lanes, in any order): the
/// classes of exact::chunk_partial_of that the lane holds. A lane's element e = k W + j (vector k, slot position j) sits at
/// grid position 32 W k + W l + j, so the four elements of vectors q, q + Q, q + 2Q and q + 3Q (Q = kVectors / 4, 32 W Q
/// = 256 grid positions apart) at position j are one class, {v, v + 256, v + 512, v + 768} modulo the chunk's 1024
/// ids; with a rotation the lane's first vector holds the class's last id (v + 768) first, and class_sum_truncated's
/// pairs (ids 512 apart: vectors s and s + 2Q) are the same pairs. Its terms are exact::scaled_terms_fast: a -inf logit
/// (and an id past the row, which reads as -inf) needs no test, its tiny terms change no class's integer, so the loop has
/// no branch. Each class adds up to at most 2^44 and a lane holds 8 classes, so a lane's sums are below 2^48 (the
/// kernel's warp sums rely on it).
template <bool kEntropy, int kWidth, typename Logits>
SABER_EXACT_FN exact::ChunkPartial lane_terms(const Logits &x, float m) {
    constexpr int kVectors = kPerLane / kWidth;   // 4 of 16-bit logits, 8 of float
    constexpr int kQ = kVectors / 4;              // vectors between a class's ids (256 ids apart)
    exact::ChunkPartial p{m, 0, 0};
    if (m == -INFINITY) return p;
    SABER_UNROLL
    for (int q = 0; q < kQ; ++q) {
        SABER_UNROLL
        for (int j = 0; j < kWidth; ++j) {
            exact::ScaledTerms t[4];
            SABER_UNROLL
            for (int s = 0; s < 4; ++s) t[s] = exact::scaled_terms_fast(exact::add(x[(q + kQ * s) * kWidth + j], -m));
            p.sum += exact::class_sum_truncated(t[0].sum, t[1].sum, t[2].sum, t[3].sum);
            if (kEntropy) p.entropy += exact::class_sum_truncated(t[0].entropy, t[1].entropy, t[2].entropy, t[3].entropy);
        }
    }
    return p;
}

// ---- the prediction: the warp's top two ----

/// The floor of the block (shared by its warps): the order key of a float F such that a score at or below F is beaten by
/// two candidates of the block's ids (some warp's best and runner-up), so it cannot be the split's best or runner-up. It
/// only rises during a work item; a stale (lower) value is a valid floor too.
SABER_EXACT_FN int32_t no_floor_key() { return order_key(-INFINITY); }

/// The floor key a warp publishes for its runner-up score s (a candidate's: not NaN, not -inf): the largest float below s,
/// the two zeros alike (a score equal to s might rank above it by its id, and so must stay above the floor).
SABER_EXACT_FN int32_t floor_key_below(float s) {
    const int32_t key = order_key(exact::add(s, 0.0f));   // +0 for either zero
    return key == 0 ? order_key(-0x1p-149f) : key - 1;
}

/// The warp's own floor: its runner-up's score, or its best's without runner_up (-inf while there is none).
SABER_EXACT_FN float warp_floor(const exact::TopTwo &warp, bool runner_up) { return runner_up ? warp.second_score : warp.best_score; }

/// The floor key the warp publishes to its block (atomic maximum): floor_key_below(warp_floor), or no_floor_key() while
/// the warp has no such candidate.
SABER_EXACT_FN int32_t published_floor_key(const exact::TopTwo &warp, bool runner_up) {
    return (runner_up ? warp.second : warp.best) >= 0 ? floor_key_below(warp_floor(warp, runner_up)) : no_floor_key();
}

/// The floor a chunk's candidates must beat (strictly), as an order key: the warp's floor (warp_floor; the chunk's ids
/// are above the warp's: a tie loses; -inf while there is none, and -inf scores never count) or the block's floor,
/// whichever is higher. The warp's scores come from candidate keys, so they are never -0: the key order is the float
/// order here.
SABER_EXACT_FN int32_t candidate_floor_key(const exact::TopTwo &warp, int32_t block_floor_key, bool runner_up) {
    const int32_t own = order_key(warp_floor(warp, runner_up));
    return own > block_floor_key ? own : block_floor_key;
}

/// T = 0: whether the chunk can hold a candidate, from the warp maximum of its lanes' order_key(lane maximum) (over every
/// id, the mask's too): nothing at or below the floor (candidate_floor_key: the warp's runner-up and the block's floor)
/// can change the warp's top two. The same as the float test m > float_of_order_key(floor): no floor key is -0's (-1),
/// so -0 and +0 compare alike. Two compares, no maximum (one instruction fewer per chunk).
SABER_EXACT_FN bool chunk_may_rank_greedy(int32_t max_key, const exact::TopTwo &warp, int32_t block_floor_key, bool runner_up) {
    return max_key > order_key(warp_floor(warp, runner_up)) && max_key > block_floor_key;
}

/// T > 0: the same for scores, each at most add(l, score_bound) (m: the chunk's maximum): the chunk is skipped when that
/// bound is at or below the warp's runner-up or the block's floor. A NaN bound (l = -inf against an infinite bound: NaN
/// scores) never skips the chunk, so that its NaN scores are seen; nor does an infinite bound against the block's floor,
/// which is never +inf: a chunk is skipped where it could hold a NaN score only below the warp's own runner-up, whose ids
/// are all lower (so the definition's id-order scan has its best and runner-up when it reaches them, and ignores them).
/// Two compares, no maximum.
SABER_EXACT_FN bool chunk_may_rank_sampled(float m, const exact::TopTwo &warp, int32_t block_floor_key, float score_bound,
                                           bool runner_up) {
    const float bound = exact::add(m, score_bound);
    return !(bound <= warp_floor(warp, runner_up)) && !(bound <= float_of_order_key(block_floor_key));
}

/// A lane's best two candidates of one chunk, ranked as exact::TopTwo (the higher score, then the lower id); id -1 and the
/// floor's score while there is none (the floor is beaten only by a higher score).
struct LaneTop {
    float score1, score2;
    int id1, id2;
};

SABER_EXACT_FN LaneTop lane_floor(float floor) { return LaneTop{floor, floor, -1, -1}; }

/// Offers (s, v) to t, v in any order relative to the ids offered before (ties go to the lower id). Branch free: the
/// tests combine with | and &, which (unlike || and &&) nvcc does not compile to branches.
SABER_EXACT_FN void lane_offer(LaneTop &t, float s, int v) {
    const bool first = (s > t.score1) | ((s == t.score1) & (v < t.id1));
    const bool second = (s > t.score2) | ((s == t.score2) & (v < t.id2));
    t.score2 = first ? t.score1 : second ? s : t.score2;
    t.id2 = first ? t.id1 : second ? v : t.id2;
    t.score1 = first ? s : t.score1;
    t.id1 = first ? v : t.id1;
}

/// Offers (s, v) to t, v above every id offered before (a tie keeps the earlier, lower id). Branch free.
SABER_EXACT_FN void lane_offer_ascending(LaneTop &t, float s, int v) {
    const bool first = s > t.score1;
    const bool second = s > t.score2;
    t.score2 = first ? t.score1 : second ? s : t.score2;
    t.id2 = first ? t.id1 : second ? v : t.id2;
    t.score1 = first ? s : t.score1;
    t.id1 = first ? v : t.id1;
}

/// The element of lane `lane` that holds id v (lane_id's inverse), or -1 when the lane holds no such id.
SABER_EXACT_FN int element_of(const ChunkLayout &c, int width, int lane, int v) {
    if (!chunk_holds(c, v)) return -1;
    const int i = (v - c.begin + c.rotation) % exact::kChunk;   // its grid position
    if (i / width % kLanes != lane) return -1;
    return i / (kLanes * width) * width + i % width;
}

/// lane_top_greedy's loop; kMasked: the chunk holds the mask id (at the lane's element mask_element, -1 if another lane's).
template <bool kMasked, typename Logits>
SABER_EXACT_FN LaneTop lane_top_greedy_of(const Logits &x, const ChunkLayout &c, int width, int lane, int mask_element, float floor) {
    const int wrapped = lane == 0 ? c.rotation : 0;   // elements below this hold the chunk's last ids
    LaneTop t = lane_floor(floor);                    // id1, id2: order keys until the end
    SABER_UNROLL
    for (int e = width; e < kPerLane; ++e) lane_offer_ascending(t, kMasked && e == mask_element ? -INFINITY : x[e], e);
    SABER_UNROLL
    for (int e = 0; e < width; ++e) lane_offer(t, kMasked && e == mask_element ? -INFINITY : x[e], e < wrapped ? e + kPerLane : e);
    t.id1 = t.id1 < 0 ? -1 : lane_id(c, width, lane, t.id1 % kPerLane);
    t.id2 = t.id2 < 0 ? -1 : lane_id(c, width, lane, t.id2 % kPerLane);
    return t;
}

/// T = 0: the lane's best two logits above `floor`, without the mask id (its logit counts as -inf, which never beats a
/// floor; only in the chunk that holds it, a warp-uniform choice). The loop ranks elements, not ids: elements e >= W,
/// whose ids ascend in e, first (a tie keeps the earlier), then the first vector's by an order key that ranks as their
/// ids do (e, or e + 32 for lane 0's first `rotation` elements: the chunk's last ids), with the tie-break; the ids come
/// from the two winners at the end. So the loop needs no id per element (the element is a constant once unrolled).
template <typename Logits>
SABER_EXACT_FN LaneTop lane_top_greedy(const Logits &x, const ChunkLayout &c, int width, int lane, int mask, float floor) {
    if (chunk_holds(c, mask))
        return lane_top_greedy_of<true>(x, c, width, lane, element_of(c, width, lane, mask), floor);
    return lane_top_greedy_of<false>(x, c, width, lane, -1, floor);
}

/// T = 0 without a runner-up, for a chunk that does not hold the mask id and whose maximum m (finite) beats the floor:
/// the lane's lowest id holding m, or INT_MAX (the warp minimum is the chunk's best id, m its score). Elements are
/// compared, not ids: e >= W descending, then the first vector's unwrapped elements descending (the lowest element
/// holding m wins: the lowest id, as lane_top_greedy_of's order), and lane 0's wrapped elements (the chunk's last ids)
/// only when no other element holds m. Two instructions per element, no branch.
template <typename Logits>
SABER_EXACT_FN int lane_best_greedy(const Logits &x, const ChunkLayout &c, int width, int lane, float m) {
    const int wrapped = lane == 0 ? c.rotation : 0;
    int best = -1, best_wrapped = -1;
    SABER_UNROLL
    for (int e = kPerLane - 1; e >= width; --e) best = x[e] == m ? e : best;
    SABER_UNROLL
    for (int e = width - 1; e >= 0; --e) {
        const bool hit = x[e] == m;
        best = hit & (e >= wrapped) ? e : best;
        best_wrapped = hit & (e < wrapped) ? e : best_wrapped;
    }
    best = best >= 0 ? best : best_wrapped;
    return best >= 0 ? lane_id(c, width, lane, best) : INT_MAX;
}

/// Draw `word` (v % 4) of a Philox output.
SABER_EXACT_FN uint32_t philox_word(const PhiloxWords &w, int word) { return word == 0 ? w.x0 : word == 1 ? w.x1 : word == 2 ? w.x2 : w.x3; }

/// T > 0: the lane's best two scores l + T g above `floor`, without the mask id. Since score <= add(l, score_bound), a
/// logit whose bound is at or below the floor, or below the lane's runner-up so far, cannot be a candidate and skips its
/// draw (also four at a time). A NaN bound (l = -inf at an infinite bound) never skips: its NaN score sets nan_score (the
/// row's prediction is then rescanned in id order). Draws of ids sharing a Philox counter (v / 4) share its output.
template <typename Logits>
SABER_EXACT_FN LaneTop lane_top_sampled(const Logits &x, const ChunkLayout &c, int width, int lane, const ScanArgs &a, float floor,
                                        int &nan_score) {
    LaneTop t = lane_floor(floor);
    uint32_t counter = 0xFFFFFFFFu;   // the Philox counter `words` holds (none: ids are below 2^31)
    PhiloxWords words{0, 0, 0, 0};
    SABER_UNROLL
    for (int e0 = 0; e0 < kPerLane; e0 += 4) {
        const float group_max = fmaxf(fmaxf(x[e0], x[e0 + 1]), fmaxf(x[e0 + 2], x[e0 + 3]));
        if (exact::add(group_max, a.score_bound) <= floor) continue;
        SABER_UNROLL
        for (int j = 0; j < 4; ++j) {
            const float bound = exact::add(x[e0 + j], a.score_bound);
            if (bound <= floor || bound < t.score2) continue;
            const int v = lane_id(c, width, lane, e0 + j);
            if (v == a.mask) continue;
            if (static_cast<uint32_t>(v) >> 2 != counter) {
                counter = static_cast<uint32_t>(v) >> 2;
                words = random_words(a.seed, a.step, a.sequence, a.position, v);
            }
            const float s = exact::score(x[e0 + j], a.temperature, philox_word(words, v & 3));
            nan_score |= s != s;
            lane_offer(t, s, v);
        }
    }
    return t;
}

/// The key of no candidate: below every score's.
constexpr int32_t kNoKey = INT_MIN;

/// A candidate's key for the warp maximum: the order key of its score, the two zeros alike (equal scores, equal keys),
/// or kNoKey when id is -1.
SABER_EXACT_FN int32_t candidate_key(float score, int id) { return id >= 0 ? order_key(exact::add(score, 0.0f)) : kNoKey; }

/// The candidate's id when its key is the warp's maximum `key`, else INT_MAX: the warp minimum of these is the lowest id
/// of the best score.
SABER_EXACT_FN int candidate_id(float score, int id, int32_t key) { return id >= 0 && candidate_key(score, id) == key ? id : INT_MAX; }

/// The lane's candidate in the second round, after `winner` won the first: its runner-up if it held the winner, else its
/// best. Their maximum is the chunk's runner-up.
SABER_EXACT_FN void second_round(const LaneTop &t, int winner, float &score, int &id) {
    const bool won = t.id1 == winner;
    score = won ? t.score2 : t.score1;
    id = won ? t.id2 : t.id1;
}

/// The warp's top two merged with the chunk's best two: keys (kNoKey: none) and ids of the two rounds. Every lane computes
/// the same, from the same reductions.
SABER_EXACT_FN void merge_chunk_best(exact::TopTwo &warp, int32_t key1, int id1, int32_t key2, int id2) {
    if (key1 != kNoKey) exact::offer(warp, float_of_order_key(key1), id1);
    if (key2 != kNoKey) exact::offer(warp, float_of_order_key(key2), id2);
}

}  // namespace scan
}  // namespace saber
