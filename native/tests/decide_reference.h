// An independent host reference of one decide step of one sequence, written from docs/strategies.md and
// SABER_SPEC.md §3-5 in the plainest C++ (std::sort with the spec's comparator, one loop per spec item), for the decide
// tests. It shares no code with kernels/decide_block.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "saber/saber.h"

namespace saber::reference {

/// One sequence's decode state; every array has G entries (canvas: the generation region only).
struct Sequence {
    int block = 0, block_step = 0, nfe = 0;
    bool done = false;
    std::vector<int32_t> canvas;
    std::vector<int8_t> decoded, commit_set;
    std::vector<float> commit_confidence, previous, delta;
};

/// The row results of a step ([G] each).
struct Rows {
    std::vector<int32_t> prediction;
    std::vector<float> confidence, token_confidence, metric;
};

/// One sequence's trace slot. The caller fills the arrays beforehand (a step writes tokens and confidences of commits
/// and deltas of re-masks only, and every event).
struct Trace {
    saber_trace_step header{};
    std::vector<int32_t> events, tokens;
    std::vector<float> confidences, deltas;
};

/// The k best of `candidates` (positions) by `score`: highest first, or lowest first when `lowest`; equal scores by
/// position ascending.
inline std::vector<int> best(std::vector<int> candidates, const std::vector<float> &score, int k, bool lowest) {
    std::sort(candidates.begin(), candidates.end(), [&](int i, int j) {
        if (score[i] != score[j]) return lowest ? score[i] < score[j] : score[i] > score[j];
        return i < j;
    });
    if (k < 0) k = 0;
    if (static_cast<size_t>(k) < candidates.size()) candidates.resize(static_cast<size_t>(k));
    return candidates;
}

/// Step `t` of sequence x (not done) with this step's rows. G = x.canvas.size(), K = block_length.
inline void step(const saber_decode_options &o, int K, int mask_id, int t, Sequence &x, const Rows &r, Trace *trace) {
    const int G = static_cast<int>(x.canvas.size());
    const int begin = x.block * K, end = begin + K;
    std::vector<int> committed, remasked;
    double tau = std::numeric_limits<double>::quiet_NaN();
    auto commit = [&](int i) {
        x.canvas[i] = r.prediction[i];
        x.decoded[i] = 1;
        committed.push_back(i);
    };
    auto all_decoded = [&](int from, int to) {
        for (int i = from; i < to; ++i)
            if (!x.decoded[i]) return false;
        return true;
    };
    // Spec §3 step 6, §5: finished when no mask is left, else the next block once the active region is complete.
    auto advance_when_complete = [&]() {
        if (all_decoded(0, G)) {
            x.done = true;
            return true;
        }
        if (all_decoded(0, end)) {
            x.block += 1;
            return true;
        }
        return false;
    };

    if (o.strategy == SABER_STRATEGY_SABER) {
        const bool paper = o.variant == SABER_VARIANT_PAPER;
        // 1-2
        for (int i = 0; i < G; ++i) {
            float a = -std::numeric_limits<float>::infinity();
            if (i < end) a = paper && x.decoded[i] ? r.token_confidence[i] : r.confidence[i];
            const float d = a - x.previous[i];
            x.delta[i] = std::isfinite(d) ? d : std::numeric_limits<float>::infinity();
            x.previous[i] = a;
        }
        // 3
        double sum = 0.0;
        int count = 0;
        for (int i = 0; i < end; ++i) {
            if (paper ? x.decoded[i] != 0 : x.commit_set[i] != 0) {
                sum += static_cast<double>(x.commit_confidence[i]);
                count += 1;
            }
        }
        tau = count == 0 ? 1.0 : sum / count;
        if (o.use_fixed_threshold) tau = static_cast<double>(o.fixed_threshold);
        // 4
        std::vector<int> draft, undecoded;
        for (int i = 0; i < end; ++i) {
            if (x.decoded[i]) continue;
            undecoded.push_back(i);
            if (static_cast<double>(r.confidence[i]) > tau) draft.push_back(i);
        }
        if (static_cast<int>(draft.size()) < o.min_tokens_per_step)
            draft = best(undecoded, r.confidence, std::min(o.min_tokens_per_step, static_cast<int>(undecoded.size())), false);
        // 5
        std::vector<bool> in_draft(G, false);
        for (int i : draft) {
            commit(i);
            x.commit_confidence[i] = r.confidence[i];
            x.commit_set[i] = 1;
            in_draft[i] = true;
        }
        // 6-7
        if (!advance_when_complete() && o.backtracking) {
            const int d = static_cast<int>(draft.size()), n = o.min_tokens_per_step, mu = o.remask_divisor;
            const int m = paper ? std::min(std::max(1, d / mu), d - 1) : std::min(std::max(n / 2, (d + mu - 1) / mu), d - 1);
            if (m > 0) {
                std::vector<int> candidates;
                for (int i = 0; i < end; ++i)
                    if (x.decoded[i] && !(paper && in_draft[i])) candidates.push_back(i);
                for (int i : best(candidates, x.delta, m, true)) {
                    x.canvas[i] = mask_id;
                    x.decoded[i] = 0;
                    if (paper) x.commit_set[i] = 0;
                    remasked.push_back(i);
                }
            }
        }
    } else if (o.strategy == SABER_STRATEGY_LOW_CONFIDENCE) {
        const int blocks = G / K, s = o.steps / blocks, k0 = K, j = x.block_step;
        const int quota = k0 / s + (j < k0 % s ? 1 : 0);
        std::vector<int> masked;
        for (int i = begin; i < end; ++i)
            if (!x.decoded[i]) masked.push_back(i);
        for (int i : best(masked, r.metric, quota, false)) commit(i);
        if (j + 1 == s) {
            x.block_step = 0;
            x.block += 1;
            if (x.block == blocks) x.done = true;
        } else {
            x.block_step = j + 1;
        }
    } else if (o.strategy == SABER_STRATEGY_FACTOR) {
        // Rank the block's masked positions; walk the ranks until the first i >= 2 with c_i < 1 - factor / (i + 1).
        std::vector<int> masked;
        for (int i = begin; i < end; ++i)
            if (!x.decoded[i]) masked.push_back(i);
        const int M = static_cast<int>(masked.size());
        const std::vector<int> ranked = best(masked, r.confidence, M, false);
        int passed = M > 0 ? 1 : 0;   // rank 1 always passes
        while (passed < M) {
            const int rank = passed + 1;
            const double bar = 1.0 - static_cast<double>(o.factor) / static_cast<double>(rank + 1);
            if (static_cast<double>(r.confidence[ranked[passed]]) < bar) break;
            passed += 1;
        }
        // The released code commits every masked position when only the last rank fails.
        const int k = passed == M - 1 ? M : passed;
        for (int j = 0; j < k; ++j) commit(ranked[j]);
        advance_when_complete();
    } else {
        std::vector<int> masked, draft;
        for (int i = begin; i < end; ++i) {
            if (x.decoded[i]) continue;
            masked.push_back(i);
            if (r.confidence[i] >= o.threshold) draft.push_back(i);
        }
        if (draft.empty()) draft = best(masked, r.confidence, 1, false);
        for (int i : draft) commit(i);
        advance_when_complete();
    }

    x.nfe += 1;
    if (trace == nullptr) return;
    trace->header = saber_trace_step{t, static_cast<int32_t>(committed.size()), static_cast<int32_t>(remasked.size()), 0, tau};
    std::fill(trace->events.begin(), trace->events.end(), 0);
    for (int i : committed) {
        trace->events[i] |= SABER_TRACE_COMMITTED;
        trace->tokens[i] = r.prediction[i];
        trace->confidences[i] = r.confidence[i];
    }
    for (int i : remasked) {
        trace->events[i] |= SABER_TRACE_REMASKED;
        trace->deltas[i] = x.delta[i];
    }
}

/// The status after a step of a batch: steps done (or the failed step) and the sequences still active.
inline saber_decode_status status(int steps, int active, unsigned long long error, int error_step) {
    saber_decode_status s{};
    s.steps = steps;
    s.active_sequences = active;
    if (error != ~0ull) {
        s.error = SABER_ERROR_INVALID_LOGITS;
        s.error_step = error_step;
        s.error_sequence = static_cast<int32_t>(error >> 42);
        s.error_position = static_cast<int32_t>((error >> 21) & 0x1FFFFF);
        s.error_vocabulary_index = static_cast<int32_t>(error & 0x1FFFFF);
    }
    return s;
}

/// The row plan (kernels/row_plan.h) of a batch: exclusive prefix of each sequence's candidate rows, then the total.
inline std::vector<long long> row_offsets(const saber_decode_options &o, int K, const std::vector<Sequence> &batch) {
    std::vector<long long> offsets(batch.size() + 1, 0);
    for (size_t b = 0; b < batch.size(); ++b) {
        long long rows = 0;
        if (!batch[b].done) rows = o.strategy == SABER_STRATEGY_SABER ? static_cast<long long>(batch[b].block + 1) * K : K;
        offsets[b + 1] = offsets[b] + rows;
    }
    return offsets;
}

}  // namespace saber::reference
