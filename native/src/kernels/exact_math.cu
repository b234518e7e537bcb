// The exact step arithmetic (exact_math.h) evaluated on the device, element by element: what lets a test compare the
// device's bits with the host build's (saber_exact_eval_device against saber_exact_eval). Not on the decode path.
#include "exact_math.h"
#include "kernels.h"

namespace saber {
namespace {

constexpr int kThreads = 256;

__global__ void exact_eval_kernel(int32_t function, const float *__restrict__ inputs, float *__restrict__ outputs, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        outputs[i] = exact::evaluate(function, inputs[i]);
}

__global__ void fixed_terms_kernel(const float *__restrict__ inputs, uint64_t *__restrict__ outputs, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        outputs[i] = exact::fixed_term(inputs[i]);
}

/// outputs[4i ... 4i + 3] = exact::scaled_terms_fast(d) (sum, entropy) and the definition's exact::scaled_terms(d, 0)
/// (sum, entropy), for d = inputs[i].
__global__ void scaled_terms_kernel(const float *__restrict__ inputs, float *__restrict__ outputs, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const exact::ScaledTerms fast = exact::scaled_terms_fast(inputs[i]), definition = exact::scaled_terms(inputs[i], 0.0f);
        float *out = outputs + 4 * i;
        out[0] = fast.sum;
        out[1] = fast.entropy;
        out[2] = definition.sum;
        out[3] = definition.entropy;
    }
}

/// One thread runs the whole row definition: a reference, not a fast path.
__global__ void exact_row_kernel(const float *__restrict__ row, ExactRowArguments a, exact::RowResult *__restrict__ result) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
        *result = exact::row_reference(row, a.vocabulary, a.mask_id, a.token, a.metric, a.temperature, a.seed, a.step, a.sequence, a.position);
}

unsigned blocks_for(int64_t count) {
    const int64_t blocks = (count + kThreads - 1) / kThreads;
    return static_cast<unsigned>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

}  // namespace

cudaError_t launch_exact_row(const float *row, const ExactRowArguments &arguments, exact::RowResult *result, cudaStream_t stream) {
    exact_row_kernel<<<1, 1, 0, stream>>>(row, arguments, result);
    return cudaGetLastError();
}

cudaError_t launch_exact_eval(int32_t function, const float *inputs, float *outputs, int64_t count, cudaStream_t stream) {
    exact_eval_kernel<<<blocks_for(count), kThreads, 0, stream>>>(function, inputs, outputs, count);
    return cudaGetLastError();
}

cudaError_t launch_fixed_terms(const float *inputs, uint64_t *outputs, int64_t count, cudaStream_t stream) {
    fixed_terms_kernel<<<blocks_for(count), kThreads, 0, stream>>>(inputs, outputs, count);
    return cudaGetLastError();
}

cudaError_t launch_scaled_terms(const float *inputs, float *outputs, int64_t count, cudaStream_t stream) {
    scaled_terms_kernel<<<blocks_for(count), kThreads, 0, stream>>>(inputs, outputs, count);
    return cudaGetLastError();
}

}  // namespace saber
