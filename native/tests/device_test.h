// The fixture of the device test binaries: skips (with the reason) without a CUDA device, else owns a context, and the
// decode and logits buffer a test creates.
#pragma once

#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include "saber/saber.h"
#include "test_support.h"

namespace saber_tests {

/// Skips (with the reason) when there is no CUDA device; otherwise a context on device 0. The decode and the logits
/// buffer, when a test creates them, are destroyed with it.
class DeviceTest : public ::testing::Test {
protected:
    void SetUp() override {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device on this machine";
        ASSERT_EQ(saber_context_create(0, &context), SABER_OK) << saber_last_error();
    }
    void TearDown() override {
        saber_decode_destroy(decode);
        saber_buffer_destroy(logits);
        saber_context_destroy(context);
    }

    saber_context context = nullptr;
    saber_decode decode = nullptr;
    saber_buffer logits = nullptr;
};

}  // namespace saber_tests
