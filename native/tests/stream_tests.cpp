// Device tests of how a decode meets its host: steps captured in a CUDA graph and replayed are polled and queried like
// queued ones (the device publishes each step's status itself), saber_decode_query never waits, and logits buffers of
// more than 2^31 elements are addressed in 64 bits. Without a CUDA device every test skips with the reason. Only the
// graph test uses CUDA graphs. Each test is a few small steps (a functional GPU simulator runs them).
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "exact_math.h"
#include "saber/saber.h"
#include "device_test.h"
#include "testing.h"

namespace {

using saber::exact::bits;
using Stream = saber_tests::DeviceTest;

/// A small Saber decode (G 16, K 8, V 64, batch 2) over fixed logits: one buffer, the same for every step, so that a graph
/// of one step can be replayed. Position g's best token is g % 7 + 1 (the mask, 63, has the row's largest logit).
class SmallDecode : public Stream {
protected:
    static constexpr int kVocabulary = 64, kMask = 63, kGeneration = 16, kBatch = 2;

    void SetUp() override {
        Stream::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        const saber_decode_options o = saber_tests::saber_options(kGeneration, 8, 2, 4);
        std::vector<int32_t> lengths{3, 1}, prompts{1, 2, 3, 4};
        ASSERT_EQ(saber_decode_create(context, &o, kVocabulary, kMask, kBatch, prompts.data(), lengths.data(), 0, &decode), SABER_OK)
            << saber_last_error();
        ASSERT_EQ(saber_decode_length(decode, &length), SABER_OK);
        const size_t rows = static_cast<size_t>(kBatch) * length;
        std::vector<float> values(rows * kVocabulary);
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
        for (size_t r = 0; r < rows; ++r) {
            float *row = values.data() + r * kVocabulary;
            for (int v = 0; v < kVocabulary; ++v) row[v] = uniform(rng);
            row[r % 7 + 1] = 4.0f + static_cast<float>(r % 5);
            row[kMask] = 50.0f;
        }
        ASSERT_EQ(saber_buffer_create(context, values.size() * 4, &logits), SABER_OK);
        ASSERT_EQ(saber_buffer_upload(logits, 0, values.data(), values.size() * 4), SABER_OK);
        ASSERT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
    }

    std::vector<int32_t> Canvases() {
        std::vector<int32_t> canvas(static_cast<size_t>(kBatch) * length);
        EXPECT_EQ(saber_decode_read(decode, canvas.data(), nullptr, nullptr), SABER_OK) << saber_last_error();
        return canvas;
    }

    int32_t length = 0;
    void *pointer = nullptr;
};

TEST_F(SmallDecode, StepsReplayedFromAGraphArePolledAndQueriedLikeQueuedSteps) {
    // Queued one by one: the status after each of the first three steps, and the canvases after them.
    constexpr int kSteps = 3;
    std::vector<saber_decode_status> queued;
    for (int k = 1; k <= kSteps; ++k) {
        saber_decode_status status{};
        ASSERT_EQ(saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32), SABER_OK) << saber_last_error();
        ASSERT_EQ(saber_decode_poll(decode, &status), SABER_OK) << saber_last_error();
        ASSERT_EQ(status.steps, k);
        ASSERT_EQ(status.error, SABER_OK);
        queued.push_back(status);
    }
    ASSERT_GT(queued.back().active_sequences, 0) << "the test needs a decode that is still running after " << kSteps << " steps";
    const std::vector<int32_t> expected = Canvases();

    // The same from the start, as one captured step replayed three times.
    ASSERT_EQ(saber::testing::reset(decode), SABER_OK) << saber_last_error();
    void *raw_stream = nullptr;
    ASSERT_EQ(saber_context_stream(context, &raw_stream), SABER_OK);
    cudaStream_t stream = static_cast<cudaStream_t>(raw_stream);
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const saber_status captured = saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32);
    const std::string captured_error = captured == SABER_OK ? "" : saber_last_error();
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(captured, SABER_OK) << captured_error;
    ASSERT_EQ(cudaGraphInstantiateWithFlags(&exec, graph, 0), cudaSuccess);

    saber_decode_status status{};
    int64_t finished = -1;
    ASSERT_EQ(saber_decode_query(decode, &status, &finished), SABER_OK);
    EXPECT_EQ(finished, 0) << "capturing queues nothing";
    EXPECT_EQ(status.steps, 0);
    for (int k = 1; k <= kSteps; ++k) {
        ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
        ASSERT_EQ(saber_decode_poll(decode, &status), SABER_OK) << saber_last_error();
        EXPECT_EQ(status.steps, k) << "poll after replay " << k << " read a stale status";
        EXPECT_EQ(status.active_sequences, queued[static_cast<size_t>(k - 1)].active_sequences) << "replay " << k;
        EXPECT_EQ(status.error, SABER_OK);
        saber_decode_status queried{};
        ASSERT_EQ(saber_decode_query(decode, &queried, &finished), SABER_OK);
        EXPECT_EQ(finished, k) << "after replay " << k;
        EXPECT_EQ(queried.steps, k);
    }
    EXPECT_EQ(Canvases(), expected) << "three replays of a captured step decode as three queued steps";
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
}

