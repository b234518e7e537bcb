// Exact step arithmetic: exp, log, the Gumbel transform and the fixed-point softmax term, each written as a fixed
// sequence of IEEE-754 binary32 operations rounded to nearest (multiplies, adds, one division, explicit fused
// multiply-adds, rounding to an integer by adding 1.5 2^23, and exact power-of-two scaling). Any IEEE-754 machine that runs the sequence as written gets the
// same bits: the host compiler here (built with -ffp-contract=off), the device (the __f*_rn intrinsics, which nvcc never
// contracts or flushes), and the C# mirror (src/Saber/ExactMath.cs, MathF.FusedMultiplyAdd). The two sides must change
// together; the binding tests compare them bit for bit through saber_exact_eval. docs/arithmetic.md states the
// definitions and their error bounds.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "philox.h"

#if defined(__CUDACC__)
#define SABER_EXACT_FN __host__ __device__ __forceinline__
#else
#define SABER_EXACT_FN inline
#endif

namespace saber {
namespace exact {

// ---- the operations, one rounding each ----

SABER_EXACT_FN float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

SABER_EXACT_FN float add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

SABER_EXACT_FN float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return ::fmaf(a, b, c);
#endif
}

SABER_EXACT_FN float div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

SABER_EXACT_FN double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

SABER_EXACT_FN double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

SABER_EXACT_FN double ddiv(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}

SABER_EXACT_FN uint32_t bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

SABER_EXACT_FN float from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

/// 2^k for k in [-126, 127], exact.
SABER_EXACT_FN float pow2(int k) { return from_bits(static_cast<uint32_t>(k + 127) << 23); }

// ---- exp ----

/// Below this, exp_nonpositive returns 0: e^-86 is 4.5e-38, so every non-zero result is a normal float and no flush
/// to zero (or its absence) can change a bit.
constexpr float kExpCutoff = -86.0f;
constexpr float kLog2e = 1.44269502f;              // 0x3FB8AA3B, log2 e rounded to float (1.9e-8 below it)
constexpr float kRoundMagic = 12582912.0f;         // 0x4B400000, 1.5 2^23: adding it rounds a value of [-2^22, 2^22] to an integer
constexpr float kLn2Hi = 0.693145751953125f;       // 0x3F317200: 16 significant bits, so k * kLn2Hi is exact (log)
constexpr float kLn2Lo = 1.42860677e-06f;          // 0x35BFBE8E: ln 2 - kLn2Hi

/// The minimax polynomial of degree 6 for 2^f on [-1/2, 1/2] (relative error 2.6e-9 before rounding to float), its
/// constant term exactly 1 so that 2^0 = 1; kExp2Cj multiplies f^j.
constexpr float kExp2C1 = 6.931472421e-01f;        // 0x3F317219
constexpr float kExp2C2 = 2.402265221e-01f;        // 0x3E75FDF1
constexpr float kExp2C3 = 5.550310388e-02f;        // 0x3D635739
constexpr float kExp2C4 = 9.617692791e-03f;        // 0x3C1D9387
constexpr float kExp2C5 = 1.340664341e-03f;        // 0x3AAFB93B
constexpr float kExp2C6 = 1.559467782e-04f;        // 0x392385A5

/// The base-2 reduction of x <= 0 (x >= -87): x log2 e = k + f with k an integer and f in [-1/2, 1/2]. t = fma(x, log2e,
/// 1.5 2^23) rounds the exact product plus 1.5 2^23 once: its ulp is 1, so t = 1.5 2^23 + k with k the integer nearest
/// x log2e (ties to even, 1.5 2^23 being even), and bits(t) = 0x4B400000 + k. k = t - 1.5 2^23 and f = fma(x, log2e, -k)
/// (the exact product minus an integer, rounded once) follow. One fma gives k, one gives f: no two-part constant. The
/// price is log2e's rounding, a relative error of 1.34e-8 |x| in e^x (docs/arithmetic.md), below the 6e-8 |d| that
/// rounding d = l - m already costs a softmax term.
struct Exp2Reduction {
    float t;  // 1.5 2^23 + k
    float k;
    float f;
};

SABER_EXACT_FN Exp2Reduction reduce_exp2(float x) {
    const float t = fma(x, kLog2e, kRoundMagic);
    const float k = add(t, -kRoundMagic);
    return Exp2Reduction{t, k, fma(x, kLog2e, -k)};
}

/// 2^f times `scale` for f in [-1/2, 1/2], by Horner with fma: every coefficient times `scale`, a power of two (1 or
/// 2^42), which scales every step's rounded result exactly (no value comes near the subnormals or overflow).
SABER_EXACT_FN float exp2_poly(float f, float scale) {
    float p = mul(kExp2C6, scale);
    p = fma(p, f, mul(kExp2C5, scale));
    p = fma(p, f, mul(kExp2C4, scale));
    p = fma(p, f, mul(kExp2C3, scale));
    p = fma(p, f, mul(kExp2C2, scale));
    p = fma(p, f, mul(kExp2C1, scale));
    return fma(p, f, scale);
}

/// e^x for x <= 0 (and -inf), the softmax term of a max-subtracted logit: x log2 e = k + f (reduce_exp2), 2^f by the
/// degree-6 polynomial (p in [0.707, 1.415]), times 2^k exactly (k in [-124, 0]: the result is normal). e^0 is exactly 1.
/// Not defined for x > 0 or NaN.
SABER_EXACT_FN float exp_nonpositive(float x) {
    if (!(x >= kExpCutoff)) return 0.0f;
    const Exp2Reduction r = reduce_exp2(x);
    return mul(exp2_poly(r.f, 1.0f), pow2(static_cast<int>(r.k)));
}

// ---- log ----

/// ln x for a positive normal float x (not 0, subnormal, inf or NaN: the callers' arguments never are). x = m 2^k with
/// m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s) with s = (m - 1)/(m + 1), |s| < 0.172: 2s (1 + z/3 + z^2/5 + z^3/7 +
/// z^4/9), z = s^2; then + k ln2 in two parts.
SABER_EXACT_FN float log_positive(float x) {
    const uint32_t u = bits(x);
    int k = static_cast<int>(u >> 23) - 127;
    uint32_t mantissa = u & 0x007FFFFFu;
    // Mantissas at or above sqrt(2) (0x3504F3 in the fraction) take the next exponent: m in [sqrt(1/2), sqrt(2)).
    if (mantissa >= 0x003504F3u) {
        ++k;
        mantissa |= 0x3F000000u;  // m / 2, in [sqrt(1/2), 1)
    } else {
        mantissa |= 0x3F800000u;  // m, in [1, sqrt(2))
    }
    const float m = from_bits(mantissa);
    const float f = add(m, -1.0f);            // exact (Sterbenz)
    const float s = div(f, add(m, 1.0f));
    const float z = mul(s, s);
    float p = 0.111111112f;                   // 1/9
    p = fma(p, z, 0.142857149f);              // 1/7
    p = fma(p, z, 0.200000003f);              // 1/5
    p = fma(p, z, 0.333333343f);              // 1/3
    p = mul(p, z);
    const float two_s = add(s, s);            // exact
    const float ln_m = fma(two_s, p, two_s);
    const float kf = static_cast<float>(k);
    return add(mul(kf, kLn2Hi), fma(kf, kLn2Lo, ln_m));
}

// ---- random draws ----

/// The Gumbel transform g = -ln(-ln u) of a uniform u in [2^-24, 1 - 2^-24] (what random_bits gives): -ln u lies in
/// [5.96e-8, 16.7], a positive normal float, so both logarithms are in log_positive's domain.
SABER_EXACT_FN float gumbel(float u) { return -log_positive(-log_positive(u)); }

// ---- the fixed-point softmax term ----

/// Fixed-point scale of softmax terms: a term e in [0, 1] becomes floor(e 2^42). Sums of up to 2^21 terms (the C ABI's
/// vocabulary limit) fit a uint64, and integer sums are the same in every order and grouping.
constexpr int kFixedBits = 42;
constexpr float kFixedScale = 4398046511104.0f;   // 2^42

/// floor(e 2^42) for e in [0, 1]: the scaling is exact in float, the conversion truncates (on every side).
SABER_EXACT_FN uint64_t fixed_term(float e) {
    const float scaled = mul(e, kFixedScale);
#if defined(__CUDA_ARCH__)
    return __float2ull_rz(scaled);
#else
    return static_cast<uint64_t>(scaled);
#endif
}

/// e^d 2^42 for d in [-87, 0], the fast row pass's term: exactly exp_nonpositive(d) 2^42 where d >= -86 (a normal float;
/// below -86 the value is not 0 but below 2^-82). scaled_terms_fast's comment explains the steps.
SABER_EXACT_FN float scaled_exp_clamped(float d) {
    const Exp2Reduction r = reduce_exp2(d);
    const float p = exp2_poly(r.f, kFixedScale);
    return from_bits(bits(p) + (bits(r.t) << 23));       // p 2^k, exactly
}

/// Truncation of a float in [0, 2^64) to an integer, as fixed_term truncates.
SABER_EXACT_FN uint64_t truncate_u64(float x) {
#if defined(__CUDA_ARCH__)
    return __float2ull_rz(x);
#else
    return static_cast<uint64_t>(x);
#endif
}

/// A chunk's terms, scaled by 2^42: {e 2^42, e (-d) 2^42} with d = l - m and e = exp_nonpositive(d).
struct ScaledTerms {
    float sum;
    float entropy;
};

/// The fast row pass's scaled terms of d = l - m (d <= 0, -inf): {scaled_exp_clamped(d'), mul(that, -d')} with d' =
/// max(d, -87), in fewer operations than scaled_terms and without a branch. They equal scaled_terms' bits wherever d >=
/// -86 and that entropy term is a normal float; elsewhere (d < -86, a -inf logit, a subnormal product) both are below
/// 2^-75, and class_sum_truncated gives the same integer for either (chunk_partial_of's comment). Why they are equal:
///   - k and f are exp_nonpositive's (reduce_exp2): d' log2 e lies in [-125.6, 0], so t lies in [2^23, 2^24), where
///     floats are the integers.
///   - The polynomial with every coefficient times 2^42 (exact) is exp_nonpositive's p times 2^42 at every step: scaling
///     an fma's addend and one factor by a power of two scales its rounded result (no value comes near the subnormals or
///     overflow). exp_nonpositive's mul(p, 2^k) is exact (p in [0.7, 1.42], k >= -124 above the cut-off: the result is
///     normal), and so is the scaling by 2^42: both are the one exact value p 2^(k + 42), a normal float (k + 42 >= -84),
///     which adding k to the exponent field of p 2^42 gives without a multiply: bits(t) = bits(1.5 2^23) + k, and
///     bits(1.5 2^23) << 23 is 0 modulo 2^32, so bits(t) << 23 is k << 23. Below -86, where exp_nonpositive gives 0,
///     p 2^(k + 42) < 2^-82.
///   - mul(E, -d) = mul(e, -d) 2^42 exactly when mul(e, -d) is normal (scaling by a power of two commutes with
///     rounding); when it is subnormal both are below 2^-84; below -86, E 87 < 2^-75.
SABER_EXACT_FN ScaledTerms scaled_terms_fast(float d) {
    const float clamped = fmaxf(d, -87.0f);
    const float scaled = scaled_exp_clamped(clamped);
    return ScaledTerms{scaled, mul(scaled, -clamped)};
}

// ---- one row of logits: the quantities of spec §2 ----
//
// The row functions read the row through a loader, `load(v)` -> the float logit of id v, so that float16 and bfloat16
// rows (which widen to float exactly) and device rows use the same definitions; FloatRow reads a float array.

struct FloatRow {
    const float *row;
    SABER_EXACT_FN float operator()(int v) const { return row[v]; }
};

/// A logit that makes its row bad: NaN or +inf.
SABER_EXACT_FN bool is_bad(float logit) { return logit != logit || logit == INFINITY; }

/// The lowest id of a bad logit in the row, or -1.
template <typename Load>
SABER_EXACT_FN int first_bad(const Load &load, int vocabulary) {
    for (int v = 0; v < vocabulary; ++v)
        if (is_bad(load(v))) return v;
    return -1;
}

/// The prediction score of a logit: the logit at T = 0, l + T g with g = gumbel(to_uniform(bits)) at T > 0, where bits
/// is random_bits(seed, step, sequence, position, v).
SABER_EXACT_FN float score(float logit, float temperature, uint32_t bits) {
    return temperature > 0.0f ? add(logit, mul(temperature, gumbel(to_uniform(bits)))) : logit;
}

/// An upper bound of gumbel(u) over every uniform u of the random layout (the largest is gumbel(1 - 2^-24), about 16.64;
/// checked over all 2^23 of them in CTest). Since rounding is monotone, score(l, T, bits) <= add(l, mul(T, kGumbelMax)):
/// a fast pass may skip the Gumbel draw of a logit whose bound cannot beat its current runner-up.
constexpr float kGumbelMax = 16.75f;

/// The best two predictions: ids (-1 when none) and scores. The ranking is: the higher score first, the lower id on equal
/// scores. Ids whose score is -inf are never offered, and the mask id never.
struct TopTwo {
    int best, second;
    float best_score, second_score;
};

SABER_EXACT_FN TopTwo no_candidates() { return TopTwo{-1, -1, -INFINITY, -INFINITY}; }

/// Offers id v with `score` (not -inf) to `t`. Offered in ascending id order this is row_reference's scan (the tie
/// clauses never hold). For scores that are not NaN the ranking is a total order, so offers in any order, and the merge of
/// top twos of disjoint id sets (offering each one's best and second), give the same top two.
SABER_EXACT_FN void offer(TopTwo &t, float score, int v) {
    if (t.best < 0 || score > t.best_score || (score == t.best_score && v < t.best)) {
        t.second = t.best;
        t.second_score = t.best_score;
        t.best = v;
        t.best_score = score;
    } else if (t.second < 0 || score > t.second_score || (score == t.second_score && v < t.second)) {
        t.second = v;
        t.second_score = score;
    }
}

/// Merges the top two of another, disjoint, set of ids into `t`.
SABER_EXACT_FN void merge(TopTwo &t, const TopTwo &other) {
    if (other.best >= 0) offer(t, other.best_score, other.best);
    if (other.second >= 0) offer(t, other.second_score, other.second);
}

/// The best two predictions of a row with no bad logit: every id but the mask, scanned in ascending order.
template <typename Load>
SABER_EXACT_FN TopTwo top_two(const Load &load, int vocabulary, int mask_id, float temperature, uint64_t seed, int step, int sequence,
                              int position) {
    TopTwo t = no_candidates();
    for (int v = 0; v < vocabulary; ++v) {
        if (v == mask_id) continue;
        const float s = score(load(v), temperature, temperature > 0.0f ? random_bits(seed, step, sequence, position, v) : 0u);
        if (s == -INFINITY) continue;
        offer(t, s, v);
    }
    return t;
}

/// The constant partition of a row: chunk j holds ids [j kChunk, (j + 1) kChunk). No launch parameter changes it; a
/// parallel row pass may split a row only at chunk boundaries.
constexpr int kChunk = 1024;

/// What chunk j contributes: its exact maximum m_j and the fixed-point sums S_j and H_j of its terms e = exp(l - m_j) and
/// e (m_j - l) (chunk_partial_of; order-free: integer sums).
struct ChunkPartial {
    float max;
    uint64_t sum;
    uint64_t entropy;
};

/// A chunk's ids fall into 256 classes of four ids 256 apart: {v, v + 256, v + 512, v + 768} for each v of its first 256.
/// Whatever a row's alignment, a lane of the CUDA pass holds all four ids of a class (row_scan.h's layout), and so does
/// one lane of the CPU pass's four vectors 256 ids apart; no other grouping of a chunk's ids has that property for every
/// alignment and both vector widths.
constexpr int kClassStride = 256;

/// The scaled terms of a logit (not NaN or +inf) in a chunk of maximum `max`: {mul(e, 2^42), mul(mul(e, -d), 2^42)} with
/// d = l - max and e = exp_nonpositive(d) (both scalings exact), and {0, 0} for -inf.
SABER_EXACT_FN ScaledTerms scaled_terms(float logit, float max) {
    if (logit == -INFINITY) return ScaledTerms{0.0f, 0.0f};
    const float d = add(logit, -max);
    const float e = exp_nonpositive(d);
    return ScaledTerms{mul(e, kFixedScale), mul(mul(e, -d), kFixedScale)};
}

/// The fixed-point sum of one class: its four scaled terms added in float as (a + c) + (b + d), where a, b, c, d are the
/// terms of ids v, v + 256, v + 512 and v + 768 (0 past the chunk's end), then truncated to an integer. The grouping pairs
/// ids 512 apart; float addition is commutative, so a lane that holds the class in another rotation (v + 768 first) gets
/// the same bits. A class adds up to at most 2^44, a chunk to 2^52 and a row of 2^21 ids to 2^63.
SABER_EXACT_FN uint64_t class_sum_truncated(float a, float b, float c, float d) { return truncate_u64(add(add(a, c), add(b, d))); }

/// The partial of ids [begin, end) of a row that holds no NaN or +inf (end - begin <= kChunk): the chunk's maximum, then
/// S = sum over its classes of class_sum_truncated of the terms' sum parts, and H likewise of their entropy parts. The
/// truncation error is below one unit (2^-42 of a term of 1) per class, and the float additions cost at most two
/// roundings of 2^-24 relative per class.
///
/// The fast passes' terms (scaled_terms_fast) differ from these only where both are below 2^-75, and then the class's
/// integer is the same: if a term's partner in a pair is at least 2^-50, both sums round to the partner (2^-75 is below
/// half its ulp), and if it is smaller, both pair sums are below 2^-49; then the other pair's sum, if at least 2^-25,
/// absorbs either, and if not, the class's sum is below 1 and truncates to 0 either way.
template <typename Load>
SABER_EXACT_FN ChunkPartial chunk_partial_of(const Load &load, int begin, int end, bool with_entropy) {
    ChunkPartial p{-INFINITY, 0, 0};
    for (int v = begin; v < end; ++v)
        if (load(v) > p.max) p.max = load(v);
    if (p.max == -INFINITY) return p;
    for (int v = begin; v < begin + kClassStride && v < end; ++v) {
        ScaledTerms t[4];
        for (int s = 0; s < 4; ++s) {
            const int id = v + s * kClassStride;
            t[s] = id < end ? scaled_terms(load(id), p.max) : ScaledTerms{0.0f, 0.0f};
        }
        p.sum += class_sum_truncated(t[0].sum, t[1].sum, t[2].sum, t[3].sum);
        if (with_entropy) p.entropy += class_sum_truncated(t[0].entropy, t[1].entropy, t[2].entropy, t[3].entropy);
    }
    return p;
}

SABER_EXACT_FN ChunkPartial chunk_partial(const float *row, int begin, int end, bool with_entropy) {
    return chunk_partial_of(FloatRow{row}, begin, end, with_entropy);
}

/// The row's softmax normaliser from its chunk partials, merged in chunk order in double: M = max_j m_j,
/// sum = sum_j e^(m_j - M) S_j 2^-42 = sum_v e^(l_v - M), entropy = sum_v e^(l_v - M) (M - l_v).
struct RowNormaliser {
    float max;
    double sum;
    double entropy;
};

/// What a chunk with a finite maximum adds to the normaliser's two sums, given the row's maximum M. A parallel pass may
/// compute these for every chunk at once; only the additions (accumulate) must run in chunk order.
struct ChunkTerms {
    double sum;
    double entropy;
};

SABER_EXACT_FN ChunkTerms chunk_terms(const ChunkPartial &p, float row_max) {
    const float dm = add(p.max, -row_max);
    const double scale = dmul(static_cast<double>(exp_nonpositive(dm)), 0x1p-42);  // exact: a power-of-two scaling
    const double sum = static_cast<double>(p.sum);
    return ChunkTerms{dmul(sum, scale), dmul(scale, dadd(static_cast<double>(p.entropy), dmul(static_cast<double>(-dm), sum)))};
}

/// Adds chunk partial `p` to `n`, whose max is already the row's maximum M. Chunks are added in chunk order.
SABER_EXACT_FN void accumulate(RowNormaliser &n, const ChunkPartial &p) {
    if (p.max == -INFINITY) return;
    const ChunkTerms t = chunk_terms(p, n.max);
    n.sum = dadd(n.sum, t.sum);
    n.entropy = dadd(n.entropy, t.entropy);
}

/// The normaliser of a row from its chunk partials, `count` of them in chunk order.
SABER_EXACT_FN RowNormaliser merge_chunks(const ChunkPartial *parts, int count) {
    RowNormaliser n{-INFINITY, 0.0, 0.0};
    for (int j = 0; j < count; ++j)
        if (parts[j].max > n.max) n.max = parts[j].max;
    for (int j = 0; j < count; ++j) accumulate(n, parts[j]);
    return n;
}

/// The row's results. prediction is -1 when the row is bad: bad_index is then the lowest id of a NaN or +inf logit,
/// or the vocabulary size when no logit besides the mask id's is finite.
struct RowResult {
    int prediction;
    int bad_index;
    float confidence;
    float token_confidence;
    float metric;
};

/// s_v = e^(l_v - M) / sum as a float: the exp of the max-subtracted logit over the merged normaliser, in double.
SABER_EXACT_FN float probability(float logit, const RowNormaliser &n) {
    return static_cast<float>(ddiv(static_cast<double>(exp_nonpositive(add(logit, -n.max))), n.sum));
}

/// The results of a row with no bad logit from its top two (top.best >= 0) and its merged normaliser (the entropy sum
/// is needed for metric 2 only). The arguments are row_reference's.
template <typename Load>
SABER_EXACT_FN RowResult finish_row(const Load &load, const RowNormaliser &n, const TopTwo &top, int vocabulary, int token, int metric,
                                    uint64_t seed, int step, int sequence, int position) {
    RowResult r{top.best, -1, 0.0f, 0.0f, 0.0f};
    const float best_logit = load(top.best);
    r.confidence = probability(best_logit, n);
    r.token_confidence = token >= 0 ? probability(load(token), n) : NAN;
    switch (metric) {
        case 0: r.metric = r.confidence; break;
        case 1:
            r.metric = top.second < 0 ? r.confidence
                                      : static_cast<float>(ddiv(dadd(static_cast<double>(exp_nonpositive(add(best_logit, -n.max))),
                                                                     -static_cast<double>(exp_nonpositive(add(load(top.second), -n.max)))),
                                                                n.sum));
            break;
        case 2:
            // sum_v s_v ln s_v = -(sum_v e^(l_v - M) (M - l_v)) / sum - ln sum; sum >= 1 (the maximum contributes exactly 1).
            r.metric = static_cast<float>(dadd(-ddiv(n.entropy, n.sum), -static_cast<double>(log_positive(static_cast<float>(n.sum)))));
            break;
        default: r.metric = to_uniform(random_bits(seed, step, sequence, position, vocabulary)); break;
    }
    return r;
}

/// The definition of spec §2 for one row of `vocabulary` logits read through `load` (the reference every fast path must
/// equal). metric: 0 maxprob, 1 margin, 2 negentropy, 3 random (saber_metric); token: the id whose probability q is
/// wanted, or -1 (q is then NaN). At T > 0 the score of id v is l_v + T g_v with g_v = gumbel(uniform(random_bits(seed,
/// step, sequence, position, v))); the random metric is the uniform at v = vocabulary.
template <typename Load>
SABER_EXACT_FN RowResult row_reference_of(const Load &load, int vocabulary, int mask_id, int token, int metric, float temperature,
                                          uint64_t seed, int step, int sequence, int position) {
    RowResult r{-1, -1, 0.0f, 0.0f, 0.0f};
    const int bad = first_bad(load, vocabulary);
    if (bad >= 0) {
        r.bad_index = bad;
        return r;
    }
    const TopTwo top = top_two(load, vocabulary, mask_id, temperature, seed, step, sequence, position);
    if (top.best < 0) {
        r.bad_index = vocabulary;
        return r;
    }
    // The row's maximum (the maximum of its chunk maxima), then the chunk partials in chunk order; a parallel pass
    // computes the partials anywhere and merges them the same way (merge_chunks).
    RowNormaliser n{-INFINITY, 0.0, 0.0};
    for (int v = 0; v < vocabulary; ++v)
        if (load(v) > n.max) n.max = load(v);
    for (int begin = 0; begin < vocabulary; begin += kChunk)
        accumulate(n, chunk_partial_of(load, begin, begin + kChunk < vocabulary ? begin + kChunk : vocabulary, metric == 2));
    return finish_row(load, n, top, vocabulary, token, metric, seed, step, sequence, position);
}

/// row_reference_of a float row.
SABER_EXACT_FN RowResult row_reference(const float *row, int vocabulary, int mask_id, int token, int metric, float temperature, uint64_t seed,
                                       int step, int sequence, int position) {
    return row_reference_of(FloatRow{row}, vocabulary, mask_id, token, metric, temperature, seed, step, sequence, position);
}

/// The saber_exact_function `function` (exp, log or Gumbel) at x: what saber_exact_eval(_device) computes.
SABER_EXACT_FN float evaluate(int32_t function, float x) {
    switch (function) {
        case 0: return exp_nonpositive(x);
        case 1: return log_positive(x);
        default: return gumbel(x);
    }
}

}  // namespace exact
}  // namespace saber
