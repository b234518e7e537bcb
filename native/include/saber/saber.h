/* Saber.Native C ABI: fused decode-step kernels for masked diffusion language models.
 *
 * Plain C: opaque handles, fixed-width integers, enums passed as int32_t. Every call returns a
 * saber_status; on failure saber_last_error() returns a message for the calling thread naming the
 * bad value. Arguments are checked before any work is queued, so a failed call changes nothing.
 * No C++ type or exception crosses this boundary.
 *
 * Flow: create a context (device + stream), create a decode for a batch of prompts, then for each
 * step let the model write logits [batch, length, vocabulary] into device memory on the context's
 * stream and call saber_decode_step; nothing in a step waits for the host. saber_decode_poll tells
 * whether every sequence has finished, from a small pinned status block copied after each step.
 * The strategies are specified in docs/strategies.md.
 */
#ifndef SABER_SABER_H
#define SABER_SABER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SABER_API __declspec(dllexport)
#else
#define SABER_API __attribute__((visibility("default")))
#endif

/** The ABI version; bumped on every incompatible change of this header. */
#define SABER_ABI_VERSION 2

/** Status of every call. */
typedef enum saber_status {
    SABER_OK = 0,
    /** An argument is invalid; nothing was done. */
    SABER_ERROR_INVALID_ARGUMENT = 1,
    /** A CUDA call failed; the message names the call and the CUDA error. */
    SABER_ERROR_CUDA = 2,
    /** Device memory or pinned host memory could not be allocated. */
    SABER_ERROR_OUT_OF_MEMORY = 3,
    /** A step met a NaN or +inf logit, or a row with no finite logit besides the mask id. */
    SABER_ERROR_INVALID_LOGITS = 4,
    /** The library was built without CUDA, no CUDA device is present, or the device is older than sm_80 (compute
     *  capability 8.0, which the kernels need). */
    SABER_ERROR_NO_DEVICE = 5,
    /** The decode has already finished; no further step is accepted. */
    SABER_ERROR_FINISHED = 6
} saber_status;

/** Element type of a logits tensor. */
typedef enum saber_dtype {
    SABER_DTYPE_FLOAT32 = 0,
    SABER_DTYPE_FLOAT16 = 1,
    SABER_DTYPE_BFLOAT16 = 2
} saber_dtype;

/** Decoding strategy. */
typedef enum saber_strategy {
    /** Adaptive threshold plus backtracking re-masking. */
    SABER_STRATEGY_SABER = 0,
    /** LLaDA's low-confidence re-masking: a fixed number of steps. */
    SABER_STRATEGY_LOW_CONFIDENCE = 1,
    /** Fast-dLLM's threshold rule. */
    SABER_STRATEGY_THRESHOLD = 2,
    /** Fast-dLLM's factor rule: the i-th most confident masked position needs c >= 1 - factor / (i + 1). */
    SABER_STRATEGY_FACTOR = 3
} saber_strategy;

/** Reading of Saber: the authors' released code, or the paper's text. */
typedef enum saber_variant {
    SABER_VARIANT_REFERENCE = 0,
    SABER_VARIANT_PAPER = 1
} saber_variant;

/** Ranking metric of the low-confidence strategy. */
typedef enum saber_metric {
    SABER_METRIC_MAXPROB = 0,
    SABER_METRIC_MARGIN = 1,
    SABER_METRIC_NEGENTROPY = 2,
    SABER_METRIC_RANDOM = 3
} saber_metric;

/** Functions of the exact step arithmetic (native/src/exact_math.h, docs/arithmetic.md), for saber_exact_eval. */
typedef enum saber_exact_function {
    /** e^x for x in [-inf, 0]. */
    SABER_EXACT_EXP = 0,
    /** ln x for a positive normal x. */
    SABER_EXACT_LOG = 1,
    /** The Gumbel transform -ln(-ln u) for u in [2^-24, 1 - 2^-24]. */
    SABER_EXACT_GUMBEL = 2
} saber_exact_function;

