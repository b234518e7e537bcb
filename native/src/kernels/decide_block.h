// One sequence's decide step (docs/strategies.md), written once for the device and the host. Every function here is run
// by all threads of a "block" policy together:
//
//   struct Block {
//       int thread();      // this thread's index in [0, threads())
//       int threads();     // the block's thread count
//       void sync();       // barrier of the block's threads (orders their scratch reads and writes)
//       void sync_warp();  // barrier of this thread's warp of 32
//       long long sum(long long v);                 // block-wide sum of every thread's v, to every thread (a barrier)
//       void stage(int slot, long long v);          // contributes v to staged sum `slot` (0 or 1), no barrier ...
//       long long staged(int slot);                 // ... whose total every thread reads after the next sync()
//   };
//
// decide.cu instantiates it with the real CUDA block (one block per sequence); the host tests with HostBlock, one thread
// whose loops `for (i = thread(); i < n; i += threads())` cover everything and whose barriers are no-ops. So the host
// runs the same code, sort included, that the device runs. A device block's thread count is a multiple of 32.
//
// A sequence works in a Scratch: its own copies of the per-position arrays it decides on (shared memory on the device
// when G <= kSharedPositions: loaded once, written back once), or the decode state's arrays themselves (the global-memory
// path of larger G). Selections sort 64-bit keys (score rank, position) with a bitonic sort over the Scratch's keys.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "decode_state.h"
#include "status.h"
#include "exact_math.h"

#if defined(__CUDACC__)
#define SABER_DECIDE_FN __host__ __device__ inline
#else
#define SABER_DECIDE_FN inline
#endif

