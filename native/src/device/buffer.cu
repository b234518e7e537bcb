// Device entry points of the C ABI on a buffer: device memory of a context, created, destroyed, uploaded and downloaded on
// its stream.
#include <memory>

#include "device/handles.h"

using saber::Kind;
using saber::fail;
using saber::guarded;
using saber::registry;

extern "C" {

SABER_API saber_status saber_buffer_create(saber_context context, uint64_t bytes, saber_buffer *out_buffer) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        SABER_REQUIRE_NOT_NULL(out_buffer);
        *out_buffer = nullptr;
        if (bytes == 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "buffer size must be > 0 bytes; got 0");
        auto buffer = std::make_unique<saber_buffer_impl>();
        buffer->context = context;
        buffer->bytes = bytes;
        SABER_CUDA(cudaMalloc(&buffer->pointer, bytes));
        if (!registry().add(buffer.get(), Kind::Buffer, context)) {
            cudaFree(buffer->pointer);
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: the context was destroyed meanwhile", __func__);
        }
        *out_buffer = buffer.release();
        return SABER_OK;
    });
}

SABER_API saber_status saber_buffer_destroy(saber_buffer buffer) {
    return guarded(__func__, [&]() -> saber_status {
        if (buffer == nullptr) return SABER_OK;
        SABER_USE_HANDLE(buffer);
        return saber::retire_and_delete(buffer, "buffer", [](saber_buffer b) { cudaFree(b->pointer); });
    });
}

SABER_API saber_status saber_buffer_device_pointer(saber_buffer buffer, void **out_pointer) {
    return SABER_READ_HANDLE(buffer, out_pointer, buffer->pointer);
}

namespace {

saber_status check_range(const saber_buffer_impl *buffer, uint64_t offset, uint64_t bytes, const char *what) {
    if (offset > buffer->bytes || bytes > buffer->bytes - offset)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s of %llu bytes at offset %llu runs past the buffer's %llu bytes", what,
                    static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(offset),
                    static_cast<unsigned long long>(buffer->bytes));
    return SABER_OK;
}

}  // namespace

SABER_API saber_status saber_buffer_upload(saber_buffer buffer, uint64_t offset, const void *host, uint64_t bytes) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(buffer);
        SABER_REQUIRE_NOT_NULL(host);
        if (const saber_status s = check_range(buffer, offset, bytes, "upload")) return s;
        cudaStream_t stream = buffer->context->stream;
        SABER_CUDA(cudaMemcpyAsync(static_cast<char *>(buffer->pointer) + offset, host, bytes, cudaMemcpyHostToDevice, stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        return SABER_OK;
    });
}

SABER_API saber_status saber_buffer_download(saber_buffer buffer, uint64_t offset, void *host, uint64_t bytes) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(buffer);
        SABER_REQUIRE_NOT_NULL(host);
        if (const saber_status s = check_range(buffer, offset, bytes, "download")) return s;
        cudaStream_t stream = buffer->context->stream;
        SABER_CUDA(cudaMemcpyAsync(host, static_cast<const char *>(buffer->pointer) + offset, bytes, cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        return SABER_OK;
    });
}

}  // extern "C"
