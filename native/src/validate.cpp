#include "validate.h"

#include <cmath>
#include <limits>

#include "common.h"

namespace saber {

saber_status validate_options(const saber_decode_options &o, int32_t vocabulary, int32_t mask_id) {
    if (o.generation_length <= 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "generation_length G must be > 0; got %d", o.generation_length);
    // The limits of the C# API (DecodeOptions.MaxGenerationLength, LowConfidenceStrategy.MaxStepsPerPosition).
    constexpr int32_t max_generation_length = 1 << 20, max_steps_per_position = 16;
    if (o.generation_length > max_generation_length)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "generation_length G must be at most %d; got %d", max_generation_length,
                    o.generation_length);
    if (o.block_length <= 0 || o.generation_length % o.block_length != 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "block_length K must be > 0 and divide G=%d; got %d", o.generation_length,
                    o.block_length);
    if (!std::isfinite(o.temperature) || o.temperature < 0.0f)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "temperature T must be finite and >= 0; got %g", static_cast<double>(o.temperature));
    if (vocabulary <= 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "vocabulary V must be > 0; got %d", vocabulary);
    if (mask_id < 0 || mask_id >= vocabulary)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "mask id must lie in [0, V=%d); got %d", vocabulary, mask_id);
    auto threshold_ok = [](float theta) { return theta > 0.0f && theta <= 1.0f; };
    switch (o.strategy) {
        case SABER_STRATEGY_SABER:
            if (o.variant != SABER_VARIANT_REFERENCE && o.variant != SABER_VARIANT_PAPER)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "variant must be SABER_VARIANT_REFERENCE (0) or SABER_VARIANT_PAPER (1); got %d",
                            o.variant);
            if (o.min_tokens_per_step < 1)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "min_tokens_per_step n must be >= 1; got %d", o.min_tokens_per_step);
            if (o.remask_divisor < 1)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "remask_divisor mu must be >= 1; got %d", o.remask_divisor);
            if (o.use_fixed_threshold && !threshold_ok(o.fixed_threshold))
                return fail(SABER_ERROR_INVALID_ARGUMENT, "fixed_threshold theta must lie in (0, 1]; got %g",
                            static_cast<double>(o.fixed_threshold));
            return SABER_OK;
        case SABER_STRATEGY_LOW_CONFIDENCE: {
            const int32_t blocks = o.generation_length / o.block_length;
            if (o.steps <= 0 || o.steps % blocks != 0)
                return fail(SABER_ERROR_INVALID_ARGUMENT,
                            "steps S must be a positive multiple of the block count %d (G=%d, K=%d); got %d", blocks,
                            o.generation_length, o.block_length, o.steps);
            if (static_cast<int64_t>(o.steps) > static_cast<int64_t>(max_steps_per_position) * o.generation_length)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "steps S must be at most %d x G = %lld (steps past G commit nothing); got %d",
                            max_steps_per_position, static_cast<long long>(max_steps_per_position) * o.generation_length, o.steps);
            if (o.metric < SABER_METRIC_MAXPROB || o.metric > SABER_METRIC_RANDOM)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "metric must be a saber_metric (0..3); got %d", o.metric);
            return SABER_OK;
        }
        case SABER_STRATEGY_THRESHOLD:
            if (!threshold_ok(o.threshold))
                return fail(SABER_ERROR_INVALID_ARGUMENT, "threshold theta must lie in (0, 1]; got %g", static_cast<double>(o.threshold));
            return SABER_OK;
        case SABER_STRATEGY_FACTOR:
            if (!(std::isfinite(o.factor) && o.factor > 0.0f))
                return fail(SABER_ERROR_INVALID_ARGUMENT, "factor must be finite and > 0; got %g", static_cast<double>(o.factor));
            return SABER_OK;
        default:
            return fail(SABER_ERROR_INVALID_ARGUMENT, "strategy must be a saber_strategy (0..3); got %d", o.strategy);
    }
}

