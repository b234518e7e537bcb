// Decide: the step rule of each strategy (docs/strategies.md), one block per sequence, reading the
// row results of this step. Selections rank every candidate against every other (score, then
// position), which is deterministic and simple; the per-step bookkeeping kernel then advances the
// step counter and writes the status block the host polls.
#include <cmath>

#include "kernels.h"
#include "status.h"

namespace saber {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000); }

/// One sequence's view of the state.
struct Sequence {
    const DecodeState &s;
    int index;       // b
    size_t base;     // b * G
    int32_t *canvas; // generation region of the canvas
    int end;         // active end, as a generation index
    int begin;       // start of the active block, as a generation index

    __device__ Sequence(const DecodeState &state, int b)
        : s(state), index(b), base(static_cast<size_t>(b) * state.generation),
          canvas(state.canvas + static_cast<size_t>(b) * state.length + state.prompt_length[b]),
          end((state.block[b] + 1) * state.block_length), begin(state.block[b] * state.block_length) {}
};

/// Block-wide count of positions g in [0, n) satisfying `predicate`. Integer atomics: order-independent.
template <typename Predicate>
__device__ int block_count(int n, Predicate predicate) {
    __shared__ int total;
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    int mine = 0;
    for (int g = threadIdx.x; g < n; g += blockDim.x) mine += predicate(g) ? 1 : 0;
    if (mine) atomicAdd(&total, mine);
    __syncthreads();
    const int result = total;
    __syncthreads();
    return result;
}

/// Marks in `selected` the k best candidates by `score` (descending, or ascending when `lowest`),
/// equal scores by position ascending. Candidates are g in [from, to) with candidate(g).
template <typename Candidate, typename Score>
__device__ void select_k(int8_t *selected, int n, int from, int to, int k, bool lowest, Candidate candidate, Score score) {
    for (int g = threadIdx.x; g < n; g += blockDim.x) {
        int8_t chosen = 0;
        if (g >= from && g < to && candidate(g) && k > 0) {
            const float mine = score(g);
            int rank = 0;
            for (int j = from; j < to && rank < k; ++j) {
                if (j == g || !candidate(j)) continue;
                const float other = score(j);
                const bool better = lowest ? other < mine : other > mine;
                if (better || (other == mine && j < g)) ++rank;
            }
            chosen = rank < k;
        }
        selected[g] = chosen;
    }
    __syncthreads();
}

struct Trace {
    saber_trace_step *header = nullptr;
    int32_t *events = nullptr;
    int32_t *tokens = nullptr;
    float *confidences = nullptr;
    float *deltas = nullptr;

    __device__ Trace(const DecodeState &s, int b, int step) {
        if (s.trace_capacity == 0) return;
        const size_t slot = static_cast<size_t>((step - 1) % s.trace_capacity) * s.batch + b;
        header = s.trace_steps + slot;
        events = s.trace_events + slot * s.generation;
        tokens = s.trace_tokens + slot * s.generation;
        confidences = s.trace_confidences + slot * s.generation;
        deltas = s.trace_deltas + slot * s.generation;
        for (int g = threadIdx.x; g < s.generation; g += blockDim.x) events[g] = 0;
        __syncthreads();
    }
    __device__ void committed(int g, int token, float confidence) const {
        if (!events) return;
        events[g] |= SABER_TRACE_COMMITTED;
        tokens[g] = token;
        confidences[g] = confidence;
    }
    __device__ void remasked(int g, float delta) const {
        if (!events) return;
        events[g] |= SABER_TRACE_REMASKED;
        deltas[g] = delta;
    }
    __device__ void finish(int step, int committed_count, int remasked_count, double tau) const {
        if (header && threadIdx.x == 0) *header = saber_trace_step{step, committed_count, remasked_count, 0, tau};
    }
};

