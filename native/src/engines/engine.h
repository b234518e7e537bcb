// Model engines behind the C ABI's saber_engine: a forward pass that reads device token ids and
// writes device logits, queued on the decode's stream (no host copy between engine and step kernels).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "saber/saber.h"

namespace saber {

class Engine {
public:
    virtual ~Engine() = default;

    /// Queues the forward pass of token ids int32 [batch, length] into logits [batch, length, vocabulary()].
    virtual saber_status forward(const int32_t *token_ids, int32_t batch, int32_t length, void *logits, cudaStream_t stream) = 0;

    virtual int32_t vocabulary() const = 0;

    /// A saber_dtype.
    virtual int32_t dtype() const = 0;
};

/// Non-zero when the library was built with TensorRT.
bool built_with_tensorrt();

/// Deserialises a TensorRT engine file and checks its tensors (engines/tensorrt/tensorrt_engine.cpp);
/// SABER_ERROR_UNSUPPORTED from engines/no_tensorrt.cpp in a build without TensorRT.
saber_status create_tensorrt_engine(const char *plan_path, std::unique_ptr<Engine> &out);

}  // namespace saber
