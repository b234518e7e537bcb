// Device tests (host code: built by the C++ compiler, linked with the CUDA runtime): the step kernels against a host double-precision computation on fresh random data,
// with outputs poisoned before each run. Without a CUDA device every test skips with the reason.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "philox.h"
#include "saber/saber.h"
#include "testing.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

class Device : public ::testing::Test {
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

    /// Creates a decode of `batch` empty prompts and a logits buffer of [batch, G, V] `dtype` values.
    void Create(const saber_decode_options &o, int vocabulary, int mask, int batch, int trace = 0) {
        std::vector<int32_t> lengths(batch, 0);
        ASSERT_EQ(saber_decode_create(context, &o, vocabulary, mask, batch, nullptr, lengths.data(), trace, &decode), SABER_OK)
            << saber_last_error();
        ASSERT_EQ(saber_buffer_create(context, static_cast<uint64_t>(batch) * o.generation_length * vocabulary * 4, &logits), SABER_OK);
    }

    /// Uploads float logits converted to `dtype`, returning the values the device sees (as float).
    std::vector<float> Upload(const std::vector<float> &values, int dtype) {
        std::vector<float> seen(values.size());
        if (dtype == SABER_DTYPE_FLOAT32) {
            EXPECT_EQ(saber_buffer_upload(logits, 0, values.data(), values.size() * 4), SABER_OK);
            return values;
        }
        std::vector<uint16_t> bits(values.size());
        for (size_t i = 0; i < values.size(); ++i) {
            if (dtype == SABER_DTYPE_FLOAT16) {
                const __half h = __float2half_rn(values[i]);
                std::memcpy(&bits[i], &h, 2);
                seen[i] = __half2float(h);
            } else {
                const __nv_bfloat16 h = __float2bfloat16_rn(values[i]);
                std::memcpy(&bits[i], &h, 2);
                seen[i] = __bfloat162float(h);
            }
        }
        EXPECT_EQ(saber_buffer_upload(logits, 0, bits.data(), bits.size() * 2), SABER_OK);
        return seen;
    }

    void Step(int dtype) {
        void *pointer = nullptr;
        ASSERT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
        ASSERT_EQ(saber_decode_step(decode, pointer, dtype), SABER_OK) << saber_last_error();
        ASSERT_EQ(saber_decode_poll(decode, &status), SABER_OK) << saber_last_error();
    }

    saber_context context = nullptr;
    saber_decode decode = nullptr;
    saber_buffer logits = nullptr;
    saber_decode_status status{};
};

struct HostRow {
    int prediction;
    double confidence, margin, negentropy;
};

/// The spec's per-row quantities in double precision, straight from the definition.
HostRow host_row(const float *row, int vocabulary, int mask, float temperature, uint64_t seed, int step, int sequence, int position) {
    double max = -INFINITY;
    for (int v = 0; v < vocabulary; ++v) max = std::max(max, static_cast<double>(row[v]));
    double z = 0;
    for (int v = 0; v < vocabulary; ++v) z += std::exp(row[v] - max);
    int best = -1, second = -1;
    float best_score = -kInf, second_score = -kInf;
    for (int v = 0; v < vocabulary; ++v) {
        if (v == mask) continue;
        float score = row[v];
        if (temperature > 0) {
            const float g = saber::to_gumbel(saber::to_uniform(saber::random_bits(seed, step, sequence, position, v)));
            volatile float scaled = temperature * g;   // float32 arithmetic without contraction, as specified
            score = row[v] + scaled;
        }
        if (score == -kInf) continue;
        if (best < 0 || score > best_score) {
            second = best;
            second_score = best_score;
            best = v;
            best_score = score;
        } else if (second < 0 || score > second_score) {
            second = v;
            second_score = score;
        }
    }
    HostRow r{best, 0, 0, 0};
    if (best < 0) return r;
    r.confidence = std::exp(row[best] - max) / z;
    r.margin = second < 0 ? r.confidence : r.confidence - std::exp(row[second] - max) / z;
    for (int v = 0; v < vocabulary; ++v) {
        const double p = std::exp(row[v] - max) / z;
        if (p > 0) r.negentropy += p * std::log(p);
    }
    return r;
}

struct RowCase {
    int dtype, vocabulary, metric;
    float temperature;
};

std::string RowCaseName(const ::testing::TestParamInfo<RowCase> &info) {
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const metrics[] = {"maxprob", "margin", "negentropy", "random"};
    return std::string(dtypes[info.param.dtype]) + "_V" + std::to_string(info.param.vocabulary) + "_" + metrics[info.param.metric] +
           (info.param.temperature > 0 ? "_sampled" : "_greedy");
}

