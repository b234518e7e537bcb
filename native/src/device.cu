// Device entry points of the C ABI: contexts (device + stream), buffers, decodes, timing events.
// Every handle is registered while alive, so a destroyed or foreign handle is reported, not used.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "common.h"
#include "handle_registry.h"
#include "kernels/status.h"
#include "kernels/kernels.h"
#include "validate.h"

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
namespace {

saber_status status_of(cudaError_t error) {
    return error == cudaErrorMemoryAllocation                                       ? SABER_ERROR_OUT_OF_MEMORY
           : error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver ? SABER_ERROR_NO_DEVICE
                                                                                  : SABER_ERROR_CUDA;
}

/// Reports the failure of `call` and consumes it from the thread's last CUDA error (it is reported here, so a later launch
/// check must not report it again; a sticky error stays, as CUDA keeps it).
saber_status cuda_failure(cudaError_t error, const char *call) {
    (void)cudaGetLastError();
    return fail(status_of(error), "%s failed: %s (%s)", call, cudaGetErrorName(error), cudaGetErrorString(error));
}

// Checked CUDA call: returns the mapped status from the enclosing function on failure. The one checking path of this
// file: SABER_LAUNCH and SABER_USE_HANDLE build on it.
#define SABER_CUDA(call)                                                    \
    do {                                                                    \
        const cudaError_t saber_error_ = (call);                            \
        if (saber_error_ != cudaSuccess) return cuda_failure(saber_error_, #call); \
    } while (0)

/// SABER_ERROR_CUDA when a CUDA error is already pending on this thread before `launch` is queued: one left by earlier
/// asynchronous work or by another library's call, which the launcher's cudaGetLastError would otherwise report as this
/// launch's failure. Reported once as what it is (then consumed; a sticky error stays and fails every later call).
saber_status pending_failure(const char *launch) {
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

using Kind = HandleRegistry::Kind;

HandleRegistry &registry() {
    static HandleRegistry instance;
    return instance;
}

#define SABER_REQUIRE_HANDLE(handle)                                                                   \
    do {                                                                                               \
        if ((handle) == nullptr || !registry().contains(handle))                                       \
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: %s is %s", ::saber::entry_point(), #handle,               \
                        (handle) == nullptr ? "null" : "not a live handle (destroyed or foreign)");    \
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

int device_of(const saber_context_impl *context) { return context->device; }
int device_of(const saber_buffer_impl *buffer) { return buffer->context->device; }

int device_of(const saber_decode_impl *decode);   // defined after saber_decode_impl

}  // namespace

// Starts an entry point on a handle: requires it live and binds its context's device until the entry point returns.
#define SABER_USE_HANDLE(handle)                                                                                          \
    SABER_REQUIRE_HANDLE(handle);                                                                                         \
    const ::saber::DeviceGuard saber_device_guard_(::saber::device_of(handle));                                           \
    if (saber_device_guard_.error() != cudaSuccess) return cuda_failure(saber_device_guard_.error(), "cudaSetDevice(the context's device)")

namespace {

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

}  // namespace

/// Sets the fast row pass's split, allocating its per-split scratch from the decode's arena when rows are split (the
/// chunk scratch, which every split plan shares, is allocated with the decode).
cudaError_t use_row_split(DeviceArena &arena, DecodeState &s, RowSplit split) {
    s.row_splits = split.splits;
    s.row_split_chunks = split.chunks;
    s.split_partials = nullptr;
    if (split.splits == 1) return cudaSuccess;
    char *partials = nullptr;
    const cudaError_t error = arena.allocate(&partials, split_partial_bytes(static_cast<size_t>(s.batch) * s.generation, split.splits));
    s.split_partials = partials;
    return error;
}

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
namespace {

int device_of(const saber_decode_impl *decode) { return decode->context->device; }

/// Writes the initial state of a decode and waits for it: canvases, zeroed flags and counters.
saber_status initialize(saber_decode_impl &decode) {
    DecodeState &s = decode.state;
    cudaStream_t stream = decode.context->stream;
    const size_t per_sequence = s.batch, per_position = static_cast<size_t>(s.batch) * s.generation;
    SABER_CUDA(cudaMemcpyAsync(s.canvas, decode.initial_canvases.data(), decode.initial_canvases.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    SABER_CUDA(cudaMemcpyAsync(s.prompt_length, decode.prompt_lengths.data(), per_sequence * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    for (void *zeroed : {static_cast<void *>(s.block), static_cast<void *>(s.block_step), static_cast<void *>(s.nfe),
                         static_cast<void *>(s.done)})
        SABER_CUDA(cudaMemsetAsync(zeroed, 0, per_sequence * sizeof(int32_t), stream));
    for (void *zeroed : {static_cast<void *>(s.decoded), static_cast<void *>(s.commit_set), static_cast<void *>(s.in_draft),
                         static_cast<void *>(s.selected)})
        SABER_CUDA(cudaMemsetAsync(zeroed, 0, per_position, stream));
    SABER_CUDA(cudaMemsetAsync(s.commit_confidence, 0, per_position * sizeof(float), stream));
    SABER_CUDA(cudaMemsetAsync(s.previous, 0, per_position * sizeof(float), stream));
    SABER_CUDA(cudaMemsetAsync(s.step, 0, sizeof(int32_t), stream));
    SABER_CUDA(cudaMemsetAsync(s.error_step, 0, sizeof(int32_t), stream));
    SABER_CUDA(cudaMemsetAsync(s.finished_steps, 0, sizeof(unsigned long long), stream));
    // The device's status before the first step: every sequence active (a step that finds none active is no step).
    const saber_decode_status initial{0, s.batch, SABER_OK, 0, 0, 0, 0};
    SABER_CUDA(cudaMemcpyAsync(s.status, &initial, sizeof initial, cudaMemcpyHostToDevice, stream));
    SABER_CUDA(cudaMemsetAsync(s.error, 0xFF, sizeof(unsigned long long), stream));
    SABER_CUDA(cudaMemsetAsync(s.blocks_done, 0, sizeof(unsigned int), stream));
    SABER_LAUNCH(launch_plan_rows(s, stream));
    if (s.trace_capacity > 0)
        SABER_CUDA(cudaMemsetAsync(s.trace_steps, 0, static_cast<size_t>(s.trace_capacity) * s.batch * sizeof(saber_trace_step), stream));
    SABER_CUDA(cudaStreamSynchronize(stream));
    decode.pinned_status->slots[0] = decode.pinned_status->slots[1] = initial;
    decode.pinned_status->version = 0;
    decode.finished = decode.failed = false;
    return SABER_OK;
}

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

using saber::cuda_failure;
using saber::DeviceGuard;
using saber::HandleRegistry;
using saber::Kind;
using saber::fail;
using saber::guarded;
using saber::registry;
using saber::run_elementwise;

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
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        SABER_REQUIRE_NOT_NULL(out_stream);
        *out_stream = context->stream;
        return SABER_OK;
    });
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
        HandleRegistry::Retired retired;
        if (!registry().retire(buffer, retired)) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: buffer was destroyed meanwhile", __func__);
        cudaFree(buffer->pointer);
        delete buffer;
        registry().released(retired);   // only now may its context be destroyed
        return SABER_OK;
    });
}

SABER_API saber_status saber_buffer_device_pointer(saber_buffer buffer, void **out_pointer) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(buffer);
        SABER_REQUIRE_NOT_NULL(out_pointer);
        *out_pointer = buffer->pointer;
        return SABER_OK;
    });
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

SABER_API saber_status saber_decode_create(saber_context context, const saber_decode_options *options, int32_t vocabulary,
                                           int32_t mask_id, int32_t batch, const int32_t *prompt_tokens,
                                           const int32_t *prompt_lengths, int32_t trace_capacity, saber_decode *out_decode) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(context);
        SABER_REQUIRE_NOT_NULL(options);
        SABER_REQUIRE_NOT_NULL(out_decode);
        *out_decode = nullptr;
        if (const saber_status s = saber::validate_options(*options, vocabulary, mask_id)) return s;
        if (const saber_status s = saber::validate_prompts(batch, prompt_tokens, prompt_lengths, vocabulary, mask_id)) return s;
        // Bad-logit reports pack (sequence, position, vocabulary index) into 64 bits: 22, 21 and 21 bits.
        if (vocabulary >= (1 << 21)) return fail(SABER_ERROR_INVALID_ARGUMENT, "vocabulary must be < 2097152; got %d", vocabulary);
        if (trace_capacity < 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "trace_capacity must be >= 0; got %d", trace_capacity);
        const int32_t generation = options->generation_length;
        const int64_t longest = *std::max_element(prompt_lengths, prompt_lengths + batch);
        if (longest + generation >= (1 << 21))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "prompt length + G must be < 2097152; got %lld",
                        static_cast<long long>(longest + generation));
        const int32_t length = static_cast<int32_t>(longest + generation);
        // Every product of the arguments in 64 bits, checked before anything is allocated.
        saber::DecodeExtent extent{};
        if (const saber_status s = saber::plan_decode_extent(batch, generation, options->block_length, length, trace_capacity, extent))
            return s;

        auto decode = std::make_unique<saber_decode_impl>();
        decode->context = context;
        saber::DecodeState &s = decode->state;
        s.options = *options;
        s.batch = batch;
        s.generation = generation;
        s.block_length = options->block_length;
        s.length = length;
        s.vocabulary = vocabulary;
        s.mask_id = mask_id;
        s.trace_capacity = trace_capacity;

        int multiprocessors = 0;
        SABER_CUDA(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, context->device));
        // The fast row pass's resident blocks per SM, from the occupancy of the kernel a step of these options launches.
        // The dtype is a step's argument, not known yet: the least over the three, so that no dtype's waves are over-split.
        int resident_blocks = saber::row_pass_resident_blocks(SABER_DTYPE_FLOAT32, *options);
        for (const int32_t dtype : {SABER_DTYPE_FLOAT16, SABER_DTYPE_BFLOAT16})
            resident_blocks = std::min(resident_blocks, saber::row_pass_resident_blocks(dtype, *options));
        // Rows of the first block: a lower bound of the active rows of every strategy.
        const saber::RowSplit split = saber::plan_row_split(extent.split_rows, vocabulary, multiprocessors, resident_blocks);
        saber::DeviceArena &arena = decode->arena;
        // The chunk scratch of the row pass: 24 bytes per 1024 logits of every row (0.6% of a float32 logits buffer, 1.2% of a
        // 16-bit one).
        s.row_chunks = (vocabulary + saber::exact::kChunk - 1) / saber::exact::kChunk;
        char *chunk_partials = nullptr;
        SABER_CUDA(arena.allocate(&chunk_partials, saber::chunk_partial_bytes(extent.positions, vocabulary)));
        s.chunk_partials = chunk_partials;
        SABER_CUDA(saber::use_row_split(arena, s, split));
        const size_t per_sequence = static_cast<size_t>(batch), per_position = extent.positions;
        SABER_CUDA(arena.allocate(&s.prompt_length, per_sequence));
        SABER_CUDA(arena.allocate(&s.block, per_sequence));
        SABER_CUDA(arena.allocate(&s.block_step, per_sequence));
        SABER_CUDA(arena.allocate(&s.nfe, per_sequence));
        SABER_CUDA(arena.allocate(&s.done, per_sequence));
        SABER_CUDA(arena.allocate(&s.canvas, extent.canvas));
        SABER_CUDA(arena.allocate(&s.decoded, per_position));
        SABER_CUDA(arena.allocate(&s.commit_set, per_position));
        SABER_CUDA(arena.allocate(&s.in_draft, per_position));
        SABER_CUDA(arena.allocate(&s.selected, per_position));
        SABER_CUDA(arena.allocate(&s.commit_confidence, per_position));
        SABER_CUDA(arena.allocate(&s.previous, per_position));
        SABER_CUDA(arena.allocate(&s.delta, per_position));
        SABER_CUDA(arena.allocate(&s.prediction, per_position));
        SABER_CUDA(arena.allocate(&s.confidence, per_position));
        SABER_CUDA(arena.allocate(&s.token_confidence, per_position));
        SABER_CUDA(arena.allocate(&s.metric, per_position));
        SABER_CUDA(arena.allocate(&s.row_offsets, per_sequence + 1));
        SABER_CUDA(arena.allocate(&s.blocks_done, 1));
        SABER_CUDA(arena.allocate(&s.finished_steps, 1));
        SABER_CUDA(arena.allocate(&s.step, 1));
        SABER_CUDA(arena.allocate(&s.error, 1));
        SABER_CUDA(arena.allocate(&s.error_step, 1));
        SABER_CUDA(arena.allocate(&s.status, 1));
        if (trace_capacity > 0) {
            SABER_CUDA(arena.allocate(&s.trace_steps, extent.trace_slots));
            SABER_CUDA(arena.allocate(&s.trace_events, extent.trace_cells));
            SABER_CUDA(arena.allocate(&s.trace_tokens, extent.trace_cells));
            SABER_CUDA(arena.allocate(&s.trace_confidences, extent.trace_cells));
            SABER_CUDA(arena.allocate(&s.trace_deltas, extent.trace_cells));
        }
        // The status block: pinned host memory mapped into the device's address space, written by the step's last decide
        // block itself, so that it is current after a CUDA-graph replay too (a copy or event captured in a graph would be
        // replayed, but the host could not tell which replay it saw).
        SABER_CUDA(cudaHostAlloc(&decode->pinned_status, sizeof(saber::HostStatus), cudaHostAllocMapped));
        SABER_CUDA(cudaHostGetDevicePointer(reinterpret_cast<void **>(&s.host_status), decode->pinned_status, 0));
        s.row_grid = static_cast<int32_t>(std::min<long long>(static_cast<long long>(multiprocessors) * resident_blocks, 0x7FFFFFFF));
        SABER_CUDA(cudaEventCreateWithFlags(&decode->step_done, cudaEventDisableTiming));

        // Initial state: canvases = prompt ++ masks (mask-padded to the row pitch), everything else zero.
        decode->initial_canvases.assign(static_cast<size_t>(batch) * length, mask_id);
        decode->prompt_lengths.assign(prompt_lengths, prompt_lengths + batch);
        for (int32_t b = 0, offset = 0; b < batch; offset += prompt_lengths[b], ++b)
            std::copy(prompt_tokens + offset, prompt_tokens + offset + prompt_lengths[b],
                      decode->initial_canvases.begin() + static_cast<size_t>(b) * length);
        if (const saber_status status = saber::initialize(*decode)) return status;
        if (!registry().add(decode.get(), Kind::Decode, context))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: the context was destroyed meanwhile", __func__);
        *out_decode = decode.release();
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_destroy(saber_decode decode) {
    return guarded(__func__, [&]() -> saber_status {
        if (decode == nullptr) return SABER_OK;
        SABER_USE_HANDLE(decode);
        HandleRegistry::Retired retired;
        if (!registry().retire(decode, retired)) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: decode was destroyed meanwhile", __func__);
        cudaStreamSynchronize(decode->context->stream);
        delete decode;
        registry().released(retired);   // only now may its context be destroyed
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_length(saber_decode decode, int32_t *out_length) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(out_length);
        *out_length = decode->state.length;
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_canvas_pointer(saber_decode decode, void **out_pointer) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(out_pointer);
        *out_pointer = decode->state.canvas;
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_step(saber_decode decode, const void *device_logits, int32_t dtype) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(device_logits);
        if (dtype < SABER_DTYPE_FLOAT32 || dtype > SABER_DTYPE_BFLOAT16)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "dtype must be a saber_dtype (0..2); got %d", dtype);
        if (decode->failed)
            return fail(SABER_ERROR_INVALID_LOGITS, "an earlier step met invalid logits (see saber_decode_poll); the decode is stopped");
        if (decode->finished) {
            saber_decode_status status{};
            int64_t finished_steps = 0;
            saber::read_status(*decode, status, finished_steps);
            return fail(SABER_ERROR_FINISHED, "every sequence has finished after %d steps", status.steps);
        }
        cudaStream_t stream = decode->context->stream;
        // Under capture an ordinary record would become an internal graph dependency that never fires on replay; an
        // external record node fires on every replay, so that poll waits for the replayed step.
        cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
        SABER_CUDA(cudaStreamIsCapturing(stream, &capture));
        SABER_LAUNCH(saber::launch_row_confidence(decode->state, device_logits, dtype, stream));
        SABER_LAUNCH(saber::launch_decide(decode->state, stream));   // also publishes the status to pinned_status
        if (capture == cudaStreamCaptureStatusActive)
            SABER_CUDA(cudaEventRecordWithFlags(decode->step_done, stream, cudaEventRecordExternal));
        else
            SABER_CUDA(cudaEventRecord(decode->step_done, stream));
        return SABER_OK;
    });
}

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

