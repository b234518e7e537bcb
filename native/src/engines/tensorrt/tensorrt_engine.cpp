// A TensorRT engine (TensorRT 8.6+ / 10 name-based I/O API): deserialised from a .plan file, its
// tensors checked once, then each forward pass sets the input shape and the two tensor addresses and
// calls enqueueV3 on the decode's stream. Built only when CMake finds TensorRT (TensorRT_ROOT).
//
// Expected tensors: one input "input_ids" int32 [batch, sequence] (dynamic dims from an optimisation
// profile) and one output "logits" float32 / float16 / bfloat16 [batch, sequence, V] with a fixed V.
#include <NvInferRuntime.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../common.h"
#include "../engine.h"

namespace saber {
namespace {

class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char *message) noexcept override {
        // Errors reach the caller through saber_last_error; keep TensorRT's own text for it.
        if (severity <= Severity::kERROR) last = message;
    }
    std::string last;
};

const char *const kInput = "input_ids";
const char *const kOutput = "logits";

class TensorRtEngine final : public Engine {
public:
    TensorRtEngine(std::unique_ptr<Logger> logger, std::unique_ptr<nvinfer1::IRuntime> runtime, std::unique_ptr<nvinfer1::ICudaEngine> engine,
                   std::unique_ptr<nvinfer1::IExecutionContext> context, int32_t vocabulary, int32_t dtype)
        : logger_(std::move(logger)), runtime_(std::move(runtime)), engine_(std::move(engine)), context_(std::move(context)),
          vocabulary_(vocabulary), dtype_(dtype) {}

    ~TensorRtEngine() override {
        // Destruction order matters: context, then engine, then runtime.
        context_.reset();
        engine_.reset();
        runtime_.reset();
    }

    saber_status forward(const int32_t *token_ids, int32_t batch, int32_t length, void *logits, cudaStream_t stream) override {
        nvinfer1::Dims shape{};
        shape.nbDims = 2;
        shape.d[0] = batch;
        shape.d[1] = length;
        if (!context_->setInputShape(kInput, shape))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: the engine does not accept input_ids of shape [%d, %d] (outside its optimisation profile): %s",
                        entry_point(), batch, length, logger_->last.c_str());
        if (!context_->setTensorAddress(kInput, const_cast<int32_t *>(token_ids)) || !context_->setTensorAddress(kOutput, logits))
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: TensorRT rejected a tensor address: %s", entry_point(), logger_->last.c_str());
        if (!context_->enqueueV3(stream))
            return fail(SABER_ERROR_CUDA, "%s: enqueueV3 failed: %s", entry_point(), logger_->last.c_str());
        return SABER_OK;
    }

    int32_t vocabulary() const override { return vocabulary_; }
    int32_t dtype() const override { return dtype_; }

private:
    std::unique_ptr<Logger> logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    int32_t vocabulary_, dtype_;
};

bool has_tensor(const nvinfer1::ICudaEngine &engine, const char *name, nvinfer1::TensorIOMode mode) {
    for (int32_t i = 0; i < engine.getNbIOTensors(); ++i)
        if (std::string(engine.getIOTensorName(i)) == name) return engine.getTensorIOMode(name) == mode;
    return false;
}

}  // namespace

bool built_with_tensorrt() { return true; }

saber_status create_tensorrt_engine(const char *plan_path, std::unique_ptr<Engine> &out) {
    std::ifstream file(plan_path, std::ios::binary);
    if (!file) return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: cannot open engine file '%s'", entry_point(), plan_path);
    const std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    auto logger = std::make_unique<Logger>();
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(*logger));
    if (!runtime) return fail(SABER_ERROR_CUDA, "%s: createInferRuntime failed: %s", entry_point(), logger->last.c_str());
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: '%s' is not a TensorRT engine for this TensorRT version and GPU: %s", entry_point(),
                    plan_path, logger->last.c_str());

    if (engine->getNbIOTensors() != 2 || !has_tensor(*engine, kInput, nvinfer1::TensorIOMode::kINPUT) ||
        !has_tensor(*engine, kOutput, nvinfer1::TensorIOMode::kOUTPUT))
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: '%s' must have exactly the input '%s' and the output '%s' (it has %d I/O tensors)",
                    entry_point(), plan_path, kInput, kOutput, engine->getNbIOTensors());
    const nvinfer1::Dims input = engine->getTensorShape(kInput), output = engine->getTensorShape(kOutput);
    if (engine->getTensorDataType(kInput) != nvinfer1::DataType::kINT32 || input.nbDims != 2)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: input '%s' of '%s' must be int32 [batch, sequence]", entry_point(), kInput, plan_path);
    if (output.nbDims != 3 || output.d[2] <= 0)
        return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: output '%s' of '%s' must be [batch, sequence, V] with a fixed V", entry_point(), kOutput, plan_path);
    int32_t dtype = 0;
    switch (engine->getTensorDataType(kOutput)) {
        case nvinfer1::DataType::kFLOAT: dtype = SABER_DTYPE_FLOAT32; break;
        case nvinfer1::DataType::kHALF: dtype = SABER_DTYPE_FLOAT16; break;
        case nvinfer1::DataType::kBF16: dtype = SABER_DTYPE_BFLOAT16; break;
        default:
            return fail(SABER_ERROR_INVALID_ARGUMENT, "%s: output '%s' of '%s' must be float32, float16 or bfloat16", entry_point(), kOutput, plan_path);
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context) return fail(SABER_ERROR_OUT_OF_MEMORY, "%s: createExecutionContext failed: %s", entry_point(), logger->last.c_str());
    out = std::make_unique<TensorRtEngine>(std::move(logger), std::move(runtime), std::move(engine), std::move(context),
                                           static_cast<int32_t>(output.d[2]), dtype);
    return SABER_OK;
}

}  // namespace saber