/// Commits every position with in_draft set; returns how many.
__device__ int commit_draft(const Sequence &q, const Trace &trace, bool set_commit_confidence) {
    const DecodeState &s = q.s;
    for (int g = threadIdx.x; g < s.generation; g += blockDim.x) {
        const size_t at = q.base + g;
        if (!s.in_draft[at]) continue;
        q.canvas[g] = s.prediction[at];
        s.decoded[at] = 1;
        if (set_commit_confidence) {
            s.commit_confidence[at] = s.confidence[at];
            s.commit_set[at] = 1;
        }
        trace.committed(g, s.prediction[at], s.confidence[at]);
    }
    __syncthreads();
    return block_count(s.generation, [&](int g) { return s.in_draft[q.base + g] != 0; });
}

/// Spec step 6 / threshold rule: finishes the sequence or activates the next block when [0, end) is decoded.
__device__ bool advance_if_block_done(const Sequence &q) {
    const DecodeState &s = q.s;
    const int undecoded = block_count(q.end, [&](int g) { return !s.decoded[q.base + g]; });
    if (undecoded > 0) return false;
    if (threadIdx.x == 0) {
        if (q.end == s.generation) s.done[q.index] = 1;
        else s.block[q.index] += 1;
    }
    return true;
}

__device__ void saber_step(const Sequence &q, const Trace &trace, int step) {
    const DecodeState &s = q.s;
    const saber_decode_options &o = s.options;
    const bool paper = o.variant == SABER_VARIANT_PAPER;

    // 1-2: tracked confidence, its change, the new previous value.
    for (int g = threadIdx.x; g < s.generation; g += blockDim.x) {
        const size_t at = q.base + g;
        const float a = g >= q.end ? neg_inf() : paper && s.decoded[at] ? s.token_confidence[at] : s.confidence[at];
        const float d = a - s.previous[at];
        s.delta[at] = isfinite(d) ? d : pos_inf();
        s.previous[at] = a;
    }

    // 3: tau, summed in position order by one thread so that it matches the CPU bit for bit.
    __shared__ double threshold;
    if (threadIdx.x == 0) {
        double sum = 0.0;
        int count = 0;
        for (int g = 0; g < q.end; ++g) {
            const size_t at = q.base + g;
            if (paper ? s.decoded[at] : s.commit_set[at]) {
                sum += s.commit_confidence[at];
                ++count;
            }
        }
        const double tau = count == 0 ? 1.0 : sum / count;
        threshold = o.use_fixed_threshold ? static_cast<double>(o.fixed_threshold) : tau;
    }
    __syncthreads();
    const double tau = threshold;

    // 4: draft.
    for (int g = threadIdx.x; g < s.generation; g += blockDim.x) {
        const size_t at = q.base + g;
        s.in_draft[at] = g < q.end && !s.decoded[at] && static_cast<double>(s.confidence[at]) > tau;
    }
    __syncthreads();
    const int above = block_count(s.generation, [&](int g) { return s.in_draft[q.base + g] != 0; });
    if (above < o.min_tokens_per_step) {
        const int undecoded = block_count(q.end, [&](int g) { return !s.decoded[q.base + g]; });
        select_k(s.in_draft + q.base, s.generation, 0, q.end, min(o.min_tokens_per_step, undecoded), false,
                 [&](int g) { return !s.decoded[q.base + g]; }, [&](int g) { return s.confidence[q.base + g]; });
    }

    // 5-6: commit; finished or block complete (no re-masking).
    const int drafted = commit_draft(q, trace, true);
    int remasked = 0;
    if (!advance_if_block_done(q) && o.backtracking) {
        // 7: re-mask the m largest drops.
        const int n = o.min_tokens_per_step, mu = o.remask_divisor;
        const int m = paper ? min(max(1, drafted / mu), drafted - 1) : min(max(n / 2, (drafted + mu - 1) / mu), drafted - 1);
        if (m > 0) {
            auto candidate = [&](int g) { return s.decoded[q.base + g] && !(paper && s.in_draft[q.base + g]); };
            select_k(s.selected + q.base, s.generation, 0, q.end, m, true, candidate, [&](int g) { return s.delta[q.base + g]; });
            for (int g = threadIdx.x; g < s.generation; g += blockDim.x) {
                const size_t at = q.base + g;
                if (!s.selected[at]) continue;
                q.canvas[g] = s.mask_id;
                s.decoded[at] = 0;
                if (paper) s.commit_set[at] = 0;
                trace.remasked(g, s.delta[at]);
            }
            __syncthreads();
            remasked = block_count(s.generation, [&](int g) { return s.selected[q.base + g] != 0; });
        }
    }
    trace.finish(step, drafted, remasked, tau);
}