/** Everything a decode needs besides the model and the prompts; the same fields as the C# DecodeOptions. */
typedef struct saber_decode_options {
    /** G in [1, 1048576] (2^20, as the C# API): generated positions after each prompt. */
    int32_t generation_length;
    /** K > 0 dividing G: semi-autoregressive block length. */
    int32_t block_length;
    /** A saber_strategy. */
    int32_t strategy;
    /** A saber_variant (Saber only). */
    int32_t variant;
    /** n >= 1 (Saber only). */
    int32_t min_tokens_per_step;
    /** mu >= 1 (Saber only). */
    int32_t remask_divisor;
    /** Non-zero: re-mask (step 7); zero: the "no backtracking" ablation (Saber only). */
    int32_t backtracking;
    /** Non-zero: draft against fixed_threshold instead of tau (Saber ablation). */
    int32_t use_fixed_threshold;
    /** Threshold of the fixed-threshold ablation, in (0, 1]. */
    float fixed_threshold;
    /** S > 0, a multiple of the block count, at most 16 G: steps past G commit nothing (low-confidence only). */
    int32_t steps;
    /** A saber_metric (low-confidence only). */
    int32_t metric;
    /** theta in (0, 1] (threshold strategy only). */
    float threshold;
    /** T >= 0, finite; above zero predictions are Gumbel-max draws. */
    float temperature;
    /** The factor, finite and > 0 (factor strategy only). It fills what was padding before seed, so the struct's size
     *  and every other offset are those of ABI version 1 before it existed. */
    float factor;
    /** Philox key of the Gumbel draws and the random metric. */
    uint64_t seed;
} saber_decode_options;

/** Progress of a decode as the host sees it after a poll. */
typedef struct saber_decode_status {
    /** Steps queued so far. */
    int32_t steps;
    /** Sequences not yet finished after the last completed step. */
    int32_t active_sequences;
    /** A saber_status: SABER_ERROR_INVALID_LOGITS when a step met bad logits, else SABER_OK. */
    int32_t error;
    /** Where the first bad logit was (valid when error != SABER_OK): step, sequence, position, vocabulary
     *  index (the vocabulary size V when the row had no finite logit besides the mask id). */
    int32_t error_step;
    int32_t error_sequence;
    int32_t error_position;
    int32_t error_vocabulary_index;
} saber_decode_status;

/** One step of one sequence in the trace ring. */
typedef struct saber_trace_step {
    /** 1-based step number; 0 when the ring holds no such step for this sequence. */
    int32_t step;
    /** Tokens committed and re-masked in this step. */
    int32_t committed;
    int32_t remasked;
    int32_t reserved;
    /** The threshold the Saber draft used; NaN for the other strategies. */
    double tau;
} saber_trace_step;

/** Bits of a trace event per generation position. */
#define SABER_TRACE_COMMITTED 1
#define SABER_TRACE_REMASKED 2

/** Size and field offsets of an ABI struct, for binding checks. */
typedef struct saber_struct_layout {
    /** The struct's name as spelled in this header. */
    const char *name;
    /** sizeof the struct. */
    uint32_t size;
    /** Number of fields described in field_names / field_offsets. */
    uint32_t field_count;
    /** Field names in declaration order. */
    const char *const *field_names;
    /** offsetof each field. */
    const uint32_t *field_offsets;
} saber_struct_layout;

typedef struct saber_context_impl *saber_context;
typedef struct saber_buffer_impl *saber_buffer;
typedef struct saber_decode_impl *saber_decode;

/** SABER_ABI_VERSION of the library (compare with the header you compiled against). */
SABER_API int32_t saber_abi_version(void);

/** Non-zero when the library was built with CUDA. */
SABER_API int32_t saber_built_with_cuda(void);

/** The calling thread's message for its last failed call ("" when none). Valid until the thread's next call. */
SABER_API const char *saber_last_error(void);

/** Layouts of every ABI struct: *out_layouts points to a static array of *out_count entries. */
SABER_API saber_status saber_struct_layouts(const saber_struct_layout **out_layouts, int32_t *out_count);

/** Checks options for a vocabulary and mask id as saber_decode_create does, without a device. */
SABER_API saber_status saber_validate_options(const saber_decode_options *options, int32_t vocabulary, int32_t mask_id);

/** The raw Philox4x32-10 draw of the documented layout at (seed, step, sequence, position, v). */
SABER_API uint32_t saber_random_bits(uint64_t seed, int32_t step, int32_t sequence, int32_t position, int32_t v);

/** The host build of the exact step arithmetic: outputs[i] = function(inputs[i]) for a saber_exact_function, the
 *  same bits the device computes; for testing other implementations against it. An input outside the function's
 *  domain is an argument error naming its index, and nothing is written. */
SABER_API saber_status saber_exact_eval(int32_t function, const float *inputs, float *outputs, int64_t count);

/** outputs[i] = floor(inputs[i] * 2^42), the fixed-point softmax term, for inputs in [0, 1]; like saber_exact_eval. */
SABER_API saber_status saber_exact_fixed_terms(const float *inputs, uint64_t *outputs, int64_t count);

