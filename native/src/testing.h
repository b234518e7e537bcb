// Internal hooks for the device tests (not part of the C ABI): read and poison a decode's per-row
// results of the last step, so that kernels are checked on fresh outputs.
#pragma once

#include <vector>

#include "saber/saber.h"

namespace saber::testing {

struct RowResults {
    std::vector<int32_t> prediction;
    std::vector<float> confidence, token_confidence, metric;
};

/// Fills every row result with 0xFF bytes (prediction -1, NaN floats).
saber_status poison_rows(saber_decode decode);

/// Copies the row results ([batch, G] each) of the last step.
saber_status read_rows(saber_decode decode, RowResults &out);

/// Queues only the row-confidence kernel of a step (for benchmarks).
saber_status launch_rows(saber_decode decode, const void *device_logits, int32_t dtype);

/// Puts a decode back in its initial state (canvases = prompts + masks, no step taken), synchronously.
saber_status reset(saber_decode decode);

}  // namespace saber::testing
