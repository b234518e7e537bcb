// Entry points that need no device: version, errors, struct layouts, validation, random draws.
#include <cstddef>
#include <cstdio>
#include <string>

#include "common.h"
#include "exact_math.h"
#include "philox.h"
#include "validate.h"

namespace saber {
namespace {
thread_local std::string last_error;
thread_local const char *current_entry_point = "";
}

saber_status fail(saber_status status, const char *format, ...) {
    char buffer[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(buffer, sizeof buffer, format, args);
    va_end(args);
    last_error = buffer;
    return status;
}

void begin_call(const char *name) {
    last_error.clear();
    current_entry_point = name;
}

const char *entry_point() { return current_entry_point; }

}  // namespace saber

#define SABER_OFFSET(type, field) static_cast<uint32_t>(offsetof(type, field))

namespace {

const char *const options_names[] = {"generation_length", "block_length", "strategy", "variant", "min_tokens_per_step",
                                     "remask_divisor", "backtracking", "use_fixed_threshold", "fixed_threshold", "steps",
                                     "metric", "threshold", "temperature", "factor", "seed"};
const uint32_t options_offsets[] = {
    SABER_OFFSET(saber_decode_options, generation_length), SABER_OFFSET(saber_decode_options, block_length),
    SABER_OFFSET(saber_decode_options, strategy),          SABER_OFFSET(saber_decode_options, variant),
    SABER_OFFSET(saber_decode_options, min_tokens_per_step), SABER_OFFSET(saber_decode_options, remask_divisor),
    SABER_OFFSET(saber_decode_options, backtracking),      SABER_OFFSET(saber_decode_options, use_fixed_threshold),
    SABER_OFFSET(saber_decode_options, fixed_threshold),   SABER_OFFSET(saber_decode_options, steps),
    SABER_OFFSET(saber_decode_options, metric),            SABER_OFFSET(saber_decode_options, threshold),
    SABER_OFFSET(saber_decode_options, temperature),       SABER_OFFSET(saber_decode_options, factor),
    SABER_OFFSET(saber_decode_options, seed)};

const char *const status_names[] = {"steps", "active_sequences", "error", "error_step", "error_sequence", "error_position",
                                    "error_vocabulary_index"};
const uint32_t status_offsets[] = {
    SABER_OFFSET(saber_decode_status, steps),          SABER_OFFSET(saber_decode_status, active_sequences),
    SABER_OFFSET(saber_decode_status, error),          SABER_OFFSET(saber_decode_status, error_step),
    SABER_OFFSET(saber_decode_status, error_sequence), SABER_OFFSET(saber_decode_status, error_position),
    SABER_OFFSET(saber_decode_status, error_vocabulary_index)};

const char *const trace_names[] = {"step", "committed", "remasked", "reserved", "tau"};
const uint32_t trace_offsets[] = {SABER_OFFSET(saber_trace_step, step), SABER_OFFSET(saber_trace_step, committed),
                                  SABER_OFFSET(saber_trace_step, remasked), SABER_OFFSET(saber_trace_step, reserved),
                                  SABER_OFFSET(saber_trace_step, tau)};

const char *const layout_names[] = {"name", "size", "field_count", "field_names", "field_offsets"};
const uint32_t layout_offsets[] = {SABER_OFFSET(saber_struct_layout, name), SABER_OFFSET(saber_struct_layout, size),
                                   SABER_OFFSET(saber_struct_layout, field_count), SABER_OFFSET(saber_struct_layout, field_names),
                                   SABER_OFFSET(saber_struct_layout, field_offsets)};

template <size_t N>
constexpr uint32_t count(const char *const (&)[N]) { return static_cast<uint32_t>(N); }

const saber_struct_layout layouts[] = {
    {"saber_decode_options", sizeof(saber_decode_options), count(options_names), options_names, options_offsets},
    {"saber_decode_status", sizeof(saber_decode_status), count(status_names), status_names, status_offsets},
    {"saber_trace_step", sizeof(saber_trace_step), count(trace_names), trace_names, trace_offsets},
    {"saber_struct_layout", sizeof(saber_struct_layout), count(layout_names), layout_names, layout_offsets},
};

}  // namespace

extern "C" {

SABER_API int32_t saber_abi_version(void) { return SABER_ABI_VERSION; }

SABER_API int32_t saber_built_with_cuda(void) {
#if defined(SABER_WITH_CUDA)
    return 1;
#else
    return 0;
#endif
}

SABER_API const char *saber_last_error(void) { return saber::last_error.c_str(); }

SABER_API saber_status saber_struct_layouts(const saber_struct_layout **out_layouts, int32_t *out_count) {
    return saber::guarded(__func__, [&] {
        SABER_REQUIRE_NOT_NULL(out_layouts);
        SABER_REQUIRE_NOT_NULL(out_count);
        *out_layouts = layouts;
        *out_count = static_cast<int32_t>(sizeof layouts / sizeof layouts[0]);
        return SABER_OK;
    });
}

SABER_API saber_status saber_validate_options(const saber_decode_options *options, int32_t vocabulary, int32_t mask_id) {
    return saber::guarded(__func__, [&] {
        SABER_REQUIRE_NOT_NULL(options);
        return saber::validate_options(*options, vocabulary, mask_id);
    });
}

SABER_API uint32_t saber_random_bits(uint64_t seed, int32_t step, int32_t sequence, int32_t position, int32_t v) {
    return saber::random_bits(seed, step, sequence, position, v);
}

SABER_API saber_status saber_exact_eval(int32_t function, const float *inputs, float *outputs, int64_t count) {
    return saber::guarded(__func__, [&] {
        if (const saber_status s = saber::validate_exact_inputs(function, inputs, outputs, count)) return s;
        for (int64_t i = 0; i < count; ++i) outputs[i] = saber::exact::evaluate(function, inputs[i]);
        return SABER_OK;
    });
}

SABER_API saber_status saber_exact_row(const float *row, int32_t vocabulary, int32_t mask_id, int32_t token, int32_t metric, float temperature,
                                       uint64_t seed, int32_t step, int32_t sequence, int32_t position, int32_t *out_prediction,
                                       int32_t *out_bad_index, float *out_values) {
    return saber::guarded(__func__, [&] {
        if (const saber_status s = saber::validate_exact_row(row, vocabulary, mask_id, token, metric, temperature, out_prediction, out_bad_index,
                                                             out_values))
            return s;
        saber::export_row_result(saber::exact::row_reference(row, vocabulary, mask_id, token, metric, temperature, seed, step, sequence, position),
                                 out_prediction, out_bad_index, out_values);
        return SABER_OK;
    });
}

SABER_API saber_status saber_exact_fixed_terms(const float *inputs, uint64_t *outputs, int64_t count) {
    return saber::guarded(__func__, [&] {
        if (const saber_status s = saber::validate_fixed_inputs(inputs, outputs, count)) return s;
        for (int64_t i = 0; i < count; ++i) outputs[i] = saber::exact::fixed_term(inputs[i]);
        return SABER_OK;
    });
}

}  // extern "C"
