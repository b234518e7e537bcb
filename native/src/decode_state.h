// The device-resident state of a batch decode, passed by value to every step kernel. All pointers
// are device memory owned by the decode (src/device/decode.cu); the layout of each array is noted beside it.
#pragma once

#include <stdint.h>

#include "saber/saber.h"

namespace saber {

/// No bad logit seen: the error key's initial value.
constexpr unsigned long long kNoError = ~0ull;

/// Orders bad logits by (sequence, position, vocabulary index), so atomicMin keeps the first one.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline constexpr unsigned long long error_key(int sequence, int position, int v) {
    return (static_cast<unsigned long long>(sequence) << 42) | (static_cast<unsigned long long>(position) << 21) |
           static_cast<unsigned long long>(v);
}

/// The status block the host reads (mapped pinned memory): `version` is the number of steps finished, and the status
/// after step f is in slots[f % 2]. The device writes a slot, then (after a system fence) the version; a step's writes
/// are visible before the next kernel's, so the slot it overwrites next was published two versions earlier. A reader
/// that sees the same version before and after copying slots[version % 2] has a consistent copy (kernels/status.h writes
/// it, device/decode_status.cu reads it).
struct HostStatus {
    unsigned long long version;
    saber_decode_status slots[2];
};

struct DecodeState {
    saber_decode_options options;
    int32_t batch;
    int32_t generation;   // G
    int32_t block_length; // K
    int32_t length;       // row pitch: max prompt length + G
    int32_t vocabulary;   // V
    int32_t mask_id;
    int32_t trace_capacity;
    int32_t row_chunks;        // exact::kChunk-id chunks per logits row: ceil(V / kChunk)
    int32_t row_splits;        // blocks per logits row in the fast row pass (1: no split)
    int32_t row_split_chunks;  // chunks each split reads (the last split fewer); splits cut rows only between chunks
    int32_t row_grid;          // blocks of a fast row-pass launch: whole waves (SMs x resident blocks), fixed at create

    // Per sequence [batch].
    int32_t *prompt_length;
    int32_t *block;        // active block index
    int32_t *block_step;   // low-confidence: steps taken in the active block
    int32_t *nfe;
    int32_t *done;

    int32_t *canvas;       // [batch, length]

    // Per generation position [batch, G].
    int8_t *decoded;
    int8_t *commit_set;    // f is set
    int8_t *in_draft;      // scratch: drafted this step
    int8_t *selected;      // scratch: chosen by a top-k / bottom-k selection
    float *commit_confidence;  // f
    float *previous;       // cprev
    float *delta;          // Δ of this step
    int32_t *prediction;   // row results of this step
    float *confidence;     // c
    float *token_confidence;   // q (paper variant, decoded positions)
    float *metric;         // low-confidence ranking value
    void *chunk_partials;  // scratch [batch, G, row_chunks] exact::ChunkPartial of the fast row pass
    void *split_partials;  // scratch [batch, G, row_splits] of the split row pass's per-split results; null when row_splits == 1
    unsigned int *split_arrivals;  // [batch, G] the row's splits that arrived this step (kernels/row_confidence.cu's
                                   // finish_split_item); the last to arrive resets it (zeroed at create); null when
                                   // row_splits == 1

    // Rows of the next row pass (kernels/row_plan.h): [batch + 1] exclusive prefix of each sequence's candidate rows.
    long long *row_offsets;

    // Step bookkeeping.
    unsigned int *blocks_done;  // [1] decide blocks finished in this step; the last one finishes the step and resets it
    int32_t *step;         // [1] steps completed
    unsigned long long *error; // [1] error_key of the first bad logit, kNoError when none
    int32_t *error_step;   // [1] step of that logit
    saber_decode_status *status;   // [1] device copy of the status the host polls
    HostStatus *host_status;   // [1] mapped pinned host memory: the last finished step's status, written by the device
                               // after every step (kernels/status.h), so that polling works under CUDA-graph replay
    unsigned long long *finished_steps;  // [1] steps finished (good or failed): the count host_status was published for

    // Trace ring [trace_capacity, batch] and [trace_capacity, batch, G]; null when trace_capacity == 0.
    saber_trace_step *trace_steps;
    int32_t *trace_events;
    int32_t *trace_tokens;
    float *trace_confidences;
    float *trace_deltas;
};

}  // namespace saber
