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

/// outputs[5i ... 5i + 4] = exact::fixed_exp(d), fixed_exp_entropy(d) (sum, entropy), and the compositions they stand
/// for, fixed_term(e) and fixed_term(mul(e, -d)) with e = exp_nonpositive(d), for d = inputs[i].
__global__ void fixed_exp_kernel(const float *__restrict__ inputs, uint64_t *__restrict__ outputs, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float d = inputs[i], e = exact::exp_nonpositive(d);
        const exact::FixedTerms both = exact::fixed_exp_entropy(d);
        uint64_t *out = outputs + 5 * i;
        out[0] = exact::fixed_exp(d);
        out[1] = both.sum;
        out[2] = both.entropy;
        out[3] = exact::fixed_term(e);
        out[4] = exact::fixed_term(exact::mul(e, -d));
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

cudaError_t launch_fixed_exp(const float *inputs, uint64_t *outputs, int64_t count, cudaStream_t stream) {
    fixed_exp_kernel<<<blocks_for(count), kThreads, 0, stream>>>(inputs, outputs, count);
    return cudaGetLastError();
}

}  // namespace saber
