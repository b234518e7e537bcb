// The row plan of step 1 (kernels/row_plan.h); later steps' plans are written by the step's last decide block.
#include "kernels.h"
#include "row_plan.h"

namespace saber {
namespace {

__global__ void __launch_bounds__(256) plan_rows_kernel(DecodeState s) { plan_rows(s); }

}  // namespace

cudaError_t launch_plan_rows(const DecodeState &state, cudaStream_t stream) {
    plan_rows_kernel<<<1, 256, 0, stream>>>(state);
    return cudaGetLastError();
}

}  // namespace saber
