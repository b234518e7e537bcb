// Publishing a step's status to the host: the device copy (s.status) and the seqlock-guarded mapped pinned block
// (s.host_status, decode_state.h's HostStatus) that saber_decode_poll and saber_decode_query read. The device writes it
// itself at the end of every step, so that it is current after a CUDA-graph replay too.
#pragma once

#include "decode_state.h"

namespace saber {

#if defined(__CUDACC__)
/// Called by one thread, once per finished step (good or failed), after the step's state is final.
__device__ inline void publish_status(const DecodeState &s, const saber_decode_status &status) {
    *s.status = status;
    const unsigned long long finished = *s.finished_steps + 1;
    *s.finished_steps = finished;
    if (s.host_status == nullptr) return;
    volatile HostStatus *host = s.host_status;
    host->version = 2 * finished - 1;   // odd: being written
    __threadfence_system();
    host->status.steps = status.steps;
    host->status.active_sequences = status.active_sequences;
    host->status.error = status.error;
    host->status.error_step = status.error_step;
    host->status.error_sequence = status.error_sequence;
    host->status.error_position = status.error_position;
    host->status.error_vocabulary_index = status.error_vocabulary_index;
    __threadfence_system();
    host->version = 2 * finished;       // even: complete
}
#endif

}  // namespace saber