TEST_F(SmallDecode, QueryNeverWaitsAndAgreesWithPollOnceTheStepIsDone) {
    saber_decode_status status{};
    int64_t finished = -1;
    ASSERT_EQ(saber_decode_query(decode, &status, &finished), SABER_OK);
    EXPECT_EQ(finished, 0);
    EXPECT_EQ(status.steps, 0);
    EXPECT_EQ(status.active_sequences, kBatch);
    ASSERT_EQ(saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32), SABER_OK);
    ASSERT_EQ(saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32), SABER_OK);
    // Two steps queued: a query sees 0, 1 or 2 finished, each with its own consistent status.
    ASSERT_EQ(saber_decode_query(decode, &status, &finished), SABER_OK);
    EXPECT_GE(finished, 0);
    EXPECT_LE(finished, 2);
    EXPECT_EQ(status.steps, finished);
    saber_decode_status polled{};
    ASSERT_EQ(saber_decode_poll(decode, &polled), SABER_OK);
    ASSERT_EQ(saber_decode_query(decode, &status, &finished), SABER_OK);
    EXPECT_EQ(finished, 2);
    EXPECT_EQ(std::memcmp(&status, &polled, sizeof status), 0) << "query and poll disagree on a finished step";
    saber_decode_status *null_status = nullptr;
    EXPECT_EQ(saber_decode_query(decode, null_status, &finished), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(saber_decode_query(decode, &status, nullptr), SABER_ERROR_INVALID_ARGUMENT);
}

// A bfloat16 logits buffer of [1, 14208, 151937]: 2.16e9 elements, so that the generation's rows (positions 14200 to
// 14207, after a 14200-token prompt) start past element 2^31. Eight rows are written and read; each must be the host
// build's definition of it, bit for bit (sampled, so the position also reaches the Philox draws).
TEST_F(Stream, LogitsRowsPastTwoToThe31ElementsAreReadAt64BitOffsets) {
    constexpr int kVocabulary = 151937, kMask = 151936, kPrompt = 14200, kGeneration = 8;
    constexpr size_t kLength = kPrompt + kGeneration;
    const size_t bytes = kLength * kVocabulary * sizeof(__nv_bfloat16);
    static_assert(static_cast<unsigned long long>(kPrompt) * kVocabulary > (1ull << 31), "the first generation row starts past 2^31");
    size_t free_bytes = 0, total_bytes = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
    if (free_bytes < bytes + (512ull << 20))
        GTEST_SKIP() << "the device has " << (free_bytes >> 20) << " MiB free; the test needs " << ((bytes >> 20) + 512) << " MiB";
    saber_decode_options o{};
    o.generation_length = kGeneration;
    o.block_length = kGeneration;
    o.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
    o.steps = kGeneration;
    o.metric = SABER_METRIC_MARGIN;
    o.temperature = 0.7f;
    o.seed = 99;
    std::vector<int32_t> prompt(kPrompt), lengths{kPrompt};
    for (int i = 0; i < kPrompt; ++i) prompt[static_cast<size_t>(i)] = i % 1000;
    ASSERT_EQ(saber_decode_create(context, &o, kVocabulary, kMask, 1, prompt.data(), lengths.data(), 0, &decode), SABER_OK)
        << saber_last_error();
    ASSERT_EQ(saber_buffer_create(context, bytes, &logits), SABER_OK) << saber_last_error();
    std::mt19937 rng(2031);
    std::uniform_real_distribution<float> uniform(-6.0f, 6.0f);
    std::vector<__nv_bfloat16> rows(static_cast<size_t>(kGeneration) * kVocabulary);
    std::vector<float> seen(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        rows[i] = __float2bfloat16_rn(uniform(rng));
        seen[i] = __bfloat162float(rows[i]);
    }
    const uint64_t offset = static_cast<uint64_t>(kPrompt) * kVocabulary * sizeof(__nv_bfloat16);
    ASSERT_EQ(saber_buffer_upload(logits, offset, rows.data(), rows.size() * sizeof(__nv_bfloat16)), SABER_OK) << saber_last_error();
    void *pointer = nullptr;
    ASSERT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
    ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
    ASSERT_EQ(saber_decode_step(decode, pointer, SABER_DTYPE_BFLOAT16), SABER_OK) << saber_last_error();
    saber_decode_status status{};
    ASSERT_EQ(saber_decode_poll(decode, &status), SABER_OK);
    ASSERT_EQ(status.error, SABER_OK) << "bad logits reported at position " << status.error_position;
    saber::testing::RowResults results;
    ASSERT_EQ(saber::testing::read_rows(decode, results), SABER_OK);
    for (int g = 0; g < kGeneration; ++g) {
        const saber::exact::RowResult want = saber::exact::row_reference(seen.data() + static_cast<size_t>(g) * kVocabulary, kVocabulary,
                                                                         kMask, -1, o.metric, o.temperature, o.seed, 1, 0, kPrompt + g);
        const size_t at = static_cast<size_t>(g);
        EXPECT_EQ(results.prediction[at], want.prediction) << "position " << kPrompt + g;
        EXPECT_EQ(bits(results.confidence[at]), bits(want.confidence)) << "position " << kPrompt + g;
        EXPECT_EQ(bits(results.metric[at]), bits(want.metric)) << "position " << kPrompt + g;
    }
}

}  // namespace