/** The definition of one row's quantities (spec §2) in the exact arithmetic, host build: prediction, c, q and the
 *  metric of `vocabulary` float logits. token: the id whose probability q is wanted, or -1 (q is NaN); metric: a
 *  saber_metric; temperature >= 0 with the Philox coordinates (seed, step, sequence, position) of the row's draws.
 *  out_values receives {c, q, metric}. A bad row is not an error of the call: *out_prediction is -1 and
 *  *out_bad_index the lowest id of a NaN or +inf logit, or `vocabulary` when no logit besides the mask id's is finite
 *  (else -1). For testing other implementations against it. */
SABER_API saber_status saber_exact_row(const float *row, int32_t vocabulary, int32_t mask_id, int32_t token, int32_t metric, float temperature,
                                       uint64_t seed, int32_t step, int32_t sequence, int32_t position, int32_t *out_prediction,
                                       int32_t *out_bad_index, float *out_values);

/** saber_exact_row computed on the context's device (one thread runs the definition), like saber_exact_eval_device. */
SABER_API saber_status saber_exact_row_device(saber_context context, const float *row, int32_t vocabulary, int32_t mask_id, int32_t token,
                                              int32_t metric, float temperature, uint64_t seed, int32_t step, int32_t sequence,
                                              int32_t position, int32_t *out_prediction, int32_t *out_bad_index, float *out_values);

/** saber_exact_eval on the context's device: the inputs are copied to the device, evaluated by the same header compiled
 *  for it, and copied back (synchronously); for testing that the device computes the host's bits. */
SABER_API saber_status saber_exact_eval_device(saber_context context, int32_t function, const float *inputs, float *outputs, int64_t count);

/** saber_exact_fixed_terms on the context's device, like saber_exact_eval_device. */
SABER_API saber_status saber_exact_fixed_terms_device(saber_context context, const float *inputs, uint64_t *outputs, int64_t count);

/** Creates a context on CUDA device `device` with its own non-blocking stream. Every call on the context and on the
 * buffers and decodes created from it runs on `device`, from any thread, and leaves the calling thread's current CUDA
 * device as it was. A device of compute capability below 8.0 is SABER_ERROR_NO_DEVICE, naming it and its capability. */
SABER_API saber_status saber_context_create(int32_t device, saber_context *out_context);

/** Destroys a context (NULL is allowed). Buffers and decodes created from it must be destroyed first: while any is
 * alive this fails with SABER_ERROR_INVALID_ARGUMENT, naming how many, and the context stays alive. */
SABER_API saber_status saber_context_destroy(saber_context context);

/** The context's cudaStream_t, for models that write logits on the same stream (e.g. an ONNX Runtime session given it). */
SABER_API saber_status saber_context_stream(saber_context context, void **out_stream);

/** Waits until all work queued on the context's stream has finished. */
SABER_API saber_status saber_context_synchronize(saber_context context);

/**
 * Copies `bytes` from host memory to the device address `device_destination` (any device memory, e.g.
 * the logits a model must fill), ordered on the context's stream; returns when the copy is done.
 * The device range is not checked: it must lie inside one allocation.
 */
SABER_API saber_status saber_context_copy_to_device(saber_context context, void *device_destination, const void *host_source, uint64_t bytes);

/** Copies `bytes` from the device address `device_source` to host memory, like saber_context_copy_to_device. */
SABER_API saber_status saber_context_copy_to_host(saber_context context, void *host_destination, const void *device_source, uint64_t bytes);

/**
 * Queues on the context's stream a kernel writing int64_t device_destination[i] = int32_t device_source[i] for i in
 * [0, count), e.g. the decode's int32 canvases (saber_decode_canvas_pointer) into a model's int64 input_ids; returns
 * without waiting. Capturable in a CUDA graph. count == 0 does nothing. A negative count, a null pointer with count > 0,
 * a source not 4-byte or a destination not 8-byte aligned, or overlapping ranges are SABER_ERROR_INVALID_ARGUMENT naming
 * the value, checked before anything is queued. The device ranges must each lie inside one allocation.
 */
SABER_API saber_status saber_context_widen_ids(saber_context context, const void *device_source, void *device_destination, int64_t count);

/** Allocates `bytes` (> 0) of device memory. */
SABER_API saber_status saber_buffer_create(saber_context context, uint64_t bytes, saber_buffer *out_buffer);

/** Frees a buffer (NULL is allowed). */
SABER_API saber_status saber_buffer_destroy(saber_buffer buffer);

/** The buffer's device address. */
SABER_API saber_status saber_buffer_device_pointer(saber_buffer buffer, void **out_pointer);

/** Copies `bytes` from host memory to the buffer at `offset`, ordered on the context's stream; returns when the copy is done. */
SABER_API saber_status saber_buffer_upload(saber_buffer buffer, uint64_t offset, const void *host, uint64_t bytes);

