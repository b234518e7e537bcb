// saber_bench: per-kernel and per-step timings of the decode-step kernels, with CUDA events after
// warm-up, the median of many runs, rotating logits buffers larger than L2, and the device-to-device
// copy bandwidth measured in the same run as the yardstick. Prints a markdown table.
//   saber_bench [--runs N] [--quick]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "philox.h"
#include "saber/saber.h"
#include "testing.h"

namespace {

#define CHECK_CUDA(call)                                                                                   \
    do {                                                                                                   \
        const cudaError_t e = (call);                                                                      \
        if (e != cudaSuccess) {                                                                            \
            std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e)); \
            std::exit(1);                                                                                  \
        }                                                                                                  \
    } while (0)

#define CHECK_SABER(call)                                                                                  \
    do {                                                                                                   \
        const saber_status s = (call);                                                                     \
        if (s != SABER_OK) {                                                                               \
            std::fprintf(stderr, "%s:%d: %s failed (%d): %s\n", __FILE__, __LINE__, #call, s, saber_last_error()); \
            std::exit(1);                                                                                  \
        }                                                                                                  \
    } while (0)

/// Fills logits with uniform values in [-8, 8) from Philox (no host round trip for gigabytes).
template <typename T>
__global__ void fill_logits(T *logits, size_t count, uint64_t seed) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const float u = saber::to_uniform(saber::random_bits(seed, 0, 0, static_cast<int>(i >> 20), static_cast<int>(i & 0xFFFFF)));
        logits[i] = static_cast<T>(16.0f * u - 8.0f);
    }
}

float median(std::vector<float> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

/// Median milliseconds of `body` (which queues work on `stream`), after `warmup` untimed runs.
template <typename Body>
float time_ms(cudaStream_t stream, int runs, int warmup, Body body) {
    cudaEvent_t start, stop;
    CHECK_CUDA(cudaEventCreate(&start));
    CHECK_CUDA(cudaEventCreate(&stop));
    std::vector<float> samples;
    for (int i = 0; i < warmup + runs; ++i) {
        body(i, true);
        CHECK_CUDA(cudaEventRecord(start, stream));
        body(i, false);
        CHECK_CUDA(cudaEventRecord(stop, stream));
        CHECK_CUDA(cudaEventSynchronize(stop));
        float ms = 0;
        CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
        if (i >= warmup) samples.push_back(ms);
    }
    CHECK_CUDA(cudaEventDestroy(start));
    CHECK_CUDA(cudaEventDestroy(stop));
    return median(samples);
}

struct Shape {
    int vocabulary, generation, batch, dtype;
};

}  // namespace

