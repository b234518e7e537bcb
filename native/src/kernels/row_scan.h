// The per-lane steps of the fast row pass (row_confidence.cu), as __host__ __device__ functions over one lane's 32 logits
// of a 1024-id chunk, so that the host tests can run the same steps for 32 emulated lanes and check them bit for bit
// against exact::row_reference without a GPU. The kernel adds the loads, the warp shuffles and the block's reductions.
//
// Lane l of a warp holds 32 ids of chunk j: element e = W k + j' (k = e / W, j' = e % W) is id
// j 1024 + 32 W k + W l + j', where W = 16 / sizeof(logit) is the ids per 16-byte vector (4 for float, 8 for the 16-bit
// types). A lane's ids ascend in e, and a warp reads its chunks in ascending order, so a lane sees its ids in ascending
// order over its whole life: exactly row_reference's scan restricted to those ids.
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

/// Id of a lane's element e in the chunk starting at `begin`, for vectors of `width` ids.
SABER_EXACT_FN int lane_id(int begin, int width, int lane, int e) { return begin + kLanes * width * (e / width) + width * lane + e % width; }

/// A lane's, warp's, block's or split's view of a row, besides its chunk partials.
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

/// False when one of the lane's logits is bad (NaN or +inf: not below +inf).
SABER_EXACT_FN bool all_good(const float (&x)[kPerLane]) {
    bool good = true;
    SABER_UNROLL
    for (int e = 0; e < kPerLane; ++e) good &= x[e] < INFINITY;
    return good;
}

/// The lane's lowest id of a bad logit, or kNoBad.
SABER_EXACT_FN int first_bad_id(const float (&x)[kPerLane], int begin, int width, int lane) {
    SABER_UNROLL
    for (int e = 0; e < kPerLane; ++e)
        if (exact::is_bad(x[e])) return lane_id(begin, width, lane, e);
    return kNoBad;
}

/// The maximum of the lane's logits (fmaxf may return either zero of +0 and -0).
SABER_EXACT_FN float lane_max(const float (&x)[kPerLane]) {
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
SABER_EXACT_FN float lane_max_or_bad(const float (&x)[kPerLane]) {
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

/// The lane's share of the chunk partial of maximum m: exact::add_term over its finite logits (the chunk's is the
/// integer sum over its lanes, in any order). A -inf logit needs no test: its terms are 0 (exact::fixed_exp(-inf) and
/// exact::fixed_exp_entropy(-inf)), so adding them changes nothing and the loop has no branch; fixed_exp and
/// fixed_exp_entropy are add_term's terms bit for bit with fewer operations. Each sum term is at most 2^42 (e <= 1) and
/// each entropy term below 2^41 (e (-d) <= 1/e), so a lane's 32 terms sum to less than 2^48 (the kernel's warp sums
/// rely on it).
template <bool kEntropy>
SABER_EXACT_FN exact::ChunkPartial lane_terms(const float (&x)[kPerLane], float m) {
    exact::ChunkPartial p{m, 0, 0};
    if (m == -INFINITY) return p;
    if (kEntropy) {
        // exact::fixed_exp_entropy: add_term's two terms bit for bit, and nothing for a -inf logit (no branch).
        SABER_UNROLL
        for (int e = 0; e < kPerLane; ++e) {
            const exact::FixedTerms t = exact::fixed_exp_entropy(exact::add(x[e], -m));
            p.sum += t.sum;
            p.entropy += t.entropy;
        }
    } else {
        // Terms added in pairs: the device adds two 64-bit terms to the sum with one 3-input add and its carry.
        SABER_UNROLL
        for (int e = 0; e < kPerLane; e += 2) p.sum += exact::fixed_exp(exact::add(x[e], -m)) + exact::fixed_exp(exact::add(x[e + 1], -m));
    }
    return p;
}

/// T = 0: offers the lane's ids in ascending order. An id changes the lane's top two exactly when its score beats the
/// runner-up's (-inf when none; ties keep the earlier, lower id), so only those reach exact::offer; when the lane's
/// maximum (lane_max(x)) does not beat it, none does.
SABER_EXACT_FN void offer_greedy(RowSummary &lane, const float (&x)[kPerLane], float x_max, int begin, int width, int l, int mask) {
    if (!(x_max > lane.top.second_score)) return;
    SABER_UNROLL
    for (int e = 0; e < kPerLane; ++e)
        if (x[e] > lane.top.second_score) {
            const int v = lane_id(begin, width, l, e);
            if (v != mask) exact::offer(lane.top, x[e], v);
        }
}

/// T > 0: the same with scores l + T g. Four consecutive ids (e, e + 3 with e % 4 == 0) share a Philox counter. Since
/// score <= add(l, score_bound), an id whose bound cannot beat the runner-up skips its draw: it could not change the
/// lane's top two. NaN scores are flagged (the row's prediction is then rescanned in id order). x_max is lane_max(x).
SABER_EXACT_FN void offer_sampled(RowSummary &lane, const float (&x)[kPerLane], float x_max, int begin, int width, int l, const ScanArgs &a) {
    if (exact::add(x_max, a.score_bound) <= lane.top.second_score) return;
    SABER_UNROLL
    for (int e0 = 0; e0 < kPerLane; e0 += 4) {
        const float group_max = fmaxf(fmaxf(x[e0], x[e0 + 1]), fmaxf(x[e0 + 2], x[e0 + 3]));
        if (exact::add(group_max, a.score_bound) <= lane.top.second_score) continue;
        const PhiloxWords w = random_words(a.seed, a.step, a.sequence, a.position, lane_id(begin, width, l, e0));
        const uint32_t words[4] = {w.x0, w.x1, w.x2, w.x3};
        SABER_UNROLL
        for (int j = 0; j < 4; ++j) {
            const float logit = x[e0 + j];
            if (exact::add(logit, a.score_bound) <= lane.top.second_score) continue;
            const float s = exact::score(logit, a.temperature, words[j]);
            lane.nan_score |= s != s;
            if (s > lane.top.second_score) {
                const int v = lane_id(begin, width, l, e0 + j);
                if (v != a.mask) exact::offer(lane.top, s, v);
            }
        }
    }
}

}  // namespace scan
}  // namespace saber
