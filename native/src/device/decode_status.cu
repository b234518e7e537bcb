// Device entry points of the C ABI that read a decode's status from its mapped pinned block: poll (after the last step)
// and query (never waits).
#include <atomic>

#include "device/handles.h"
#include "kernels/status.h"

namespace saber {

/// A consistent copy of the status the device last published (decode_state.h's HostStatus), and the steps finished;
/// remembers whether the decode has finished or failed, which later steps refuse. Never waits for the device: a copy
/// that the device overwrote meanwhile (the version moved) is taken again.
void read_status(saber_decode_impl &decode, saber_decode_status &status, int64_t &finished_steps) {
    const volatile HostStatus *host = decode.pinned_status;
    for (;;) {
        const unsigned long long version = host->version;
        std::atomic_thread_fence(std::memory_order_acquire);
        copy_status(status, host->slots[version % 2]);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (host->version == version) {
            finished_steps = static_cast<int64_t>(version);
            break;
        }
    }
    decode.finished = status.active_sequences == 0;
    decode.failed = status.error != SABER_OK;
}

}  // namespace saber

using saber::guarded;

extern "C" {

SABER_API saber_status saber_decode_poll(saber_decode decode, saber_decode_status *out_status) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(out_status);
        SABER_CUDA(cudaEventSynchronize(decode->step_done));
        int64_t finished_steps = 0;
        saber::read_status(*decode, *out_status, finished_steps);
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_query(saber_decode decode, saber_decode_status *out_status, int64_t *out_finished_steps) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(out_status);
        SABER_REQUIRE_NOT_NULL(out_finished_steps);
        saber::read_status(*decode, *out_status, *out_finished_steps);
        return SABER_OK;
    });
}

}  // extern "C"