saber_status validate_prompts(int32_t batch, const int32_t *prompt_tokens, const int32_t *prompt_lengths, int32_t vocabulary,
                              int32_t mask_id) {
    // The row pass runs one CUDA grid row per sequence, and a grid's y dimension holds at most 65535.
    if (batch <= 0 || batch > 65535) return fail(SABER_ERROR_INVALID_ARGUMENT, "batch must lie in [1, 65535]; got %d", batch);
    SABER_REQUIRE_NOT_NULL(prompt_lengths);
    int64_t offset = 0;
    for (int32_t b = 0; b < batch; ++b) {
        const int32_t length = prompt_lengths[b];
        if (length < 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "prompt %d has negative length %d", b, length);
        if (length > 0 && prompt_tokens == nullptr)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "prompt_tokens is null but prompt %d has length %d", b, length);
        for (int32_t i = 0; i < length; ++i) {
            const int32_t token = prompt_tokens[offset + i];
            if (token < 0 || token >= vocabulary)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "prompt %d holds token %d at position %d, outside [0, V=%d)", b, token, i,
                            vocabulary);
            if (token == mask_id)
                return fail(SABER_ERROR_INVALID_ARGUMENT, "prompt %d holds the mask id %d at position %d", b, mask_id, i);
        }
        offset += length;
    }
    return SABER_OK;
}

saber_status plan_decode_extent(int32_t batch, int32_t generation, int32_t block_length, int32_t length, int32_t trace_capacity,
                                DecodeExtent &out) {
    out = DecodeExtent{};
    if (batch <= 0 || generation <= 0 || block_length <= 0 || length <= 0 || trace_capacity < 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "decode extent: batch %d, G %d, K %d and length %d must be > 0 and trace_capacity %d >= 0",
                    batch, generation, block_length, length, trace_capacity);
    constexpr uint64_t max_elements = uint64_t{1} << 56;
    // a * b in 64 bits (both factors are below 2^57 here, so the product is checked, not wrapped).
    auto product = [&](uint64_t a, uint64_t b, const char *what, uint64_t &result) -> saber_status {
        if (a != 0 && b > max_elements / a)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "decode extent: %s = %llu x %llu exceeds %llu elements", what,
                        static_cast<unsigned long long>(a), static_cast<unsigned long long>(b),
                        static_cast<unsigned long long>(max_elements));
        result = a * b;
        return SABER_OK;
    };
    const uint64_t b = static_cast<uint64_t>(batch);
    if (const saber_status s = product(b, static_cast<uint64_t>(generation), "batch x G", out.positions)) return s;
    if (const saber_status s = product(b, static_cast<uint64_t>(length), "batch x length", out.canvas)) return s;
    if (const saber_status s = product(static_cast<uint64_t>(trace_capacity), b, "trace_capacity x batch", out.trace_slots)) return s;
    if (const saber_status s = product(out.trace_slots, static_cast<uint64_t>(generation), "trace_capacity x batch x G", out.trace_cells))
        return s;
    if (const saber_status s = product(b, static_cast<uint64_t>(block_length), "batch x K", out.first_block_rows)) return s;
    constexpr uint64_t int_max = static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
    out.split_rows = static_cast<int32_t>(out.first_block_rows < int_max ? out.first_block_rows : int_max);
    return SABER_OK;
}

namespace {

saber_status validate_arrays(const float *inputs, const void *outputs, int64_t count) {
    if (count < 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: count must be >= 0; got %lld", entry_point(), static_cast<long long>(count));
    if (count > 0) {
        SABER_REQUIRE_NOT_NULL(inputs);
        SABER_REQUIRE_NOT_NULL(outputs);
    }
    return SABER_OK;
}

}  // namespace

saber_status validate_exact_inputs(int32_t function, const float *inputs, const void *outputs, int64_t count) {
    if (const saber_status s = validate_arrays(inputs, outputs, count)) return s;
    // The domains of docs/arithmetic.md (NaN is in none of them).
    bool (*in_domain)(float);
    switch (function) {
        case SABER_EXACT_EXP: in_domain = [](float x) { return x <= 0.0f; }; break;
        case SABER_EXACT_LOG: in_domain = [](float x) { return x >= 1.17549435e-38f && x <= 3.40282347e+38f; }; break;
        case SABER_EXACT_GUMBEL: in_domain = [](float u) { return u >= 5.96046448e-08f && u <= 0.99999994f; }; break;
        default:
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: function must be a saber_exact_function (0..2); got %d", entry_point(), function);
    }
    for (int64_t i = 0; i < count; ++i)
        if (!in_domain(inputs[i]))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: input %lld (%g) is outside function %d's domain", entry_point(),
                        static_cast<long long>(i), static_cast<double>(inputs[i]), function);
    return SABER_OK;
}

