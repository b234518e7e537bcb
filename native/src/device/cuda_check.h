// Checked CUDA calls of the device entry points: CUDA errors mapped to statuses (SABER_CUDA, SABER_LAUNCH), and the
// binding of an entry point to its context's device (DeviceGuard).
#pragma once

#include <cuda_runtime.h>

#include "common.h"

namespace saber {

inline saber_status status_of(cudaError_t error) {
    return error == cudaErrorMemoryAllocation                                       ? SABER_ERROR_OUT_OF_MEMORY
           : error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver ? SABER_ERROR_NO_DEVICE
                                                                                  : SABER_ERROR_CUDA;
}

/// Reports the failure of `call` and consumes it from the thread's last CUDA error (it is reported here, so a later launch
/// check must not report it again; a sticky error stays, as CUDA keeps it).
inline saber_status cuda_failure(cudaError_t error, const char *call) {
    (void)cudaGetLastError();
    return fail(status_of(error), "%s failed: %s (%s)", call, cudaGetErrorName(error), cudaGetErrorString(error));
}

// Checked CUDA call: returns the mapped status from the enclosing function on failure. The one checking path of the
// device entry points: SABER_LAUNCH and SABER_USE_HANDLE (device/handles.h) build on it.
#define SABER_CUDA(call)                                                    \
    do {                                                                    \
        const cudaError_t saber_error_ = (call);                            \
        if (saber_error_ != cudaSuccess) return ::saber::cuda_failure(saber_error_, #call); \
    } while (0)

/// SABER_ERROR_CUDA when a CUDA error is already pending on this thread before `launch` is queued: one left by earlier
/// asynchronous work or by another library's call, which the launcher's cudaGetLastError would otherwise report as this
/// launch's failure. Reported once as what it is (then consumed; a sticky error stays and fails every later call).
inline saber_status pending_failure(const char *launch) {
    const cudaError_t pending = cudaPeekAtLastError();
    if (pending == cudaSuccess) return SABER_OK;
    (void)cudaGetLastError();
    return fail(SABER_ERROR_CUDA,
                "%s: not queued: CUDA error %s (%s) was already pending before %s, left by earlier asynchronous work or another "
                "library's CUDA call on this thread; it is not an error of this launch",
                entry_point(), cudaGetErrorName(pending), cudaGetErrorString(pending), launch);
}

// A checked kernel launch: the error pending before it (not this launch's) and the launcher's own error, told apart.
#define SABER_LAUNCH(launch)                                                                       \
    do {                                                                                           \
        if (const saber_status saber_pending_ = ::saber::pending_failure(#launch)) return saber_pending_; \
        SABER_CUDA(launch);                                                                        \
    } while (0)

/// Makes `device` the calling thread's current CUDA device for a scope and restores the previous one at its end: entry
/// points work on their context's GPU from any thread (.NET continuations run on pool threads whose current device is
/// 0), and a caller's current device is left as it was.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        error_ = cudaGetDevice(&previous_);
        if (error_ == cudaSuccess && previous_ != device) {
            error_ = cudaSetDevice(device);
            restore_ = error_ == cudaSuccess;
        }
    }
    DeviceGuard(const DeviceGuard &) = delete;
    DeviceGuard &operator=(const DeviceGuard &) = delete;
    ~DeviceGuard() {
        if (restore_) (void)cudaSetDevice(previous_);
    }
    cudaError_t error() const { return error_; }

private:
    int previous_ = 0;
    bool restore_ = false;
    cudaError_t error_ = cudaSuccess;
};

}  // namespace saber
