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

}  // namespace saber::testing
