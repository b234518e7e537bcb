// The test-only hooks of src/testing.h (namespace saber::testing): built into the saber_testing library that the tests and
// the benchmark link, never into the shipped library.
#include "device/handles.h"
#include "kernels/status.h"
#include "testing.h"

namespace saber::testing {

saber_status poison_rows(saber_decode decode) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        const DecodeState &s = decode->state;
        const size_t n = static_cast<size_t>(s.batch) * s.generation;
        cudaStream_t stream = decode->context->stream;
        SABER_CUDA(cudaMemsetAsync(s.prediction, 0xFF, n * sizeof(int32_t), stream));
        SABER_CUDA(cudaMemsetAsync(s.confidence, 0xFF, n * sizeof(float), stream));
        SABER_CUDA(cudaMemsetAsync(s.token_confidence, 0xFF, n * sizeof(float), stream));
        SABER_CUDA(cudaMemsetAsync(s.metric, 0xFF, n * sizeof(float), stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        return SABER_OK;
    });
}

saber_status read_rows(saber_decode decode, RowResults &out) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        const DecodeState &s = decode->state;
        const size_t n = static_cast<size_t>(s.batch) * s.generation;
        out.prediction.resize(n);
        out.confidence.resize(n);
        out.token_confidence.resize(n);
        out.metric.resize(n);
        cudaStream_t stream = decode->context->stream;
        SABER_CUDA(cudaMemcpyAsync(out.prediction.data(), s.prediction, n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaMemcpyAsync(out.confidence.data(), s.confidence, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaMemcpyAsync(out.token_confidence.data(), s.token_confidence, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaMemcpyAsync(out.metric.data(), s.metric, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        return SABER_OK;
    });
}

saber_status launch_rows(saber_decode decode, const void *device_logits, int32_t dtype, RowPath path) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_LAUNCH(launch_row_confidence(decode->state, device_logits, dtype, decode->context->stream, path));
        return SABER_OK;
    });
}

saber_status set_row_splits(saber_decode decode, int32_t splits) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        if (splits < 1 || splits > 65535) return fail(SABER_ERROR_INVALID_ARGUMENT, "splits must lie in [1, 65535]; got %d", splits);
        SABER_CUDA(cudaStreamSynchronize(decode->context->stream));
        SABER_CUDA(use_row_split(decode->arena, decode->state, fixed_row_split(decode->state.vocabulary, splits), decode->context->stream));
        return SABER_OK;
    });
}

int32_t row_splits(saber_decode decode) { return registry().contains(decode) ? decode->state.row_splits : 0; }

saber_status reset(saber_decode decode) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        return initialize(*decode);
    });
}

DecodeState device_state(saber_decode decode) { return registry().contains(decode) ? decode->state : DecodeState{}; }

saber_status decide(saber_decode decode) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_LAUNCH(launch_decide(decode->state, decode->context->stream));
        SABER_CUDA(cudaStreamSynchronize(decode->context->stream));
        return SABER_OK;
    });
}

HostStatus host_status(saber_decode decode) {
    if (!registry().contains(decode)) return HostStatus{};
    const volatile HostStatus *host = decode->pinned_status;
    HostStatus copy{};
    copy.version = host->version;
    for (int i = 0; i < 2; ++i) copy_status(copy.slots[i], host->slots[i]);
    return copy;
}

saber_status set_host_status(saber_decode decode, const HostStatus &status) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        // Nothing queued may write the block while it changes.
        SABER_CUDA(cudaStreamSynchronize(decode->context->stream));
        volatile HostStatus *host = decode->pinned_status;
        for (int i = 0; i < 2; ++i) copy_status(host->slots[i], status.slots[i]);
        host->version = status.version;
        return SABER_OK;
    });
}

}  // namespace saber::testing
