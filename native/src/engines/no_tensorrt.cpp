// TensorRT engines in a library built without TensorRT: every attempt says how to get one.
#include "../common.h"
#include "engine.h"

namespace saber {

bool built_with_tensorrt() { return false; }

saber_status create_tensorrt_engine(const char *, std::unique_ptr<Engine> &) {
    return fail(SABER_ERROR_UNSUPPORTED, "%s: libsaber_native was built without TensorRT; configure with -DTensorRT_ROOT=<TensorRT install> "
                                         "(and SABER_CUDA=ON) to load .plan engines", entry_point());
}

}  // namespace saber
