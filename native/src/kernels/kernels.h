// Launchers of the step kernels; each queues work on `stream` and returns the launch status.
#pragma once

#include <cuda_runtime.h>

#include "decode_state.h"

namespace saber {

/// Row confidence (kernels/row_confidence.cu): one pass over each active logits row.
cudaError_t launch_row_confidence(const DecodeState &state, const void *logits, int32_t dtype, cudaStream_t stream);

/// Decide (kernels/decide.cu): the strategy's step rule, one block per sequence, then the step's
/// bookkeeping (step counter, NFE, done flags, status for the host).
cudaError_t launch_decide(const DecodeState &state, cudaStream_t stream);

}  // namespace saber