class RowConfidence : public Device, public ::testing::WithParamInterface<RowCase> {
protected:
    static constexpr int kGeneration = 24, kBatch = 2;

    /// A low-confidence decode (every position of the one block is scored) with fresh random logits,
    /// a quarter of the rows adversarial; returns the logits as the device sees them.
    std::vector<float> Prepare() {
        const RowCase c = GetParam();
        mask = c.vocabulary / 3;
        options = saber_decode_options{};
        options.generation_length = kGeneration;
        options.block_length = kGeneration;
        options.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
        options.steps = kGeneration;
        options.metric = c.metric;
        options.temperature = c.temperature;
        options.seed = 0x5EED5EED12345ull;
        Create(options, c.vocabulary, mask, kBatch);

        std::mt19937 rng(static_cast<unsigned>(c.vocabulary * 31 + c.dtype));
        std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
        std::vector<float> values(static_cast<size_t>(kBatch) * kGeneration * c.vocabulary);
        for (float &x : values) x = uniform(rng);
        for (int r = 0; r < kBatch * kGeneration; ++r) {
            float *row = values.data() + static_cast<size_t>(r) * c.vocabulary;
            switch (r % 4) {
                case 1: row[mask] = 50.0f; break;                                   // the mask id holds the maximum
                case 2: for (int v = 0; v < c.vocabulary; v += 3) row[v] = -kInf;    // banned tokens
                        row[(mask + 1) % c.vocabulary] = 1.0f;
                        break;
                case 3: if (c.vocabulary > 2) row[c.vocabulary - 1] = row[(mask + 1) % c.vocabulary] = 20.0f;   // a tie
                        break;
                default: break;
            }
        }
        return Upload(values, c.dtype);
    }

    /// Poisons the row results, runs one row pass and returns its results.
    saber::testing::RowResults RunRows(saber::RowPath path) {
        saber::testing::RowResults rows;
        void *pointer = nullptr;
        EXPECT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
        EXPECT_EQ(saber::testing::poison_rows(decode), SABER_OK);
        EXPECT_EQ(saber::testing::launch_rows(decode, pointer, GetParam().dtype, path), SABER_OK) << saber_last_error();
        EXPECT_EQ(saber::testing::read_rows(decode, rows), SABER_OK) << saber_last_error();
        return rows;
    }

    saber_decode_options options{};
    int mask = 0;
};

TEST_P(RowConfidence, MatchesTheHostComputation) {
    const RowCase c = GetParam();
    const std::vector<float> seen = Prepare();
    ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
    Step(c.dtype);
    ASSERT_EQ(status.error, SABER_OK) << "bad logits reported at position " << status.error_position;

    saber::testing::RowResults rows;
    ASSERT_EQ(saber::testing::read_rows(decode, rows), SABER_OK);
    for (int b = 0; b < kBatch; ++b)
        for (int g = 0; g < kGeneration; ++g) {
            const HostRow want = host_row(seen.data() + (static_cast<size_t>(b) * kGeneration + g) * c.vocabulary, c.vocabulary, mask,
                                          c.temperature, options.seed, 1, b, g);
            const size_t at = static_cast<size_t>(b) * kGeneration + g;
            ASSERT_EQ(rows.prediction[at], want.prediction) << "sequence " << b << " position " << g;
            EXPECT_NEAR(rows.confidence[at], want.confidence, 2e-6 * std::max(1.0, want.confidence)) << "position " << g;
            const double metric = c.metric == SABER_METRIC_MARGIN ? want.margin
                                  : c.metric == SABER_METRIC_NEGENTROPY ? want.negentropy
                                  : c.metric == SABER_METRIC_RANDOM
                                      ? saber::to_uniform(saber::random_bits(options.seed, 1, b, g, c.vocabulary))
                                      : want.confidence;
            EXPECT_NEAR(rows.metric[at], metric, 1e-5 * std::max(1.0, std::fabs(metric))) << "position " << g;
        }
}