/** Copies `bytes` from the buffer at `offset` to host memory; returns when the copy is done. */
SABER_API saber_status saber_buffer_download(saber_buffer buffer, uint64_t offset, void *host, uint64_t bytes);

/**
 * Creates the decode state of a batch: canvases (prompt followed by G masks), decoded flags, commit
 * confidences, previous confidences, block cursors, NFE and done flags, on the device.
 * batch lies in [1, 65535]; prompt_tokens holds the prompts back to back; prompt_lengths[b] is prompt b's length P_b.
 * The canvas of sequence b is P_b + G tokens; canvases and logits are laid out with a row pitch of
 * length = max_b(P_b) + G positions: logits for a step are [batch, length, vocabulary] and
 * sequence b's rows are 0 .. P_b + G - 1 of its slice.
 * trace_capacity > 0 keeps, per sequence, a ring of that many steps of trace on the device.
 */
SABER_API saber_status saber_decode_create(saber_context context, const saber_decode_options *options,
                                           int32_t vocabulary, int32_t mask_id, int32_t batch,
                                           const int32_t *prompt_tokens, const int32_t *prompt_lengths,
                                           int32_t trace_capacity, saber_decode *out_decode);

/** Destroys a decode (NULL is allowed). */
SABER_API saber_status saber_decode_destroy(saber_decode decode);

/** The row pitch `length` (max prompt length + G) of canvases and logits. */
SABER_API saber_status saber_decode_length(saber_decode decode, int32_t *out_length);

/** Device address of the canvases, int32 [batch, length] (positions past a sequence's canvas hold the mask id). */
SABER_API saber_status saber_decode_canvas_pointer(saber_decode decode, void **out_pointer);

/**
 * Queues one step of every unfinished sequence on the context's stream, given the model's logits
 * for the current canvases at `device_logits` ([batch, length, vocabulary] of `dtype`, contiguous).
 * Returns without waiting. Capturable in a CUDA graph. A decode's steps run one after another: a
 * captured step replayed on another stream must not overlap another step of the same decode (queue
 * them on one stream or order them with events), since every step of a decode reads and writes the
 * same device state (canvases, step counter, the decide blocks' completion count, the status).
 */
SABER_API saber_status saber_decode_step(saber_decode decode, const void *device_logits, int32_t dtype);

/**
 * Waits for the last queued step and reports progress; a decode is finished when active_sequences is 0.
 * Steps replayed from a CUDA graph count: the status is written by the device itself at the end of
 * every step (into mapped pinned memory), and the step's completion event is recorded as an external
 * graph node when saber_decode_step is captured.
 */
SABER_API saber_status saber_decode_poll(saber_decode decode, saber_decode_status *out_status);

/**
 * Never waits: the status after the most recent step the device has finished, and in
 * *out_finished_steps how many steps it has finished since the decode was created or reset (steps
 * that met bad logits count; so do steps replayed from a CUDA graph). Lets a host loop queue step
 * k + 1 before step k's status is in, and wait for it without blocking a thread in the driver.
 * Before the first step: the initial status and 0.
 */
SABER_API saber_status saber_decode_query(saber_decode decode, saber_decode_status *out_status, int64_t *out_finished_steps);

/**
 * Copies the canvases ([batch, length] int32), per-sequence NFE ([batch] int32) and done flags
 * ([batch] int32, non-zero once a sequence has finished) to host memory; any output may be NULL.
 */
SABER_API saber_status saber_decode_read(saber_decode decode, int32_t *out_canvases, int32_t *out_nfe, int32_t *out_done);

/**
 * Reads step `step` (1-based) of sequence `sequence` from the trace ring (trace_capacity > 0 at
 * creation; the ring keeps the last trace_capacity steps). Per generation position g (G entries each):
 * out_events[g] has SABER_TRACE_COMMITTED / SABER_TRACE_REMASKED bits, out_tokens[g] the committed
 * token, out_confidences[g] its confidence, out_deltas[g] the confidence change of a re-masked token.
 */
SABER_API saber_status saber_decode_read_trace(saber_decode decode, int32_t sequence, int32_t step,
                                               saber_trace_step *out_step, int32_t *out_events, int32_t *out_tokens,
                                               float *out_confidences, float *out_deltas);

/** Records a timing event on the context's stream; saber_elapsed_ms gives the time between two. */
SABER_API saber_status saber_event_record(saber_context context, void **out_event);

/** Milliseconds between two recorded events (waits for the second); destroys neither. */
SABER_API saber_status saber_event_elapsed_ms(void *start, void *end, float *out_ms);

/** Destroys an event from saber_event_record (NULL is allowed). */
SABER_API saber_status saber_event_destroy(void *event);

#ifdef __cplusplus
}
#endif

#endif /* SABER_SABER_H */
