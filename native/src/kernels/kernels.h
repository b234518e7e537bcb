// Launchers of the step kernels; each queues work on `stream` and returns the launch status.
#pragma once

#include <cuda_runtime.h>

#include <stddef.h>

#include "decode_state.h"
#include "exact_math.h"

namespace saber {

/// Which implementation of the row pass runs: the fast one (warps reduce 1024-id chunks, rows split across blocks when
/// rows are few), or the reference one (one thread per row runs exact::row_reference_of) it is checked against. Both
/// compute exactly exact::row_reference's bits.
enum class RowPath { Fast, Reference };

/// Row confidence (kernels/row_confidence.cu): one pass over each active logits row.
cudaError_t launch_row_confidence(const DecodeState &state, const void *logits, int32_t dtype, cudaStream_t stream,
                                  RowPath path = RowPath::Fast);

/// How the fast row pass cuts a row: `splits` blocks, each reading `chunks` whole exact::kChunk-id chunks (the last
/// split fewer; none empty). A row is cut only between chunks.
struct RowSplit {
    int splits;
    int chunks;
};

/// The split for `rows` active rows of `vocabulary` logits on `multiprocessors` SMs that each hold `resident_blocks`
/// fast-path blocks (row_pass_resident_blocks): one block per row when rows fill a wave (multiprocessors x
/// resident_blocks blocks), otherwise the split of at most chunks / 16 splits (each at least 16 chunks, 16384 logits,
/// long) whose blocks finish soonest in whole waves (waves x chunks per split; the fewest splits on a tie). A pure host
/// function.
RowSplit plan_row_split(int rows, int vocabulary, int multiprocessors, int resident_blocks);

/// Fast-path row-pass blocks resident per SM for logits of `dtype` under `options` (the kernel instantiation a step
/// would launch: dtype, greedy or sampled, entropy or not), by cudaOccupancyMaxActiveBlocksPerMultiprocessor on the
/// current device; if the query fails, the figure ptxas's register counts give (4 greedy, 3 sampled on sm_90).
int row_pass_resident_blocks(int32_t dtype, const saber_decode_options &options);

/// About `splits` equal runs of whole chunks (fewer splits when there are fewer chunks, or a split would be empty).
RowSplit fixed_row_split(int vocabulary, int splits);

/// Bytes of the fast row pass's chunk scratch for `rows` rows: rows * ceil(V / 1024) * sizeof(exact::ChunkPartial).
size_t chunk_partial_bytes(size_t rows, int vocabulary);

/// Bytes of the split row pass's per-split scratch for `rows` rows cut into `splits` splits (0 when splits == 1).
size_t split_partial_bytes(size_t rows, int splits);

/// Writes the row plan of the next step (kernels/row_plan.h) from the sequences' state: once at initialization; the
/// step's last decide block writes it after every step.
cudaError_t launch_plan_rows(const DecodeState &state, cudaStream_t stream);

/// Decide (kernels/decide.cu): the strategy's step rule, one block per sequence, then the step's
/// bookkeeping (step counter, NFE, done flags, status for the host).
cudaError_t launch_decide(const DecodeState &state, cudaStream_t stream);

/// The arguments of exact::row_reference besides the row.
struct ExactRowArguments {
    int vocabulary, mask_id, token, metric;
    float temperature;
    uint64_t seed;
    int step, sequence, position;
};

/// exact::row_reference of one device row, computed by one device thread into *result (kernels/exact_math.cu).
cudaError_t launch_exact_row(const float *row, const ExactRowArguments &arguments, exact::RowResult *result, cudaStream_t stream);

/// The exact step arithmetic element by element (kernels/exact_math.cu): outputs[i] = evaluate(function, inputs[i]).
cudaError_t launch_exact_eval(int32_t function, const float *inputs, float *outputs, int64_t count, cudaStream_t stream);

/// outputs[i] = fixed_term(inputs[i]) (kernels/exact_math.cu).
cudaError_t launch_fixed_terms(const float *inputs, uint64_t *outputs, int64_t count, cudaStream_t stream);

/// For d = inputs[i], outputs[4i ... 4i + 3] = exact::scaled_terms_fast(d) (sum, entropy) and exact::scaled_terms(d, 0)
/// (sum, entropy), computed on the device (kernels/exact_math.cu; device memory, for the device tests).
cudaError_t launch_scaled_terms(const float *inputs, float *outputs, int64_t count, cudaStream_t stream);

/// destination[i] = source[i] widened to int64 for i in [0, count), grid-stride with 64-bit indices
/// (kernels/widen_ids.cu; saber_context_widen_ids). count <= 0 queues nothing.
cudaError_t launch_widen_ids(const int32_t *source, int64_t *destination, int64_t count, cudaStream_t stream);

}  // namespace saber