TEST_P(RowConfidence, FastPathMatchesTheReferencePathForEverySplit) {
    Prepare();
    const saber::testing::RowResults reference = RunRows(saber::RowPath::Reference);
    for (int splits : {1, 2, 3, 7, 64}) {
        ASSERT_EQ(saber::testing::set_row_splits(decode, splits), SABER_OK) << saber_last_error();
        const saber::testing::RowResults fast = RunRows(saber::RowPath::Fast);
        const int used = saber::testing::row_splits(decode);
        for (size_t at = 0; at < reference.prediction.size(); ++at) {
            ASSERT_EQ(fast.prediction[at], reference.prediction[at]) << "row " << at << ", " << used << " splits";
            EXPECT_NEAR(fast.confidence[at], reference.confidence[at], 2e-6 * std::max(1.0f, reference.confidence[at]))
                << "row " << at << ", " << used << " splits";
            EXPECT_NEAR(fast.metric[at], reference.metric[at], 1e-5 * std::max(1.0f, std::fabs(reference.metric[at])))
                << "row " << at << ", " << used << " splits";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, RowConfidence,
    ::testing::Values(RowCase{SABER_DTYPE_FLOAT32, 2, SABER_METRIC_MAXPROB, 0}, RowCase{SABER_DTYPE_FLOAT32, 37, SABER_METRIC_MARGIN, 0},
                      RowCase{SABER_DTYPE_FLOAT32, 1001, SABER_METRIC_NEGENTROPY, 0},
                      RowCase{SABER_DTYPE_FLOAT32, 126464, SABER_METRIC_MAXPROB, 0},
                      RowCase{SABER_DTYPE_FLOAT32, 4099, SABER_METRIC_RANDOM, 0.8f},
                      RowCase{SABER_DTYPE_FLOAT16, 1003, SABER_METRIC_MARGIN, 0}, RowCase{SABER_DTYPE_FLOAT16, 9, SABER_METRIC_MAXPROB, 1.5f},
                      RowCase{SABER_DTYPE_BFLOAT16, 151936, SABER_METRIC_MAXPROB, 0},
                      RowCase{SABER_DTYPE_BFLOAT16, 77, SABER_METRIC_NEGENTROPY, 0.5f},
                      RowCase{SABER_DTYPE_BFLOAT16, 3, SABER_METRIC_MARGIN, 0}),
    RowCaseName);

TEST(RowSplitPlan, OneBlockPerRowWhenRowsFillTheGpu) {
    EXPECT_EQ(saber::plan_row_split(132 * 8, 126464, 132).splits, 1);
    EXPECT_EQ(saber::plan_row_split(8 * 1024, 151936, 132).splits, 1);
    EXPECT_EQ(saber::plan_row_split(4, 16383, 132).splits, 1) << "rows shorter than one split's minimum are not cut";
}

TEST(RowSplitPlan, FewRowsAreCutIntoWholeVectorChunksCoveringTheRow) {
    for (int rows : {1, 8, 32, 256, 1000})
        for (int vocabulary : {16384, 50257, 126464, 151936}) {
            const saber::RowSplit split = saber::plan_row_split(rows, vocabulary, 132);
            ASSERT_GE(split.splits, 1);
            EXPECT_LE(split.splits, std::max(1, vocabulary / 16384)) << "a split reads at least 16384 logits";
            if (split.splits == 1) continue;
            EXPECT_TRUE(rows * split.splits >= 132 * 8 || split.splits == vocabulary / 16384)
                << rows << " rows: fills the 1056 resident blocks or stops at the length cap";
            EXPECT_EQ(split.chunk % 64, 0) << "chunks are whole 16-byte vectors of every dtype";
            EXPECT_GE(static_cast<long>(split.chunk) * split.splits, vocabulary) << "the chunks cover the row";
            EXPECT_LT(static_cast<long>(split.chunk) * (split.splits - 1), vocabulary) << "no chunk is empty";
        }
    EXPECT_EQ(saber::plan_row_split(256, 126464, 132).splits, 5) << "256 rows on 132 SMs of 8 blocks: ceil(1056 / 256)";
    EXPECT_EQ(saber::plan_row_split(1, 126464, 132).splits, 7) << "capped at V / 16384";
}

TEST(RowSplitPlan, FixedSplitsNeverLeaveAnEmptyChunk) {
    EXPECT_EQ(saber::fixed_row_split(1000, 4).splits, 4);
    EXPECT_EQ(saber::fixed_row_split(1000, 4).chunk, 256);
    EXPECT_EQ(saber::fixed_row_split(2, 64).splits, 1);
    EXPECT_EQ(saber::fixed_row_split(130, 3).splits, 3);   // chunks 64, 64, 2
    EXPECT_EQ(saber::fixed_row_split(129, 3).splits, 3);   // chunks 64, 64, 1
    EXPECT_EQ(saber::fixed_row_split(128, 3).splits, 2);
}

saber_decode_options SaberOptions(int generation, int block, int n, int mu) {
    saber_decode_options o{};
    o.generation_length = generation;
    o.block_length = block;
    o.strategy = SABER_STRATEGY_SABER;
    o.variant = SABER_VARIANT_REFERENCE;
    o.min_tokens_per_step = n;
    o.remask_divisor = mu;
    o.backtracking = 1;
    return o;
}

class BadLogits : public Device, public ::testing::WithParamInterface<int> {};

TEST_P(BadLogits, StopTheDecodeAndNameTheFirstPlace) {
    const saber_decode_options o = SaberOptions(8, 8, 2, 8);
    const int vocabulary = 1000, mask = 999;
    Create(o, vocabulary, mask, 1);
    ASSERT_EQ(saber::testing::set_row_splits(decode, GetParam()), SABER_OK);
    ASSERT_EQ(saber::testing::row_splits(decode), GetParam());
    std::vector<float> values(8 * vocabulary, 0.5f);
    values[5 * vocabulary + 917] = NAN;   // same row, a later chunk than the +inf below
    values[5 * vocabulary + 301] = kInf;
    values[6 * vocabulary + 3] = kInf;
    Upload(values, SABER_DTYPE_FLOAT32);
    Step(SABER_DTYPE_FLOAT32);
    EXPECT_EQ(status.error, SABER_ERROR_INVALID_LOGITS);
    EXPECT_EQ(status.error_step, 1);
    EXPECT_EQ(status.error_position, 5);
    EXPECT_EQ(status.error_vocabulary_index, 301);
    std::vector<int32_t> canvas(8), nfe(1);
    ASSERT_EQ(saber_decode_read(decode, canvas.data(), nfe.data(), nullptr), SABER_OK);
    EXPECT_EQ(nfe[0], 0);
    EXPECT_TRUE(std::all_of(canvas.begin(), canvas.end(), [&](int t) { return t == mask; })) << "the failed step changed the canvas";
    void *pointer = nullptr;
    saber_buffer_device_pointer(logits, &pointer);
    EXPECT_EQ(saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32), SABER_ERROR_INVALID_LOGITS);
}

INSTANTIATE_TEST_SUITE_P(Splits, BadLogits, ::testing::Values(1, 4));

TEST_F(Device, SaberDecodeCommitsNFirstAndFinishesWithoutMasks) {
    const saber_decode_options o = SaberOptions(32, 8, 3, 4);
    const int vocabulary = 64, mask = 63, generation = 32;
    Create(o, vocabulary, mask, 1, /*trace=*/64);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uniform(-4.0f, 4.0f);
    int steps = 0;
    for (; steps < generation; ++steps) {
        std::vector<float> values(generation * vocabulary);
        for (float &x : values) x = uniform(rng);
        for (int g = 0; g < generation; ++g) values[g * vocabulary + mask] = 100.0f;   // the mask is never committed
        Upload(values, SABER_DTYPE_FLOAT32);
        Step(SABER_DTYPE_FLOAT32);
        ASSERT_EQ(status.error, SABER_OK);
        if (status.active_sequences == 0) break;
    }
    ASSERT_EQ(status.active_sequences, 0) << "no progress: more than G steps";
    std::vector<int32_t> canvas(generation), nfe(1);
    ASSERT_EQ(saber_decode_read(decode, canvas.data(), nfe.data(), nullptr), SABER_OK);
    EXPECT_EQ(nfe[0], steps + 1);
    EXPECT_TRUE(std::none_of(canvas.begin(), canvas.end(), [&](int t) { return t == mask; }));

    saber_trace_step first{};
    std::vector<int32_t> events(generation);
    ASSERT_EQ(saber_decode_read_trace(decode, 0, 1, &first, events.data(), nullptr, nullptr, nullptr), SABER_OK) << saber_last_error();
    EXPECT_EQ(first.step, 1);
    EXPECT_EQ(first.committed, 3) << "tau = 1 on the first step: the draft is the top n";
    EXPECT_EQ(first.tau, 1.0);
    for (int g = 8; g < generation; ++g) EXPECT_EQ(events[g], 0) << "position " << g << " is beyond the active block";
    EXPECT_EQ(saber_decode_step(decode, canvas.data(), SABER_DTYPE_FLOAT32), SABER_ERROR_FINISHED);
}

}  // namespace

