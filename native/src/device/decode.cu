// Device entry points of the C ABI on a decode: create (its device state and initial canvases), destroy, its length and
// canvases, a step, and reading its canvases and trace; the decode's initialization and row split.
#include <algorithm>
#include <memory>

#include "device/handles.h"
#include "validate.h"

namespace saber {

/// Sets the fast row pass's split, allocating its per-split scratch from the decode's arena when rows are split (the
/// chunk scratch, which every split plan shares, is allocated with the decode), with the rows' arrival counters zeroed
/// on `stream` (the row pass's last block of a row resets its counter, so nothing else ever writes them).
cudaError_t use_row_split(DeviceArena &arena, DecodeState &s, RowSplit split, cudaStream_t stream) {
    s.row_splits = split.splits;
    s.row_split_chunks = split.chunks;
    s.split_partials = nullptr;
    s.split_arrivals = nullptr;
    if (split.splits == 1) return cudaSuccess;
    const size_t rows = static_cast<size_t>(s.batch) * s.generation;
    char *partials = nullptr;
    cudaError_t error = arena.allocate(&partials, split_partial_bytes(rows, split.splits));
    s.split_partials = partials;
    if (error == cudaSuccess) error = arena.allocate(&s.split_arrivals, rows);
    if (error == cudaSuccess) error = cudaMemsetAsync(s.split_arrivals, 0, rows * sizeof(unsigned int), stream);
    return error;
}

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

}  // namespace saber

using saber::Kind;
using saber::fail;
using saber::guarded;
using saber::registry;

extern "C" {

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
        SABER_CUDA(saber::use_row_split(arena, s, split, context->stream));
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
        return saber::retire_and_delete(decode, "decode", [](saber_decode d) { cudaStreamSynchronize(d->context->stream); });
    });
}

SABER_API saber_status saber_decode_length(saber_decode decode, int32_t *out_length) {
    return SABER_READ_HANDLE(decode, out_length, decode->state.length);
}

SABER_API saber_status saber_decode_canvas_pointer(saber_decode decode, void **out_pointer) {
    return SABER_READ_HANDLE(decode, out_pointer, decode->state.canvas);
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

}  // extern "C"
