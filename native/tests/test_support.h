// What the native test binaries share: decode options of the common shapes (device_test.h adds the device fixture).
#pragma once

#include "saber/saber.h"

namespace saber_tests {

/// Saber options (reference variant, backtracking on) of generation length G, block length K, n and mu.
inline saber_decode_options saber_options(int generation, int block, int n, int mu) {
    saber_decode_options o{};
    o.generation_length = generation;
    o.block_length = block;
    o.strategy = SABER_STRATEGY_SABER;
    o.variant = SABER_VARIANT_REFERENCE;
    o.min_tokens_per_step = n;
    o.remask_divisor = mu;
    o.backtracking = 1;
    return o;
}

}  // namespace saber_tests