// ---- exact step arithmetic: the device computes the host build's bits ----

namespace {

/// `count` random inputs drawn by `draw`, then `edges`.
template <typename Draw>
std::vector<float> exact_inputs(std::mt19937 &rng, int count, Draw draw, std::initializer_list<float> edges) {
    std::vector<float> inputs(static_cast<size_t>(count));
    for (float &x : inputs) x = draw(rng);
    inputs.insert(inputs.end(), edges);
    return inputs;
}

}  // namespace

TEST_F(Device, ExactMathComputesTheHostBuildsBits) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> exp_range(-90.0f, 0.0f), log_range(-30.0f, 30.0f);
    std::uniform_int_distribution<uint32_t> uniform_bits;
    const int n = 4096;  // small: device tests may run in a simulator
    const std::vector<float> cases[3] = {
        exact_inputs(rng, n, [&](std::mt19937 &r) { return exp_range(r); }, {0.0f, -0.0f, -kInf, -86.0f, -86.00001f, -1e-45f}),
        exact_inputs(rng, n, [&](std::mt19937 &r) { return std::exp2(log_range(r)); }, {1.0f, 1.17549435e-38f, 3.40282347e+38f, 1.41421354f}),
        exact_inputs(rng, n, [&](std::mt19937 &r) { return saber::to_uniform(uniform_bits(r)); }, {5.96046448e-08f, 0.99999994f}),
    };
    for (int32_t function = SABER_EXACT_EXP; function <= SABER_EXACT_GUMBEL; ++function) {
        const std::vector<float> &inputs = cases[function];
        std::vector<float> host(inputs.size()), device(inputs.size(), std::nanf(""));
        ASSERT_EQ(saber_exact_eval(function, inputs.data(), host.data(), static_cast<int64_t>(inputs.size())), SABER_OK) << saber_last_error();
        ASSERT_EQ(saber_exact_eval_device(context, function, inputs.data(), device.data(), static_cast<int64_t>(inputs.size())), SABER_OK)
            << saber_last_error();
        for (size_t i = 0; i < inputs.size(); ++i)
            ASSERT_EQ(std::memcmp(&host[i], &device[i], sizeof(float)), 0)
                << "function " << function << " at " << inputs[i] << ": host " << host[i] << ", device " << device[i];
    }
    std::vector<float> terms = exact_inputs(rng, n, [&](std::mt19937 &r) { return std::uniform_real_distribution<float>(0.0f, 1.0f)(r); },
                                            {0.0f, 1.0f, 1e-45f, 2.27373675e-13f});
    std::vector<uint64_t> host(terms.size()), device(terms.size(), ~uint64_t{0});
    ASSERT_EQ(saber_exact_fixed_terms(terms.data(), host.data(), static_cast<int64_t>(terms.size())), SABER_OK) << saber_last_error();
    ASSERT_EQ(saber_exact_fixed_terms_device(context, terms.data(), device.data(), static_cast<int64_t>(terms.size())), SABER_OK)
        << saber_last_error();
    EXPECT_EQ(host, device);
}

