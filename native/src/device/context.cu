// Device entry points of the C ABI on a context (device + stream): create, destroy, its stream, synchronize, copies
// ordered on its stream, id widening, and the timing events recorded on it.
#include <memory>

#include "device/handles.h"
#include "validate.h"

using saber::cuda_failure;
using saber::DeviceGuard;
using saber::HandleRegistry;
using saber::Kind;
using saber::fail;
using saber::guarded;
using saber::registry;

extern "C" {

SABER_API saber_status saber_context_create(int32_t device, saber_context *out_context) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_REQUIRE_NOT_NULL(out_context);
        *out_context = nullptr;
        int count = 0;
        SABER_CUDA(cudaGetDeviceCount(&count));
        if (device < 0 || device >= count)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "device must lie in [0, %d) (CUDA devices present); got %d", count, device);
        cudaDeviceProp properties{};
        SABER_CUDA(cudaGetDeviceProperties(&properties, device));
        if (const saber_status capable = saber::validate_device_capability(device, properties.name, properties.major, properties.minor); capable != SABER_OK)
            return capable;
        auto context = std::make_unique<saber_context_impl>();
        context->device = device;
        const DeviceGuard bind(device);
        SABER_CUDA(bind.error());
        SABER_CUDA(cudaStreamCreateWithFlags(&context->stream, cudaStreamNonBlocking));
        registry().add(context.get(), Kind::Context);
        *out_context = context.release();
        return SABER_OK;
    });
}

SABER_API saber_status saber_context_destroy(saber_context context) {
    return guarded(__func__, [&]() -> saber_status {
        if (context == nullptr) return SABER_OK;
        SABER_REQUIRE_HANDLE(context);
        HandleRegistry::Dependents alive;
        if (!registry().retire_if_unused(context, alive)) {
            if (alive.total() == 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: context is not a live handle (destroyed meanwhile)", __func__);
            return fail(SABER_ERROR_INVALID_ARGUMENT,
                        "%s: the context still has %zu live handle(s) created from it (%s); destroy them first (the context stays "
                        "alive)",
                        __func__, alive.total(), saber::describe(alive).c_str());
        }
        const DeviceGuard bind(context->device);
        cudaStreamSynchronize(context->stream);
        cudaStreamDestroy(context->stream);
        delete context;
        return SABER_OK;
    });
}

SABER_API saber_status saber_context_stream(saber_context context, void **out_stream) {
    return SABER_READ_HANDLE(context, out_stream, context->stream);
}

SABER_API saber_status saber_context_synchronize(saber_context context) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        SABER_CUDA(cudaStreamSynchronize(context->stream));
        return SABER_OK;
    });
}

namespace {

/// A synchronous copy ordered on the context's stream (so it follows the steps queued before it).
saber_status copy_on_stream(saber_context context, void *destination, const void *source, uint64_t bytes, cudaMemcpyKind kind) {
    SABER_USE_HANDLE(context);
    SABER_REQUIRE_NOT_NULL(destination);
    SABER_REQUIRE_NOT_NULL(source);
    SABER_CUDA(cudaMemcpyAsync(destination, source, bytes, kind, context->stream));
    SABER_CUDA(cudaStreamSynchronize(context->stream));
    return SABER_OK;
}

}  // namespace

SABER_API saber_status saber_context_copy_to_device(saber_context context, void *device_destination, const void *host_source, uint64_t bytes) {
    return guarded(__func__, [&]() -> saber_status { return copy_on_stream(context, device_destination, host_source, bytes, cudaMemcpyHostToDevice); });
}

SABER_API saber_status saber_context_copy_to_host(saber_context context, void *host_destination, const void *device_source, uint64_t bytes) {
    return guarded(__func__, [&]() -> saber_status { return copy_on_stream(context, host_destination, device_source, bytes, cudaMemcpyDeviceToHost); });
}

SABER_API saber_status saber_context_widen_ids(saber_context context, const void *device_source, void *device_destination, int64_t count) {
    return guarded(__func__, [&]() -> saber_status {
        // The arguments first (no device call): the host tests check these errors on a machine without a GPU.
        if (const saber_status s = saber::validate_widen_ids(device_source, device_destination, count)) return s;
        SABER_USE_HANDLE(context);
        if (count == 0) return SABER_OK;
        SABER_LAUNCH(saber::launch_widen_ids(static_cast<const int32_t *>(device_source), static_cast<int64_t *>(device_destination), count,
                                             context->stream));
        return SABER_OK;
    });
}

SABER_API saber_status saber_event_record(saber_context context, void **out_event) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        SABER_REQUIRE_NOT_NULL(out_event);
        cudaEvent_t event = nullptr;
        SABER_CUDA(cudaEventCreate(&event));
        const cudaError_t recorded = cudaEventRecord(event, context->stream);
        if (recorded != cudaSuccess) {
            cudaEventDestroy(event);
            return cuda_failure(recorded, "cudaEventRecord(event, context->stream)");
        }
        *out_event = event;
        return SABER_OK;
    });
}

SABER_API saber_status saber_event_elapsed_ms(void *start, void *end, float *out_ms) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_REQUIRE_NOT_NULL(start);
        SABER_REQUIRE_NOT_NULL(end);
        SABER_REQUIRE_NOT_NULL(out_ms);
        SABER_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
        SABER_CUDA(cudaEventElapsedTime(out_ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
        return SABER_OK;
    });
}

SABER_API saber_status saber_event_destroy(void *event) {
    return guarded(__func__, [&]() -> saber_status {
        if (event) SABER_CUDA(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
        return SABER_OK;
    });
}

}  // extern "C"
