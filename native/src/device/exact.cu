// Device entry points of the C ABI that run the exact math on the device (saber_exact_*_device), for checking it against
// the host's bits.
#include "device/handles.h"
#include "validate.h"

namespace saber {
namespace {

/// Device memory freed at scope exit (cudaFree waits for the work that uses it).
struct DeviceMemory {
    void *pointer = nullptr;
    DeviceMemory() = default;
    DeviceMemory(const DeviceMemory &) = delete;
    DeviceMemory &operator=(const DeviceMemory &) = delete;
    ~DeviceMemory() {
        if (pointer != nullptr) cudaFree(pointer);
    }
};

/// Copies `count` inputs to the device, queues `launch(inputs, outputs, stream)` and copies the outputs back, on the
/// context's stream; returns when the outputs are on the host.
template <typename Output, typename Launch>
saber_status run_elementwise(saber_context context, const float *inputs, Output *outputs, int64_t count, Launch launch) {
    if (count == 0) return SABER_OK;
    DeviceMemory in, out;
    SABER_CUDA(cudaMalloc(&in.pointer, static_cast<size_t>(count) * sizeof(float)));
    SABER_CUDA(cudaMalloc(&out.pointer, static_cast<size_t>(count) * sizeof(Output)));
    SABER_CUDA(cudaMemcpyAsync(in.pointer, inputs, static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice, context->stream));
    SABER_LAUNCH(launch(static_cast<const float *>(in.pointer), static_cast<Output *>(out.pointer), context->stream));
    SABER_CUDA(cudaMemcpyAsync(outputs, out.pointer, static_cast<size_t>(count) * sizeof(Output), cudaMemcpyDeviceToHost, context->stream));
    SABER_CUDA(cudaStreamSynchronize(context->stream));
    return SABER_OK;
}

}  // namespace
}  // namespace saber

using saber::guarded;
using saber::run_elementwise;

extern "C" {

SABER_API saber_status saber_exact_row_device(saber_context context, const float *row, int32_t vocabulary, int32_t mask_id, int32_t token,
                                              int32_t metric, float temperature, uint64_t seed, int32_t step, int32_t sequence,
                                              int32_t position, int32_t *out_prediction, int32_t *out_bad_index, float *out_values) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        if (const saber_status s = saber::validate_exact_row(row, vocabulary, mask_id, token, metric, temperature, out_prediction, out_bad_index,
                                                             out_values))
            return s;
        const saber::ExactRowArguments arguments{vocabulary, mask_id, token, metric, temperature, seed, step, sequence, position};
        saber::exact::RowResult result{};
        // The row in, one RowResult out, on the context's stream.
        saber::DeviceMemory device_row, device_result;
        SABER_CUDA(cudaMalloc(&device_row.pointer, static_cast<size_t>(vocabulary) * sizeof(float)));
        SABER_CUDA(cudaMalloc(&device_result.pointer, sizeof result));
        SABER_CUDA(cudaMemcpyAsync(device_row.pointer, row, static_cast<size_t>(vocabulary) * sizeof(float), cudaMemcpyHostToDevice, context->stream));
        SABER_LAUNCH(saber::launch_exact_row(static_cast<const float *>(device_row.pointer), arguments,
                                           static_cast<saber::exact::RowResult *>(device_result.pointer), context->stream));
        SABER_CUDA(cudaMemcpyAsync(&result, device_result.pointer, sizeof result, cudaMemcpyDeviceToHost, context->stream));
        SABER_CUDA(cudaStreamSynchronize(context->stream));
        saber::export_row_result(result, out_prediction, out_bad_index, out_values);
        return SABER_OK;
    });
}

SABER_API saber_status saber_exact_eval_device(saber_context context, int32_t function, const float *inputs, float *outputs, int64_t count) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        if (const saber_status s = saber::validate_exact_inputs(function, inputs, outputs, count)) return s;
        return run_elementwise(context, inputs, outputs, count, [&](const float *in, float *out, cudaStream_t stream) {
            return saber::launch_exact_eval(function, in, out, count, stream);
        });
    });
}

SABER_API saber_status saber_exact_fixed_terms_device(saber_context context, const float *inputs, uint64_t *outputs, int64_t count) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        if (const saber_status s = saber::validate_fixed_inputs(inputs, outputs, count)) return s;
        return run_elementwise(context, inputs, outputs, count, [&](const float *in, uint64_t *out, cudaStream_t stream) {
            return saber::launch_fixed_terms(in, out, count, stream);
        });
    });
}

}  // extern "C"
