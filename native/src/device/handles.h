// The handles of the device entry points: the structs behind the C ABI's context, buffer and decode, their registry,
// the checks that start an entry point on one (SABER_REQUIRE_HANDLE, SABER_USE_HANDLE), and what the decode files share.
// Every handle is registered while alive, so a destroyed or foreign handle is reported, not used.
#pragma once

#include <algorithm>
#include <vector>

#include "decode_state.h"
#include "device/cuda_check.h"
#include "handle_registry.h"
#include "kernels/kernels.h"

struct saber_context_impl {
    int device = 0;
    cudaStream_t stream = nullptr;
};

struct saber_buffer_impl {
    saber_context_impl *context = nullptr;
    void *pointer = nullptr;
    uint64_t bytes = 0;
};

namespace saber {

/// Device allocations of one decode, freed together.
class DeviceArena {
public:
    DeviceArena() = default;
    DeviceArena(const DeviceArena &) = delete;
    DeviceArena &operator=(const DeviceArena &) = delete;
    ~DeviceArena() {
        for (void *p : allocations_) cudaFree(p);
    }
    template <typename T>
    cudaError_t allocate(T **out, size_t count) {
        void *p = nullptr;
        const cudaError_t error = cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T));
        if (error == cudaSuccess) allocations_.push_back(p);
        *out = static_cast<T *>(p);
        return error;
    }

private:
    std::vector<void *> allocations_;
};

}  // namespace saber

struct saber_decode_impl {
    saber_context_impl *context = nullptr;
    saber::DeviceArena arena;
    saber::DecodeState state{};
    saber::HostStatus *pinned_status = nullptr;   // mapped: written by the device at the end of every step (kernels/status.h)
    cudaEvent_t step_done = nullptr;               // recorded after every step (as an external node under graph capture)
    std::vector<int32_t> initial_canvases;          // [batch, length]: prompts followed by masks
    std::vector<int32_t> prompt_lengths;
    bool finished = false;
    bool failed = false;

    ~saber_decode_impl() {
        if (step_done) cudaEventDestroy(step_done);
        if (pinned_status) cudaFreeHost(pinned_status);
    }
};

namespace saber {

using Kind = HandleRegistry::Kind;

/// The live handles of every device entry point (one instance across translation units: an inline function's static).
inline HandleRegistry &registry() {
    static HandleRegistry instance;
    return instance;
}

inline int device_of(const saber_context_impl *context) { return context->device; }
inline int device_of(const saber_buffer_impl *buffer) { return buffer->context->device; }
inline int device_of(const saber_decode_impl *decode) { return decode->context->device; }

/// Sets the fast row pass's split (device/decode.cu).
cudaError_t use_row_split(DeviceArena &arena, DecodeState &s, RowSplit split, cudaStream_t stream);

/// Writes the initial state of a decode and waits for it (device/decode.cu).
saber_status initialize(saber_decode_impl &decode);

/// A consistent copy of the status the device last published, and the steps finished (device/decode_status.cu).
void read_status(saber_decode_impl &decode, saber_decode_status &status, int64_t &finished_steps);

/// The end of a destroy entry point on a live handle: retires it from the registry (a second destroy racing this one
/// fails here), runs `release` (what must happen before the memory goes: frees, a stream synchronisation), deletes it,
/// and only then lets its context be destroyed.
template <typename Handle, typename Release>
saber_status retire_and_delete(Handle handle, const char *what, Release release) {
    HandleRegistry::Retired retired;
    if (!registry().retire(handle, retired)) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: %s was destroyed meanwhile", entry_point(), what);
    release(handle);
    delete handle;
    registry().released(retired);
    return SABER_OK;
}

}  // namespace saber

#define SABER_REQUIRE_HANDLE(handle)                                                                   \
    do {                                                                                               \
        if ((handle) == nullptr || !::saber::registry().contains(handle))                              \
            return ::saber::fail(SABER_ERROR_INVALID_ARGUMENT, "%s: %s is %s", ::saber::entry_point(), #handle,     \
                        (handle) == nullptr ? "null" : "not a live handle (destroyed or foreign)");    \
    } while (0)

// Starts an entry point on a handle: requires it live and binds its context's device until the entry point returns.
#define SABER_USE_HANDLE(handle)                                                                                          \
    SABER_REQUIRE_HANDLE(handle);                                                                                         \
    const ::saber::DeviceGuard saber_device_guard_(::saber::device_of(handle));                                           \
    if (saber_device_guard_.error() != cudaSuccess) return ::saber::cuda_failure(saber_device_guard_.error(), "cudaSetDevice(the context's device)")

// The whole body of an entry point that reads one value of a live handle into a non-null out parameter.
#define SABER_READ_HANDLE(handle, out, value)           \
    ::saber::guarded(__func__, [&]() -> saber_status { \
        SABER_USE_HANDLE(handle);                       \
        SABER_REQUIRE_NOT_NULL(out);                    \
        *(out) = (value);                               \
        return SABER_OK;                                \
    })