__device__ void low_confidence_step(const Sequence &q, const Trace &trace, int step) {
    const DecodeState &s = q.s;
    const int blocks = s.generation / s.block_length;
    const int steps_per_block = s.options.steps / blocks;
    const int block_step = s.block_step[q.index];
    const int k0 = s.block_length;   // every position of a block is masked when it starts
    const int quota = k0 / steps_per_block + (block_step < k0 % steps_per_block ? 1 : 0);
    select_k(s.in_draft + q.base, s.generation, q.begin, q.end, quota, false, [&](int g) { return !s.decoded[q.base + g]; },
             [&](int g) { return s.metric[q.base + g]; });
    const int committed = commit_draft(q, trace, false);
    if (threadIdx.x == 0) {
        if (block_step + 1 == steps_per_block) {
            s.block_step[q.index] = 0;
            s.block[q.index] += 1;
            if (s.block[q.index] == blocks) s.done[q.index] = 1;
        } else {
            s.block_step[q.index] = block_step + 1;
        }
    }
    trace.finish(step, committed, 0, nan(""));
}

__device__ void threshold_step(const Sequence &q, const Trace &trace, int step) {
    const DecodeState &s = q.s;
    const float theta = s.options.threshold;
    for (int g = threadIdx.x; g < s.generation; g += blockDim.x) {
        const size_t at = q.base + g;
        s.in_draft[at] = g >= q.begin && g < q.end && !s.decoded[at] && s.confidence[at] >= theta;
    }
    __syncthreads();
    if (block_count(s.generation, [&](int g) { return s.in_draft[q.base + g] != 0; }) == 0)
        select_k(s.in_draft + q.base, s.generation, q.begin, q.end, 1, false, [&](int g) { return !s.decoded[q.base + g]; },
                 [&](int g) { return s.confidence[q.base + g]; });
    const int committed = commit_draft(q, trace, false);
    advance_if_block_done(q);
    trace.finish(step, committed, 0, nan(""));
}

__global__ void __launch_bounds__(kThreads) decide_kernel(DecodeState s) {
    const int b = blockIdx.x;
    // A bad logit anywhere in this step: nothing changes (the host sees the error when it polls).
    if (*s.error != kNoError || s.done[b]) return;
    const int step = *s.step + 1;
    const Sequence q(s, b);
    const Trace trace(s, b, step);
    switch (s.options.strategy) {
        case SABER_STRATEGY_SABER: saber_step(q, trace, step); break;
        case SABER_STRATEGY_LOW_CONFIDENCE: low_confidence_step(q, trace, step); break;
        default: threshold_step(q, trace, step); break;
    }
    if (threadIdx.x == 0) s.nfe[b] += 1;
}

/// After every decide block: advance the step counter (or record the failed step) and fill the status.
__global__ void finish_step_kernel(DecodeState s) {
    saber_decode_status status{};
    const unsigned long long error = *s.error;
    if (error == kNoError) {
        *s.step += 1;
    } else if (*s.error_step == 0) {
        *s.error_step = *s.step + 1;
    }
    int active = 0;
    for (int b = 0; b < s.batch; ++b) active += s.done[b] ? 0 : 1;
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

}  // namespace

cudaError_t launch_decide(const DecodeState &state, cudaStream_t stream) {
    decide_kernel<<<static_cast<unsigned>(state.batch), kThreads, 0, stream>>>(state);
    finish_step_kernel<<<1, 1, 0, stream>>>(state);
    return cudaGetLastError();
}

}  // namespace saber