TEST_F(Device, ExactRowDefinitionComputesTheHostBuildsBits) {
    std::mt19937 rng(13);
    std::normal_distribution<float> logit(0.0f, 4.0f);
    // Small rows (one device thread runs the whole definition, and device tests may run in a simulator).
    for (int vocabulary : {2, 37, 1025, 3000})
        for (int metric = SABER_METRIC_MAXPROB; metric <= SABER_METRIC_RANDOM; ++metric)
            for (float temperature : {0.0f, 0.8f}) {
                std::vector<float> row(static_cast<size_t>(vocabulary));
                for (float &l : row) l = logit(rng);
                row[0] = -kInf;
                const int mask = vocabulary - 1, token = vocabulary / 2;
                int32_t host_prediction, host_bad, device_prediction, device_bad;
                float host[3], device[3];
                ASSERT_EQ(saber_exact_row(row.data(), vocabulary, mask, token, metric, temperature, 99, 4, 2, 17, &host_prediction, &host_bad, host),
                          SABER_OK)
                    << saber_last_error();
                ASSERT_EQ(saber_exact_row_device(context, row.data(), vocabulary, mask, token, metric, temperature, 99, 4, 2, 17, &device_prediction,
                                                 &device_bad, device),
                          SABER_OK)
                    << saber_last_error();
                EXPECT_EQ(device_prediction, host_prediction);
                EXPECT_EQ(device_bad, host_bad);
                EXPECT_EQ(std::memcmp(host, device, sizeof host), 0)
                    << "V " << vocabulary << ", metric " << metric << ", T " << temperature << ": host (" << host[0] << ", " << host[1] << ", "
                    << host[2] << "), device (" << device[0] << ", " << device[1] << ", " << device[2] << ")";
            }
}
