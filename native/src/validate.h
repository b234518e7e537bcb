#pragma once

#include "saber/saber.h"

namespace saber {

/// Spec §7 checks of options, vocabulary and mask id; sets the last error and returns its status.
saber_status validate_options(const saber_decode_options &options, int32_t vocabulary, int32_t mask_id);

/// Checks the prompts of a batch against a vocabulary and mask id.
saber_status validate_prompts(int32_t batch, const int32_t *prompt_tokens, const int32_t *prompt_lengths, int32_t vocabulary,
                              int32_t mask_id);

}  // namespace saber
