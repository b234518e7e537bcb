// Token ids widened from int32 to int64 on the device: the decode's canvases are int32, ONNX Runtime models take int64
// input_ids (saber_context_widen_ids). Not on the decode step's path: the model's input, queued before its forward pass.
#include "kernels.h"

namespace saber {
namespace {

constexpr int kWidenThreads = 256;
/// At most this many blocks; the grid-stride loop covers the rest (count may pass 2^31).
constexpr int64_t kWidenMaxBlocks = 8192;

__global__ void __launch_bounds__(kWidenThreads) widen_ids_kernel(const int32_t *__restrict__ source, int64_t *__restrict__ destination,
                                                                 int64_t count) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count; i += stride)
        destination[i] = static_cast<int64_t>(source[i]);
}

}  // namespace

cudaError_t launch_widen_ids(const int32_t *source, int64_t *destination, int64_t count, cudaStream_t stream) {
    if (count <= 0) return cudaSuccess;
    const int64_t needed = (count + kWidenThreads - 1) / kWidenThreads;
    const unsigned blocks = static_cast<unsigned>(needed < kWidenMaxBlocks ? needed : kWidenMaxBlocks);
    widen_ids_kernel<<<blocks, kWidenThreads, 0, stream>>>(source, destination, count);
    return cudaGetLastError();
}

}  // namespace saber
