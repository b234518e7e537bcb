// Decide: the step rule of each strategy (docs/strategies.md) and the step's bookkeeping, in one launch per step.
//
// One block per sequence runs decide::decide_sequence (kernels/decide_block.h, the same code the host tests run on an
// emulated one-thread block). For G <= 1024 the sequence's arrays are staged in shared memory: loaded once, decided
// there, written back once; larger G (up to 2^20) decides in the state's global arrays with the same code. Selections
// sort 64-bit (score rank, position) keys with a bitonic network and take the first k, so equal scores go by position
// ascending, exactly the spec's order. tau has the CPU's bits: the position-order double sum, which is an exact integer
// sum when every f is 0 or at least 2^-20 (then summed by the block), else one thread's sum in position order.
//
// Every block, also a done sequence's or one of a failed step, then takes part in the last-block handshake: the block
// that finishes last advances the step counter (or records the failed step), writes the status (device copy and mapped
// host copy), writes the next step's row plan (kernels/row_plan.h) and resets the handshake counter, so a graph replay
// needs no host reset.
#include "decide_block.h"
#include "kernels.h"
#include "row_plan.h"

namespace saber {
namespace {

// Block size: half the sort's width, at least 128 and at most 512 threads. A bitonic stage over pow2_at_least(G) keys
// compares pow2_at_least(G) / 2 pairs, so for G <= 1024 every thread does one compare-exchange per stage (the sorts are
// most of a step's barriers, and a stage's latency is one shared load/compare/store chain) and stages at most two
// positions; 512 threads cover G = 1024 in one pass. The block is one per sequence (a batch of 8 fills 8 SMs whatever
// its size), so more threads only shorten the critical path; fewer threads for small G keep barriers cheap. The
// global-memory path (G > 1024) uses 512.
constexpr int kMaxThreads = 512;
constexpr int kMinThreads = 128;
constexpr int kShared = decide::kSharedPositions;

int threads_for(int generation) {
    if (generation > kShared) return kMaxThreads;
    return decide::imin(kMaxThreads, decide::imax(kMinThreads, decide::pow2_at_least(generation) / 2));
}

/// A sequence's working arrays in shared memory: 8 + 3 x 4 + 4 x 1 = 24 bytes per position, 24 KiB for G = 1024.
struct SharedSequence {
    unsigned long long keys[kShared];
    float score[kShared];
    float delta[kShared];
    float commit_confidence[kShared];
    int8_t decoded[kShared];
    int8_t commit_set[kShared];
    int8_t drafted[kShared];
    int8_t remasked[kShared];
    double threshold;

    __device__ decide::Scratch scratch() {
        decide::Scratch w;
        w.staged = true;
        w.decoded = decoded;
        w.commit_set = commit_set;
        w.drafted = drafted;
        w.remasked = remasked;
        w.score = score;
        w.delta = delta;
        w.commit_confidence = commit_confidence;
        w.keys = keys;
        w.threshold = &threshold;
        return w;
    }
};

/// The real block as decide_block.h's policy.
struct DeviceBlock {
    long long (*totals)[32];   // [4][32] in shared memory: per-warp sums; rows 0 and 1 alternate between sum()s, rows 2
                               // and 3 hold the staged sums
    int row = 0;

    __device__ int thread() const { return static_cast<int>(threadIdx.x); }
    __device__ int threads() const { return static_cast<int>(blockDim.x); }
    __device__ void sync() { __syncthreads(); }
    __device__ void sync_warp() { __syncwarp(); }

    __device__ static long long warp_sum(long long v) {
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
        return v;
    }
    __device__ long long total(const long long *warp_sums) const {
        long long sum = 0;
        for (int w = 0; w < static_cast<int>(blockDim.x) / 32; ++w) sum += warp_sums[w];
        return sum;
    }

    /// Warp sums by shuffles, then one barrier and every thread adds the warp sums. The rows alternate: a thread writes a
    /// row again only two sums later, after the barrier of the sum between, which every thread reaches only once it has
    /// read that row. Integer sums: the same in any order.
    __device__ long long sum(long long v) {
        v = warp_sum(v);
        long long *warp_sums = totals[row];
        row ^= 1;
        if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x / 32] = v;
        __syncthreads();
        return total(warp_sums);
    }

    /// Staged sums (written once per step, by load()): the warp sums now, the total after the caller's next barrier.
    __device__ void stage(int slot, long long v) {
        v = warp_sum(v);
        if ((threadIdx.x & 31) == 0) totals[2 + slot][threadIdx.x / 32] = v;
    }
    __device__ long long staged(int slot) const { return total(totals[2 + slot]); }
};

__global__ void __launch_bounds__(kMaxThreads) decide_kernel(DecodeState s) {
    __shared__ SharedSequence shared;
    __shared__ long long totals[4][32];
    __shared__ bool last;
    DeviceBlock block{totals};
    const int b = static_cast<int>(blockIdx.x);

    // A bad logit anywhere in this step: nothing changes (the host sees the error when it polls).
    const bool stepping = *s.error == kNoError && !s.done[b];
    if (stepping) {
        const decide::Scratch w = s.generation <= kShared ? shared.scratch() : decide::state_scratch(s, b, &shared.threshold);
        decide::decide_sequence(block, s, b, w);
    }

    // Last-block handshake: this block's writes (done and block included) are visible before it is counted. The counter's
    // top bit says that some block took a step (set before that block is counted; the batch is below 2^22, so the count
    // never reaches it).
    constexpr unsigned kStepped = 0x80000000u;
    __threadfence();
    __syncthreads();
    __shared__ bool any_stepped;
    if (threadIdx.x == 0) {
        if (stepping) atomicOr(s.blocks_done, kStepped);
        const unsigned before = atomicAdd(s.blocks_done, 1u);
        last = (before & ~kStepped) == gridDim.x - 1;
        any_stepped = stepping || (before & kStepped) != 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();   // and every other block's writes are visible to this one's reads

    // The next step's row plan, and in the same pass over done the sequences still active, then the status.
    const int active = plan_rows(s);
    decide::finish_step(block, s, any_stepped, active);
    if (threadIdx.x == 0) *s.blocks_done = 0;   // ready for the next step, no host reset
}

}  // namespace

cudaError_t launch_decide(const DecodeState &state, cudaStream_t stream) {
    decide_kernel<<<static_cast<unsigned>(state.batch), static_cast<unsigned>(threads_for(state.generation)), 0, stream>>>(state);
    return cudaGetLastError();
}

}  // namespace saber
