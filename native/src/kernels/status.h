// Publishing a step's status to the host: the device copy (s.status) and the double-buffered mapped pinned block
// (s.host_status, decode_state.h's HostStatus) that saber_decode_poll and saber_decode_query read. The device writes it
// itself at the end of every step, so that it is current after a CUDA-graph replay too.
#pragma once

#include "decode_state.h"

namespace saber {

#if defined(__CUDACC__)
#define SABER_STATUS_FN __host__ __device__ inline
#else
#define SABER_STATUS_FN inline
#endif

/// Copies a status field by field: a whole-struct assignment cannot read or write a volatile (mapped) one.
template <typename To, typename From>
SABER_STATUS_FN void copy_status(To &to, const From &from) {
    to.steps = from.steps;
    to.active_sequences = from.active_sequences;
    to.error = from.error;
    to.error_step = from.error_step;
    to.error_sequence = from.error_sequence;
    to.error_position = from.error_position;
    to.error_vocabulary_index = from.error_vocabulary_index;
}

/// Called by one thread, once per finished step (good or failed), after the step's state is final: the slot of step f
/// (decode_state.h's HostStatus), one system fence, then the version. The host tests run it on an emulated block (no
/// fence there).
SABER_STATUS_FN void publish_status(const DecodeState &s, const saber_decode_status &status) {
    *s.status = status;
    const unsigned long long finished = *s.finished_steps + 1;
    *s.finished_steps = finished;
    if (s.host_status == nullptr) return;
    volatile HostStatus *host = s.host_status;
    copy_status(host->slots[finished % 2], status);
#if defined(__CUDA_ARCH__)
    __threadfence_system();   // the slot before the version, as the host sees them
#endif
    host->version = finished;
}

}  // namespace saber
