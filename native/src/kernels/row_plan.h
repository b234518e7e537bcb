// Which logits rows the next row pass reads, sequence by sequence, as a prefix sum the row pass walks: so that its grid
// is whole waves of blocks over live rows only, not G x batch blocks most of which would read their flags and exit.
//
// Sequence b's candidate rows are a function of its state (docs/strategies.md): none when it is done; Saber tracks every
// position before the active block's end, (block + 1) K rows; the baselines score the active block's K positions (the
// row pass skips the decoded ones). row_offsets[b] is the exclusive prefix of the counts, row_offsets[batch] the total
// (64-bit: batch x G can pass 2^31).
// Written for step 1 by plan_rows_kernel (initialize) and after every step by the step's last decide block.
#pragma once

#include "decode_state.h"

namespace saber {

/// Candidate rows of a sequence with active block `block`.
__host__ __device__ inline int candidate_rows(const saber_decode_options &o, int block_length, bool done, int block) {
    if (done) return 0;
    return o.strategy == SABER_STRATEGY_SABER ? (block + 1) * block_length : block_length;
}

/// Generation position of a sequence's candidate row j (j < candidate_rows).
__host__ __device__ inline int candidate_position(const saber_decode_options &o, int block_length, int block, int j) {
    return o.strategy == SABER_STRATEGY_SABER ? j : block * block_length + j;
}

/// The sequence whose candidate rows hold row r (0 <= r < row_offsets[batch]): the last b with row_offsets[b] <= r.
__host__ __device__ inline int sequence_of_row(const long long *row_offsets, int batch, long long r) {
    int low = 0, high = batch - 1;   // row_offsets[low] <= r always holds (row_offsets[0] = 0)
    while (low < high) {
        const int mid = (low + high + 1) / 2;
        if (row_offsets[mid] <= r) low = mid;
        else high = mid - 1;
    }
    return low;
}

#if defined(__CUDACC__)
/// Writes s.row_offsets from s.done and s.block, and returns the sequences not done (to every thread), so that the
/// step's bookkeeping needs no second pass over done. Every thread of one block calls it (any block size up to 1024, a
/// multiple of 32); the caller makes the other blocks' writes of done/block visible first (__threadfence before the
/// last-block handshake).
__device__ inline int plan_rows(const DecodeState &s) {
    __shared__ long long warp_totals[32];
    __shared__ long long carry;
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    int active = 0;
    if (threadIdx.x == 0) carry = 0;
    __syncthreads();
    for (int base = 0; base < s.batch; base += blockDim.x) {
        const int b = base + static_cast<int>(threadIdx.x);
        const bool live = b < s.batch && !s.done[b];
        const long long count = live ? candidate_rows(s.options, s.block_length, false, s.block[b]) : 0;
        long long inclusive = count;
        for (int offset = 1; offset < 32; offset <<= 1) {
            const long long other = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
            if (lane >= offset) inclusive += other;
        }
        if (lane == 31) warp_totals[warp] = inclusive;
        active += __syncthreads_count(live);   // the barrier the warp totals need, counting the live sequences
        long long before = carry;
        for (int w = 0; w < warp; ++w) before += warp_totals[w];
        if (b < s.batch) s.row_offsets[b] = before + inclusive - count;
        __syncthreads();
        if (threadIdx.x == 0) {
            long long total = 0;
            for (int w = 0; w < warps; ++w) total += warp_totals[w];
            carry += total;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) s.row_offsets[s.batch] = carry;
    return active;
}
#endif

}  // namespace saber