int main(int argc, char **argv) {
    int runs = 50;
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--quick")) quick = true;
        else {
            std::fprintf(stderr, "usage: saber_bench [--runs N] [--quick]\n");
            return 2;
        }
    }
    int device_count = 0;
    if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
        std::fprintf(stderr, "saber_bench: no CUDA device on this machine\n");
        return 1;
    }
    cudaDeviceProp prop{};
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    int driver = 0, runtime = 0;
    CHECK_CUDA(cudaDriverGetVersion(&driver));
    CHECK_CUDA(cudaRuntimeGetVersion(&runtime));
    std::printf("GPU: %s, L2 %d MiB, driver API %d, runtime %d\n\n", prop.name, prop.l2CacheSize >> 20, driver, runtime);

    saber_context context = nullptr;
    CHECK_SABER(saber_context_create(0, &context));
    void *stream_pointer = nullptr;
    CHECK_SABER(saber_context_stream(context, &stream_pointer));
    cudaStream_t stream = static_cast<cudaStream_t>(stream_pointer);

    // The yardstick: device-to-device copy of 2 GiB, counted as read + write.
    const size_t copy_bytes = size_t(2) << 30;
    void *copy_from = nullptr, *copy_to = nullptr;
    CHECK_CUDA(cudaMalloc(&copy_from, copy_bytes));
    CHECK_CUDA(cudaMalloc(&copy_to, copy_bytes));
    const float copy_ms = time_ms(stream, runs, 3, [&](int, bool) {
        CHECK_CUDA(cudaMemcpyAsync(copy_to, copy_from, copy_bytes, cudaMemcpyDeviceToDevice, stream));
    });
    const double copy_gbps = 2.0 * copy_bytes / (copy_ms * 1e6);
    CHECK_CUDA(cudaFree(copy_from));
    CHECK_CUDA(cudaFree(copy_to));
    std::printf("device-to-device copy: %.1f GB/s (read + write)\n\n", copy_gbps);

    std::vector<Shape> shapes;
    for (int vocabulary : {126464, 151936})
        for (int generation : {32, 256, 1024})
            for (int batch : {1, 8})
                for (int dtype : {SABER_DTYPE_BFLOAT16, SABER_DTYPE_FLOAT32})
                    if (!quick || (generation == 256 && batch == 1)) shapes.push_back({vocabulary, generation, batch, dtype});

    std::printf("| V | G | batch | dtype | logits MB | splits | confidence us | 1 split us | GB/s | %% of copy | saber step us | step / confidence | graph step us |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const Shape &shape : shapes) {
        const size_t element = shape.dtype == SABER_DTYPE_FLOAT32 ? 4 : 2;
        const size_t count = static_cast<size_t>(shape.batch) * shape.generation * shape.vocabulary;
        const size_t bytes = count * element;
        // Enough rotating buffers that their total exceeds twice the L2 cache.
        const int buffers = static_cast<int>(std::max<size_t>(2, (2 * static_cast<size_t>(prop.l2CacheSize)) / bytes + 1));
        std::vector<void *> logits(buffers);
        for (int i = 0; i < buffers; ++i) {
            CHECK_CUDA(cudaMalloc(&logits[i], bytes));
            if (shape.dtype == SABER_DTYPE_FLOAT32)
                fill_logits<<<1024, 256, 0, stream>>>(static_cast<float *>(logits[i]), count, 1000 + i);
            else
                fill_logits<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16 *>(logits[i]), count, 1000 + i);
        }
        CHECK_CUDA(cudaGetLastError());

        saber_decode_options o{};
        o.generation_length = shape.generation;
        o.block_length = shape.generation;
        o.strategy = SABER_STRATEGY_SABER;
        o.min_tokens_per_step = 2;
        o.remask_divisor = 8;
        o.backtracking = 1;
        std::vector<int32_t> prompt_lengths(shape.batch, 0);
        saber_decode decode = nullptr;
        CHECK_SABER(saber_decode_create(context, &o, shape.vocabulary, shape.vocabulary - 1, shape.batch, nullptr,
                                        prompt_lengths.data(), 0, &decode));

        const float confidence_ms = time_ms(stream, runs, 5, [&](int i, bool setup) {
            if (!setup) CHECK_SABER(saber::testing::launch_rows(decode, logits[i % buffers], shape.dtype));
        });
        // The same row pass with one block per row, to show what splitting the rows buys.
        const int splits = saber::testing::row_splits(decode);
        float unsplit_ms = confidence_ms;
        if (splits > 1) {
            CHECK_SABER(saber::testing::set_row_splits(decode, 1));
            unsplit_ms = time_ms(stream, runs, 5, [&](int i, bool setup) {
                if (!setup) CHECK_SABER(saber::testing::launch_rows(decode, logits[i % buffers], shape.dtype));
            });
            CHECK_SABER(saber::testing::set_row_splits(decode, splits));
        }
        // A full step from the initial state each time (reset outside the timed region).
        const float step_ms = time_ms(stream, runs, 5, [&](int i, bool setup) {
            if (setup) CHECK_SABER(saber::testing::reset(decode));
            else CHECK_SABER(saber_decode_step(decode, logits[i % buffers], shape.dtype));
        });
        // A CUDA graph of 8 consecutive steps, replayed from the initial state; time per step.
        constexpr int kGraphSteps = 8;
        CHECK_SABER(saber::testing::reset(decode));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        for (int k = 0; k < kGraphSteps; ++k) CHECK_SABER(saber_decode_step(decode, logits[k % buffers], shape.dtype));
        CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
        CHECK_CUDA(cudaGraphInstantiateWithFlags(&exec, graph, 0));
        const float graph_ms = time_ms(stream, std::max(5, runs / 5), 2, [&](int, bool setup) {
            if (setup) CHECK_SABER(saber::testing::reset(decode));
            else CHECK_CUDA(cudaGraphLaunch(exec, stream));
        }) / kGraphSteps;
        CHECK_CUDA(cudaGraphExecDestroy(exec));
        CHECK_CUDA(cudaGraphDestroy(graph));

        const double gbps = bytes / (confidence_ms * 1e6);
        std::printf("| %d | %d | %d | %s | %.1f | %d | %.1f | %.1f | %.0f | %.0f%% | %.1f | %.2f | %.1f |\n", shape.vocabulary, shape.generation,
                    shape.batch, shape.dtype == SABER_DTYPE_FLOAT32 ? "f32" : "bf16", bytes / 1e6, splits, confidence_ms * 1e3, unsplit_ms * 1e3, gbps,
                    100.0 * gbps / copy_gbps, step_ms * 1e3, step_ms / confidence_ms, graph_ms * 1e3);
        std::fflush(stdout);
        CHECK_SABER(saber_decode_destroy(decode));
        for (void *p : logits) CHECK_CUDA(cudaFree(p));
    }
    CHECK_SABER(saber_context_destroy(context));
    return 0;
}
