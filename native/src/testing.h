// Internal hooks for the device tests (not part of the C ABI): read and poison a decode's per-row
// results of the last step, so that kernels are checked on fresh outputs.
#pragma once

#include <vector>

#include "kernels/kernels.h"
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

/// Queues only the row pass of a step, fast or reference (for the fast-vs-reference tests and benchmarks).
saber_status launch_rows(saber_decode decode, const void *device_logits, int32_t dtype, RowPath path = RowPath::Fast);

/// Overrides the fast row pass's split (blocks per row, >= 1; about equal chunks), synchronously.
saber_status set_row_splits(saber_decode decode, int32_t splits);

/// The fast row pass's blocks per row (0 for a dead handle).
int32_t row_splits(saber_decode decode);

/// Puts a decode back in its initial state (canvases = prompts + masks, no step taken), synchronously.
saber_status reset(saber_decode decode);

/// The decode's device state (device pointers, for tests that write and read its arrays themselves); zero for a dead handle.
DecodeState device_state(saber_decode decode);

/// Queues launch_decide alone (no row pass) on the decode's stream and waits for it.
saber_status decide(saber_decode decode);

/// The status the device last wrote to the decode's mapped pinned host block (zero for a dead handle).
HostStatus host_status(saber_decode decode);

/// Overwrites the decode's mapped pinned status block (for tests that start a step from a state of their own), synchronously.
saber_status set_host_status(saber_decode decode, const HostStatus &status);

}  // namespace saber::testing