namespace saber {
namespace decide {

/// Largest G whose working arrays live in shared memory (G is 256..1024 in common use; up to 2^20 is allowed).
constexpr int kSharedPositions = 1024;

/// A block of one thread: the host's emulation of the device block.
struct HostBlock {
    long long staged_sums[2] = {0, 0};
    int thread() const { return 0; }
    int threads() const { return 1; }
    void sync() {}
    void sync_warp() {}
    long long sum(long long v) { return v; }
    void stage(int slot, long long v) { staged_sums[slot] = v; }
    long long staged(int slot) const { return staged_sums[slot]; }
};

/// One sequence's working arrays, indexed by generation position g. With `staged` they are the sequence's own copies
/// (shared memory), valid for g < the active end; otherwise they are the state's arrays of the sequence.
struct Scratch {
    bool staged;
    int8_t *decoded;            // at the step's start; commits and re-masks are applied when the step is stored
    int8_t *commit_set;         // Saber
    int8_t *drafted;            // D of this step
    int8_t *remasked;           // re-masked this step
    float *score;               // c (Saber, threshold, factor) or the low-confidence metric
    float *delta;               // Saber: this step's change
    float *commit_confidence;   // Saber: f
    unsigned long long *keys;   // sort keys: at least pow2_at_least(G) of them
    double *threshold;          // one value: the threshold thread 0 computes for every thread
};

/// Sort keys of positions that are not candidates: after every candidate key (whose low word is its position < 2^20).
constexpr unsigned long long kNoCandidate = ~0ull;

/// Bytes of sort keys the global-memory path finds per position in the row pass's chunk scratch (at least 2 keys).
constexpr size_t kKeyBytesPerRow = sizeof(exact::ChunkPartial);
static_assert(sizeof(exact::ChunkPartial) >= 2 * sizeof(unsigned long long), "the chunk scratch holds two keys per row");

SABER_DECIDE_FN int imin(int a, int b) { return a < b ? a : b; }
SABER_DECIDE_FN int imax(int a, int b) { return a > b ? a : b; }

/// The least power of two >= n (n >= 1).
SABER_DECIDE_FN int pow2_at_least(int n) {
    int p = 1;
    while (p < n) p *= 2;
    return p;
}

using exact::bits;

/// Positive infinity and the quiet NaN a baseline's trace reports as tau (0x7FF8000000000000), the same bits everywhere.
SABER_DECIDE_FN float positive_infinity() {
    const uint32_t u = 0x7f800000u;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
SABER_DECIDE_FN double quiet_nan() {
    const uint64_t u = 0x7ff8000000000000ull;
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}
SABER_DECIDE_FN bool is_finite(float x) { return (bits(x) & 0x7f800000u) != 0x7f800000u; }

/// The rank of a float as an unsigned integer: for non-NaN a and b, a < b iff order_bits(a) < order_bits(b) and a == b iff
/// order_bits(a) == order_bits(b); so -0 and +0 tie, as they do for the float comparisons of the spec's ordering rule.
/// NaN never reaches it: c, q and the metric of a row without bad logits are finite (exact::finish_row: probabilities
/// in [0, 1], the margin, the negentropy of a normaliser >= 1, a uniform in (0, 1)), and Saber sets a non-finite change to
/// +inf. Positions whose rows were not computed this step (stale or NaN values) are never candidates.
SABER_DECIDE_FN uint32_t order_bits(float x) {
    const uint32_t u = x == 0.0f ? 0u : bits(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

enum class Order { HighestFirst, LowestFirst };

/// The key of candidate g with `score`: ascending keys are the spec's order (score descending for HighestFirst,
/// ascending for LowestFirst; equal scores by position ascending).
SABER_DECIDE_FN unsigned long long sort_key(float score, int g, Order order) {
    const uint32_t rank = order == Order::HighestFirst ? ~order_bits(score) : order_bits(score);
    return (static_cast<unsigned long long>(rank) << 32) | static_cast<uint32_t>(g);
}

/// Pairs a warp compares per sort stage: one per thread of 32.
constexpr int kWarpPairs = 32;

/// The lower key of pair i in a sort stage of `stride`: pairs (low, low + stride) with low's bit `stride` clear.
SABER_DECIDE_FN int pair_low(int i, int stride) { return 2 * i - (i & (stride - 1)); }

/// Whether the sort stage (size, stride) of a sort of n keys needs a block barrier after it, rather than a warp barrier:
/// when it or the next stage has a stride over kWarpPairs, or it is the last stage.
SABER_DECIDE_FN bool block_barrier_after(int size, int stride, int n) {
    const bool last = stride == 1 && size == n;
    const int next = stride > 1 ? stride / 2 : size;   // the next stage's stride (after size's last stage: size 2 size, stride size)
    return last || stride > kWarpPairs || next > kWarpPairs;
}

/// Sorts keys[0, n) ascending, n a power of two: a bitonic network of log2(n) (log2(n) + 1) / 2 stages, each comparing
/// n / 2 disjoint pairs spread over the threads (pair i by thread i mod threads; threads a multiple of 32).
///
/// Barriers: pair i = 32 W + l (l < 32) of a stage of stride s <= 32 joins keys low = 64 W + 2 s (l / s) + l % s and
/// low + s, both in [64 W, 64 W + 64): in every such stage warp-iteration W touches exactly those 64 keys. So between two
/// stages of stride <= 32 a warp barrier is enough; a block barrier follows every other stage and the last one. For n =
/// 1024 that is 15 block barriers of 55 stages (n = 256: 6 of 36).
template <typename Block>
SABER_DECIDE_FN void bitonic_sort(Block &block, unsigned long long *keys, int n) {
    for (int size = 2; size <= n; size *= 2) {
        for (int stride = size / 2; stride > 0; stride /= 2) {
            for (int i = block.thread(); i < n / 2; i += block.threads()) {
                const int low = pair_low(i, stride), high = low + stride;
                const bool ascending = (low & size) == 0;   // direction of low's run of `size`
                const unsigned long long a = keys[low], b = keys[high];
                if ((a > b) == ascending) {
                    keys[low] = b;
                    keys[high] = a;
                }
            }
            if (block_barrier_after(size, stride, n)) block.sync();
            else block.sync_warp();
        }
    }
}

/// Writes the sort keys of [from, to) to keys[0, pow2_at_least(to - from)) (kNoCandidate for non-candidates and the
/// padding) and clears flags[g] for g in [from, to). Returns the number of candidates, the same on every thread (the
/// sum is the barrier before a sort).
template <typename Block, typename Candidate, typename Score>
SABER_DECIDE_FN int candidate_keys(Block &block, const Scratch &w, int from, int to, Order order, int8_t *flags,
                                   Candidate candidate, Score score) {
    const int n = pow2_at_least(to - from);
    int mine = 0;
    for (int i = block.thread(); i < n; i += block.threads()) {
        const int g = from + i;
        unsigned long long key = kNoCandidate;
        if (g < to) {
            flags[g] = 0;
            if (candidate(g)) {
                key = sort_key(score(g), g, order);
                ++mine;
            }
        }
        w.keys[i] = key;
    }
    return static_cast<int>(block.sum(mine));
}

/// Sets flags[g] = 1 for the positions of the first k sorted keys (k at most the candidates), then a barrier.
template <typename Block>
SABER_DECIDE_FN void flag_first(Block &block, const Scratch &w, int k, int8_t *flags) {
    for (int i = block.thread(); i < k; i += block.threads()) flags[static_cast<uint32_t>(w.keys[i])] = 1;
    block.sync();
}

/// Sets flags[g] = 1 for the first k candidates g in [from, to) in the spec's order by score (Order), and flags[g] = 0
/// for every other g in [from, to). Returns how many it set: min(k, candidates), the same on every thread.
template <typename Block, typename Candidate, typename Score>
SABER_DECIDE_FN int select_first(Block &block, const Scratch &w, int from, int to, int k, Order order, int8_t *flags,
                           Candidate candidate, Score score) {
    const int chosen = imin(k, candidate_keys(block, w, from, to, order, flags, candidate, score));
    if (chosen <= 0) return 0;
    bitonic_sort(block, w.keys, pow2_at_least(to - from));
    flag_first(block, w, chosen, flags);
    return chosen;
}

/// tau without a sequential chain, when that gives the CPU's bits. The CPU adds the commit set's f in position order in
/// double. If every term is 0 or a float in [2^-20, 1] (a multiple of 2^-43: its ulp is at least 2^-43) and there are at
/// most kExactTerms = 1024 of them, every partial sum is m 2^-43 with an integer m <= 1024 2^43 = 2^53, which a double
/// holds exactly: each addition is exact and the sum is the exact one, which integers give in any order (f 2^43 summed
/// in int64, at most 2^53, then scaled back exactly). Otherwise (a nonzero f below 2^-20 ~ 9.5e-7, or more than 1024
/// terms: only when G > 1024) one thread adds in position order.
constexpr int kExactTerms = 1024;

/// f 2^43 (an integer) when f is 0 or lies in [2^-20, 1]; -1 for any other f.
SABER_DECIDE_FN long long fixed_term(float f) {
    if (f == 0.0f) return 0;
    if (!(f >= 0x1p-20f && f <= 1.0f)) return -1;
    return static_cast<long long>(static_cast<double>(f) * 0x1p43);
}

/// One sequence's place in the state.
struct Sequence {
    int index;         // b
    size_t base;       // b * G: its first element of the per-position arrays
    int32_t *canvas;   // its generation region in the canvas
    int begin, end;    // the active block [begin, end), as generation indices
};

SABER_DECIDE_FN Sequence sequence_of(const DecodeState &s, int b) {
    Sequence q;
    q.index = b;
    q.base = static_cast<size_t>(b) * s.generation;
    q.canvas = s.canvas + static_cast<size_t>(b) * s.length + s.prompt_length[b];
    q.begin = s.block[b] * s.block_length;
    q.end = q.begin + s.block_length;
    return q;
}

/// The sequence's trace slot of `step`; all null when the decode keeps no trace.
struct Trace {
    saber_trace_step *header;
    int32_t *events, *tokens;
    float *confidences, *deltas;
};

SABER_DECIDE_FN Trace trace_of(const DecodeState &s, int b, int step) {
    Trace t{nullptr, nullptr, nullptr, nullptr, nullptr};
    if (s.trace_capacity == 0) return t;
    const size_t slot = static_cast<size_t>((step - 1) % s.trace_capacity) * s.batch + b;
    t.header = s.trace_steps + slot;
    t.events = s.trace_events + slot * s.generation;
    t.tokens = s.trace_tokens + slot * s.generation;
    t.confidences = s.trace_confidences + slot * s.generation;
    t.deltas = s.trace_deltas + slot * s.generation;
    return t;
}

/// The global-memory path's Scratch (any G): the state's own arrays of sequence b, in_draft and selected as the draft and
/// re-mask flags, and the sort keys in the sequence's part of the row pass's chunk scratch, which no one reads between
/// the row pass and the next step's row pass (kKeyBytesPerRow * row_chunks >= 16 bytes per position: room for
/// pow2_at_least(G) <= 2 G keys). `threshold` is one double visible to the whole block.
SABER_DECIDE_FN Scratch state_scratch(const DecodeState &s, int b, double *threshold) {
    const size_t base = static_cast<size_t>(b) * s.generation;
    Scratch w;
    w.staged = false;
    w.decoded = s.decoded + base;
    w.commit_set = s.commit_set + base;
    w.drafted = s.in_draft + base;
    w.remasked = s.selected + base;
    w.score = (s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE ? s.metric : s.confidence) + base;
    w.delta = s.delta + base;
    w.commit_confidence = s.commit_confidence + base;
    w.keys = reinterpret_cast<unsigned long long *>(static_cast<char *>(s.chunk_partials) +
                                                    base * static_cast<size_t>(s.row_chunks) * kKeyBytesPerRow);
    w.threshold = threshold;
    return w;
}

/// What a strategy's rule decided, for the trace header and the bookkeeping.
struct Outcome {
    int committed = 0;
    int remasked = 0;
    double tau = 0.0;
    bool block_complete = false;   // Saber, threshold, factor: every position before the active end is decoded now
};

/// Loads the arrays the strategy decides on into the scratch (when staged) and clears the flags, for g < end; Saber also
/// computes steps 1-2 (the tracked confidence a, its change and the new cprev) for every generation position.
template <typename Block>
SABER_DECIDE_FN void load(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w) {
    const bool saber = s.options.strategy == SABER_STRATEGY_SABER;
    const bool paper = saber && s.options.variant == SABER_VARIANT_PAPER;
    const float *score = s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE ? s.metric : s.confidence;
    long long fixed = 0, terms = 0;   // Saber: tau's integer sum; commit-set size + (terms the integers miss << 32)
    for (int g = block.thread(); g < s.generation; g += block.threads()) {
        const size_t at = q.base + g;
        if (g < q.end) {
            if (w.staged) {
                w.decoded[g] = s.decoded[at];
                w.score[g] = score[at];
                if (saber) {
                    w.commit_set[g] = s.commit_set[at];
                    w.commit_confidence[g] = s.commit_confidence[at];
                }
            }
            w.drafted[g] = 0;
            w.remasked[g] = 0;
            if (saber && (paper ? s.decoded[at] : s.commit_set[at])) {
                const long long term = fixed_term(s.commit_confidence[at]);
                if (term >= 0) fixed += term;
                terms += term >= 0 ? 1 : 1 + (1ll << 32);
            }
        }
        if (saber) {
            const float a = g >= q.end ? -positive_infinity() : paper && s.decoded[at] ? s.token_confidence[at] : s.confidence[at];
            const float d = a - s.previous[at];
            const float delta = is_finite(d) ? d : positive_infinity();
            s.delta[at] = delta;
            s.previous[at] = a;
            if (w.staged && g < q.end) w.delta[g] = delta;
        }
    }
    if (saber) {
        block.stage(0, fixed);
        block.stage(1, terms);
    }
    block.sync();
}

/// Saber steps 3-7 (the re-masks are applied by store()).
template <typename Block>
SABER_DECIDE_FN Outcome saber_rule(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w) {
    const saber_decode_options &o = s.options;
    const bool paper = o.variant == SABER_VARIANT_PAPER;
    Outcome out;

    // 3: tau, the mean of f over the commit set: the CPU's bits (a double sum in position order), by the integer sum that
    // load() staged when that is exact, else by one thread adding in position order. The fixed threshold replaces it.
    if (o.use_fixed_threshold) {
        out.tau = static_cast<double>(o.fixed_threshold);
    } else {
        const long long terms = block.staged(1);
        const int count = static_cast<int>(terms & 0xFFFFFFFFll), inexact = static_cast<int>(terms >> 32);
        if (inexact == 0 && count <= kExactTerms) {
            const double sum = static_cast<double>(block.staged(0)) * 0x1p-43;
            out.tau = count == 0 ? 1.0 : sum / count;
        } else {
            if (block.thread() == 0) {
                double sum = 0.0;
                int counted = 0;
                for (int g = 0; g < q.end; ++g) {
                    if (paper ? w.decoded[g] : w.commit_set[g]) {
                        sum += w.commit_confidence[g];
                        ++counted;
                    }
                }
                *w.threshold = counted == 0 ? 1.0 : sum / counted;
            }
            block.sync();
            out.tau = *w.threshold;
        }
    }

    // 4: the draft, undecoded positions above the threshold; too few: the n most confident undecoded ones (or all).
    long long counts = 0;   // drafted + (undecoded << 32)
    for (int g = block.thread(); g < q.end; g += block.threads()) {
        const bool in = !w.decoded[g] && static_cast<double>(w.score[g]) > out.tau;
        w.drafted[g] = in;
        counts += (in ? 1 : 0) + (w.decoded[g] ? 0 : 1ll << 32);
    }
    counts = block.sum(counts);
    const int undecoded = static_cast<int>(counts >> 32);
    out.committed = static_cast<int>(counts & 0xFFFFFFFFll);
    if (out.committed < o.min_tokens_per_step)
        out.committed = select_first(block, w, 0, q.end, o.min_tokens_per_step, Order::HighestFirst, w.drafted,
                                     [&](int g) { return !w.decoded[g]; }, [&](int g) { return w.score[g]; });

    // 5-6: committed (every drafted position was undecoded); is the active region complete?
    out.block_complete = out.committed == undecoded;
    if (out.block_complete || !o.backtracking) return out;

    // 7: re-mask the m largest drops among decoded positions (paper: not this step's draft).
    const int drafted = out.committed, n = o.min_tokens_per_step, mu = o.remask_divisor;
    const int m = paper ? imin(imax(1, drafted / mu), drafted - 1) : imin(imax(n / 2, (drafted + mu - 1) / mu), drafted - 1);
    if (m <= 0) return out;
    out.remasked = select_first(block, w, 0, q.end, m, Order::LowestFirst, w.remasked,
                          [&](int g) { return (w.decoded[g] || w.drafted[g]) && !(paper && w.drafted[g]); },
                          [&](int g) { return w.delta[g]; });
    return out;
}

/// Low-confidence: this step's quota of the block's masked positions with the best metric.
template <typename Block>
SABER_DECIDE_FN Outcome low_confidence_rule(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w) {
    const int blocks = s.generation / s.block_length;
    const int steps_per_block = s.options.steps / blocks;
    const int block_step = s.block_step[q.index];
    const int k0 = s.block_length;   // every position of a block is masked when it starts
    const int quota = k0 / steps_per_block + (block_step < k0 % steps_per_block ? 1 : 0);
    Outcome out;
    out.tau = quiet_nan();
    out.committed = select_first(block, w, q.begin, q.end, quota, Order::HighestFirst, w.drafted, [&](int g) { return !w.decoded[g]; },
                           [&](int g) { return w.score[g]; });
    return out;
}

/// Threshold: the block's masked positions with c >= theta, at least the most confident one.
template <typename Block>
SABER_DECIDE_FN Outcome threshold_rule(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w) {
    const float theta = s.options.threshold;
    Outcome out;
    out.tau = quiet_nan();
    long long counts = 0;   // drafted + (undecoded before the active end << 32)
    for (int g = block.thread(); g < q.end; g += block.threads()) {
        const bool in = g >= q.begin && !w.decoded[g] && w.score[g] >= theta;
        if (g >= q.begin) w.drafted[g] = in;
        counts += (in ? 1 : 0) + (w.decoded[g] ? 0 : 1ll << 32);
    }
    counts = block.sum(counts);
    const int undecoded = static_cast<int>(counts >> 32);
    out.committed = static_cast<int>(counts & 0xFFFFFFFFll);
    if (out.committed == 0)
        out.committed = select_first(block, w, q.begin, q.end, 1, Order::HighestFirst, w.drafted, [&](int g) { return !w.decoded[g]; },
                                     [&](int g) { return w.score[g]; });
    out.block_complete = out.committed == undecoded;   // every drafted position was undecoded
    return out;
}

/// The factor rule's threshold of rank i (1-based): 1 - factor / (i + 1) in double, each operation rounded once (no
/// contraction is possible: a quotient, then a difference), the same bits on the host and the device.
SABER_DECIDE_FN double factor_threshold(float factor, int rank) {
    return 1.0 - static_cast<double>(factor) / static_cast<double>(rank + 1);
}

/// Factor: rank the block's masked positions by c (descending, then position); rank 1 always passes, rank i >= 2 passes
/// when c_i >= 1 - factor / (i + 1). Commits the longest passing prefix L, or all M masked positions when L = M - 1 (the
/// released code's rule, docs/strategies.md). c_i does not increase with i and the threshold does not decrease (the
/// rounded quotient and difference are monotone), so the passing ranks are a prefix and L is their count: a block sum
/// instead of a scan.
template <typename Block>
SABER_DECIDE_FN Outcome factor_rule(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w) {
    const float factor = s.options.factor;
    Outcome out;
    out.tau = quiet_nan();
    long long counts = 0;   // ranks 2..M that pass + (undecoded positions before the block << 32)
    for (int g = block.thread(); g < q.begin; g += block.threads()) counts += w.decoded[g] ? 0 : 1ll << 32;
    const int masked = candidate_keys(block, w, q.begin, q.end, Order::HighestFirst, w.drafted, [&](int g) { return !w.decoded[g]; },
                                      [&](int g) { return w.score[g]; });
    if (masked > 0) bitonic_sort(block, w.keys, pow2_at_least(q.end - q.begin));   // ends with a block barrier
    for (int i = 1 + block.thread(); i < masked; i += block.threads()) {
        const int g = static_cast<int>(static_cast<uint32_t>(w.keys[i]));
        counts += static_cast<double>(w.score[g]) >= factor_threshold(factor, i + 1) ? 1 : 0;
    }
    counts = block.sum(counts);
    const int prefix = 1 + static_cast<int>(counts & 0xFFFFFFFFll);
    out.committed = masked == 0 ? 0 : prefix == masked - 1 ? masked : prefix;
    if (out.committed > 0) flag_first(block, w, out.committed, w.drafted);
    out.block_complete = out.committed == masked && (counts >> 32) == 0;
    return out;
}

/// Writes the step's result once: decoded (commits, then re-masks), Saber's commit set and f, the canvas, and the trace
/// events of every generation position (with tokens and confidences of commits, changes of re-masks).
template <typename Block>
SABER_DECIDE_FN void store(Block &block, const DecodeState &s, const Sequence &q, const Scratch &w, const Trace &trace) {
    const bool saber = s.options.strategy == SABER_STRATEGY_SABER;
    const bool paper = saber && s.options.variant == SABER_VARIANT_PAPER;
    for (int g = block.thread(); g < s.generation; g += block.threads()) {
        const size_t at = q.base + g;
        int32_t event = 0;
        if (g < q.end) {
            const bool drafted = w.drafted[g] != 0, remasked = w.remasked[g] != 0;
            s.decoded[at] = (w.decoded[g] || drafted) && !remasked;
            if (saber) {
                if (drafted) s.commit_confidence[at] = w.score[g];
                s.commit_set[at] = (w.commit_set[g] || drafted) && !(paper && remasked);
            }
            if (remasked) q.canvas[g] = s.mask_id;
            else if (drafted) q.canvas[g] = s.prediction[at];
            if (trace.events && drafted) {
                event |= SABER_TRACE_COMMITTED;
                trace.tokens[g] = s.prediction[at];
                trace.confidences[g] = s.confidence[at];
            }
            if (trace.events && remasked) {
                event |= SABER_TRACE_REMASKED;
                trace.deltas[g] = w.delta[g];
            }
        }
        if (trace.events) trace.events[g] = event;
    }
}

/// Sequence b's step: the strategy's rule in the scratch, the result stored once, then (thread 0) the trace header, NFE
/// and block/done bookkeeping. Every thread of the block calls it; the caller skips done sequences and failed steps.
template <typename Block>
SABER_DECIDE_FN void decide_sequence(Block &block, const DecodeState &s, int b, const Scratch &w) {
    const int step = *s.step + 1;
    const Sequence q = sequence_of(s, b);
    const Trace trace = trace_of(s, b, step);
    load(block, s, q, w);
    Outcome out;
    switch (s.options.strategy) {
        case SABER_STRATEGY_SABER: out = saber_rule(block, s, q, w); break;
        case SABER_STRATEGY_LOW_CONFIDENCE: out = low_confidence_rule(block, s, q, w); break;
        case SABER_STRATEGY_FACTOR: out = factor_rule(block, s, q, w); break;
        default: out = threshold_rule(block, s, q, w); break;
    }
    store(block, s, q, w, trace);
    if (block.thread() != 0) return;
    if (trace.header) *trace.header = saber_trace_step{step, out.committed, out.remasked, 0, out.tau};
    s.nfe[b] += 1;
    if (s.options.strategy == SABER_STRATEGY_LOW_CONFIDENCE) {
        const int blocks = s.generation / s.block_length;
        const int steps_per_block = s.options.steps / blocks;
        if (s.block_step[b] + 1 == steps_per_block) {
            s.block_step[b] = 0;
            s.block[b] += 1;
            if (s.block[b] == blocks) s.done[b] = 1;
        } else {
            s.block_step[b] += 1;
        }
    } else if (out.block_complete) {
        // Spec step 6 / the threshold rule: finished, or the next block is active on the next step.
        if (q.end == s.generation) s.done[b] = 1;
        else s.block[b] += 1;
    }
}

/// The sequences not done: a block sum over s.done (the device gets the count from plan_rows's pass instead). Every
/// thread of one block calls it.
template <typename Block>
SABER_DECIDE_FN int active_sequences(Block &block, const DecodeState &s) {
    int mine = 0;
    for (int b = block.thread(); b < s.batch; b += block.threads()) mine += s.done[b] ? 0 : 1;
    return static_cast<int>(block.sum(mine));
}

/// The step's bookkeeping once every sequence has decided: the step counter (or the failed step), and the status the
/// host polls, published to *s.status and the mapped host block (kernels/status.h). `stepped`: some sequence took this
/// step; a step queued after every sequence had finished (a host loop one step ahead) is no step and does not count.
/// `active`: the sequences not done after the step. Every thread of one block calls it (only thread 0 works).
template <typename Block>
SABER_DECIDE_FN void finish_step(Block &block, const DecodeState &s, bool stepped, int active) {
    if (block.thread() != 0) return;
    const unsigned long long error = *s.error;
    if (error == kNoError) {
        if (stepped) *s.step += 1;
    }
    else if (*s.error_step == 0) *s.error_step = *s.step + 1;
    saber_decode_status status{};
    status.steps = *s.step;
    status.active_sequences = active;
    if (error != kNoError) {
        status.error = SABER_ERROR_INVALID_LOGITS;
        status.error_step = *s.error_step;
        status.error_sequence = static_cast<int32_t>(error >> 42);
        status.error_position = static_cast<int32_t>((error >> 21) & ((1u << 21) - 1));
        status.error_vocabulary_index = static_cast<int32_t>(error & ((1u << 21) - 1));
    }
    publish_status(s, status);
}

}  // namespace decide
}  // namespace saber