SABER_API saber_status saber_decode_read(saber_decode decode, int32_t *out_canvases, int32_t *out_nfe, int32_t *out_done) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        const saber::DecodeState &s = decode->state;
        cudaStream_t stream = decode->context->stream;
        if (out_canvases)
            SABER_CUDA(cudaMemcpyAsync(out_canvases, s.canvas, static_cast<size_t>(s.batch) * s.length * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        if (out_nfe) SABER_CUDA(cudaMemcpyAsync(out_nfe, s.nfe, static_cast<size_t>(s.batch) * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        if (out_done) SABER_CUDA(cudaMemcpyAsync(out_done, s.done, static_cast<size_t>(s.batch) * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        return SABER_OK;
    });
}

SABER_API saber_status saber_decode_read_trace(saber_decode decode, int32_t sequence, int32_t step, saber_trace_step *out_step,
                                               int32_t *out_events, int32_t *out_tokens, float *out_confidences, float *out_deltas) {
    return guarded(__func__, [&]() -> saber_status {
        SABER_USE_HANDLE(decode);
        SABER_REQUIRE_NOT_NULL(out_step);
        const saber::DecodeState &s = decode->state;
        if (s.trace_capacity == 0) return fail(SABER_ERROR_INVALID_ARGUMENT, "the decode was created with trace_capacity 0");
        if (sequence < 0 || sequence >= s.batch)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "sequence must lie in [0, %d); got %d", s.batch, sequence);
        // The steps the device has finished, replayed ones included: wait for the queued work, then read the status block.
        SABER_CUDA(cudaStreamSynchronize(decode->context->stream));
        saber_decode_status status{};
        int64_t finished_steps = 0;
        saber::read_status(*decode, status, finished_steps);
        const int32_t newest = static_cast<int32_t>(std::min<int64_t>(finished_steps, 0x7FFFFFFF)), oldest = std::max(1, newest - s.trace_capacity + 1);
        if (step < oldest || step > newest)
            return fail(SABER_ERROR_INVALID_ARGUMENT, "step must lie in [%d, %d] (the ring keeps %d steps); got %d", oldest, newest,
                        s.trace_capacity, step);
        const size_t slot = static_cast<size_t>((step - 1) % s.trace_capacity) * s.batch + sequence;
        const size_t g = static_cast<size_t>(s.generation);
        cudaStream_t stream = decode->context->stream;
        SABER_CUDA(cudaMemcpyAsync(out_step, s.trace_steps + slot, sizeof(saber_trace_step), cudaMemcpyDeviceToHost, stream));
        if (out_events) SABER_CUDA(cudaMemcpyAsync(out_events, s.trace_events + slot * g, g * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        if (out_tokens) SABER_CUDA(cudaMemcpyAsync(out_tokens, s.trace_tokens + slot * g, g * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        if (out_confidences)
            SABER_CUDA(cudaMemcpyAsync(out_confidences, s.trace_confidences + slot * g, g * sizeof(float), cudaMemcpyDeviceToHost, stream));
        if (out_deltas) SABER_CUDA(cudaMemcpyAsync(out_deltas, s.trace_deltas + slot * g, g * sizeof(float), cudaMemcpyDeviceToHost, stream));
        SABER_CUDA(cudaStreamSynchronize(stream));
        // The slot holds another step when the sequence was finished (or the step failed) at `step`.
        if (out_step->step != step) *out_step = saber_trace_step{0, 0, 0, 0, 0.0};
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
        SABER_CUDA(use_row_split(decode->arena, decode->state, fixed_row_split(decode->state.vocabulary, splits)));
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