saber_status validate_exact_row(const float *row, int32_t vocabulary, int32_t mask_id, int32_t token, int32_t metric, float temperature,
                                const int32_t *out_prediction, const int32_t *out_bad_index, const float *out_values) {
    SABER_REQUIRE_NOT_NULL(row);
    SABER_REQUIRE_NOT_NULL(out_prediction);
    SABER_REQUIRE_NOT_NULL(out_bad_index);
    SABER_REQUIRE_NOT_NULL(out_values);
    if (vocabulary <= 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: vocabulary must be > 0; got %d", entry_point(), vocabulary);
    if (mask_id < 0 || mask_id >= vocabulary)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: mask id must lie in [0, V=%d); got %d", entry_point(), vocabulary, mask_id);
    if (token < -1 || token >= vocabulary)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: token must be -1 or lie in [0, V=%d); got %d", entry_point(), vocabulary, token);
    if (metric < SABER_METRIC_MAXPROB || metric > SABER_METRIC_RANDOM)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: metric must be a saber_metric (0..3); got %d", entry_point(), metric);
    if (!(temperature >= 0.0f && temperature <= 3.40282347e+38f))
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: temperature T must be finite and >= 0; got %g", entry_point(),
                    static_cast<double>(temperature));
    return SABER_OK;
}

void export_row_result(const exact::RowResult &result, int32_t *out_prediction, int32_t *out_bad_index, float *out_values) {
    *out_prediction = result.prediction;
    *out_bad_index = result.bad_index;
    out_values[0] = result.confidence;
    out_values[1] = result.token_confidence;
    out_values[2] = result.metric;
}

saber_status validate_fixed_inputs(const float *inputs, const void *outputs, int64_t count) {
    if (const saber_status s = validate_arrays(inputs, outputs, count)) return s;
    for (int64_t i = 0; i < count; ++i)
        if (!(inputs[i] >= 0.0f && inputs[i] <= 1.0f))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: input %lld (%g) is outside [0, 1]", entry_point(), static_cast<long long>(i),
                        static_cast<double>(inputs[i]));
    return SABER_OK;
}

saber_status validate_widen_ids(const void *device_source, const void *device_destination, int64_t count) {
    if (count < 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: count must be >= 0; got %lld", entry_point(), static_cast<long long>(count));
    if (count > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(int64_t)))
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: count must be at most %lld (count x 8 destination bytes within 63 bits); got %lld",
                    entry_point(), static_cast<long long>(std::numeric_limits<int64_t>::max() / 8), static_cast<long long>(count));
    if (count == 0) return SABER_OK;
    if (device_source == nullptr)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: device_source is null with count %lld", entry_point(), static_cast<long long>(count));
    if (device_destination == nullptr)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: device_destination is null with count %lld", entry_point(), static_cast<long long>(count));
    const uint64_t source = reinterpret_cast<uintptr_t>(device_source), destination = reinterpret_cast<uintptr_t>(device_destination);
    if (source % sizeof(int32_t) != 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: device_source must be 4-byte aligned (int32 ids); got %p", entry_point(), device_source);
    if (destination % sizeof(int64_t) != 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: device_destination must be 8-byte aligned (int64 ids); got %p", entry_point(),
                    device_destination);
    const uint64_t n = static_cast<uint64_t>(count), source_bytes = n * sizeof(int32_t), destination_bytes = n * sizeof(int64_t);
    // [source, source + source_bytes) and [destination, destination + destination_bytes) overlap (sums compared as
    // differences: no end address is formed, so none can wrap).
    const bool overlap = source < destination ? destination - source < source_bytes : source - destination < destination_bytes;
    if (overlap)
        return fail(SABER_ERROR_INVALID_ARGUMENT,
                    "%s: the source (%p, %llu bytes) and the destination (%p, %llu bytes) overlap; widen into a separate allocation",
                    entry_point(), device_source, static_cast<unsigned long long>(source_bytes), device_destination,
                    static_cast<unsigned long long>(destination_bytes));
    return SABER_OK;
}

saber_status validate_device_capability(int32_t device, const char *name, int major, int minor) {
    if (major >= kMinimumComputeMajor) return SABER_OK;
    return fail(SABER_ERROR_NO_DEVICE,
                "%s: CUDA device %d (%s) has compute capability %d.%d; Saber.Native's kernels need 8.0 or newer (sm_80: A100, "
                "RTX 30xx, L4, H100 and later)",
                entry_point(), device, name != nullptr ? name : "unnamed", major, minor);
}

}  // namespace saber
