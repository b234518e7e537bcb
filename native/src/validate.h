#pragma once

#include <cstdint>

#include "exact_math.h"
#include "saber/saber.h"

namespace saber {

/// Spec §7 checks of options, vocabulary and mask id; sets the last error and returns its status.
saber_status validate_options(const saber_decode_options &options, int32_t vocabulary, int32_t mask_id);

/// Checks the prompts of a batch against a vocabulary and mask id.
saber_status validate_prompts(int32_t batch, const int32_t *prompt_tokens, const int32_t *prompt_lengths, int32_t vocabulary,
                              int32_t mask_id);

/// Element counts of a decode's device arrays, computed in 64 bits from arguments that validate_options and
/// validate_prompts accepted (batch * G alone can pass 2^31: 65535 x 2^20).
struct DecodeExtent {
    uint64_t positions;          // batch * G: per-position state and row results
    uint64_t canvas;             // batch * length
    uint64_t trace_slots;        // trace_capacity * batch
    uint64_t trace_cells;        // trace_slots * G
    uint64_t first_block_rows;   // batch * K: the active rows of the first block (a lower bound for every strategy)
    int32_t split_rows;          // first_block_rows saturated to INT32_MAX: what the row pass's split is planned for
};

/// Fills `out` with overflow-checked 64-bit products; SABER_ERROR_INVALID_ARGUMENT naming the product when an array
/// would hold more than 2^56 elements (no device holds it; the bytes would overflow 64 bits soon after).
saber_status plan_decode_extent(int32_t batch, int32_t generation, int32_t block_length, int32_t length, int32_t trace_capacity,
                                DecodeExtent &out);

/// Checks the arguments of saber_exact_eval(_device): a known function, non-null arrays, every input in its domain.
saber_status validate_exact_inputs(int32_t function, const float *inputs, const void *outputs, int64_t count);

/// Checks the arguments of saber_exact_row(_device) besides the device context.
saber_status validate_exact_row(const float *row, int32_t vocabulary, int32_t mask_id, int32_t token, int32_t metric, float temperature,
                                const int32_t *out_prediction, const int32_t *out_bad_index, const float *out_values);

/// Writes a row's results to saber_exact_row(_device)'s out parameters (checked by validate_exact_row).
void export_row_result(const exact::RowResult &result, int32_t *out_prediction, int32_t *out_bad_index, float *out_values);

/// Checks the arguments of saber_exact_fixed_terms(_device): non-null arrays, every input in [0, 1].
saber_status validate_fixed_inputs(const float *inputs, const void *outputs, int64_t count);

/// Checks the arguments of saber_context_widen_ids besides the context: count >= 0 (and count x 8 bytes within 63 bits);
/// with count > 0, non-null pointers, a 4-byte aligned source, an 8-byte aligned destination and ranges that do not
/// overlap. No device call: the addresses are only compared.
saber_status validate_widen_ids(const void *device_source, const void *device_destination, int64_t count);

/// The oldest compute capability (major version) the kernels run on: sm_80.
constexpr int kMinimumComputeMajor = 8;

/// Checks a device's description (name and compute capability, as cudaGetDeviceProperties gives them) against
/// kMinimumComputeMajor: SABER_ERROR_NO_DEVICE naming the device, its capability and the need. No device call, so
/// tests can describe devices they do not have.
saber_status validate_device_capability(int32_t device, const char *name, int major, int minor);

}  // namespace saber
