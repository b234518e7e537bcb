// Device tests (host code: built by the C++ compiler, linked with the CUDA runtime): the step kernels against the host
// build of the exact row definition (exact::row_reference), bit for bit, on fresh random data with outputs poisoned
// before each run, and decodes that must not depend on the batch they run in. Without a CUDA device every test skips
// with the reason (the RowSplitPlan tests of the split plan are host functions and run anyway).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "decide_reference.h"
#include "exact_math.h"
#include "philox.h"
#include "saber/saber.h"
#include "device_test.h"
#include "testing.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

class Device : public saber_tests::DeviceTest {
protected:
    /// Creates a decode of `batch` empty prompts and a logits buffer of [batch, G, V] float values (room for any dtype),
    /// plus extra_bytes (for rows moved past the buffer's start).
    void Create(const saber_decode_options &o, int vocabulary, int mask, int batch, int trace = 0, uint64_t extra_bytes = 0) {
        std::vector<int32_t> lengths(batch, 0);
        ASSERT_EQ(saber_decode_create(context, &o, vocabulary, mask, batch, nullptr, lengths.data(), trace, &decode), SABER_OK)
            << saber_last_error();
        ASSERT_EQ(saber_buffer_create(context, static_cast<uint64_t>(batch) * o.generation_length * vocabulary * 4 + extra_bytes, &logits), SABER_OK);
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

    saber_decode_status status{};
};

uint32_t bits_of(float x) { return saber::exact::bits(x); }

/// Expects a row's results on the device to be the host build's exact::row_reference of the same row, bit for bit.
void ExpectTheDefinition(const saber::testing::RowResults &rows, size_t at, const saber::exact::RowResult &want, const std::string &where) {
    ASSERT_GE(want.prediction, 0) << where << ": the test made a bad row";
    EXPECT_EQ(rows.prediction[at], want.prediction) << where;
    EXPECT_EQ(bits_of(rows.confidence[at]), bits_of(want.confidence)) << where << ": c " << rows.confidence[at] << " vs " << want.confidence;
    EXPECT_EQ(bits_of(rows.token_confidence[at]), bits_of(want.token_confidence))
        << where << ": q " << rows.token_confidence[at] << " vs " << want.token_confidence;
    EXPECT_EQ(bits_of(rows.metric[at]), bits_of(want.metric)) << where << ": metric " << rows.metric[at] << " vs " << want.metric;
}

struct RowCase {
    int dtype, vocabulary, metric;
    float temperature;
    int batch, generation;
};

std::string RowCaseName(const ::testing::TestParamInfo<RowCase> &info) {
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const metrics[] = {"maxprob", "margin", "negentropy", "random"};
    const RowCase &c = info.param;
    return std::string(dtypes[c.dtype]) + "_V" + std::to_string(c.vocabulary) + "_" + metrics[c.metric] +
           (c.temperature > 1e30f ? "_hugeT" : c.temperature > 0 ? "_sampled" : "_greedy") + "_rows" + std::to_string(c.batch * c.generation);
}

class RowConfidence : public Device, public ::testing::WithParamInterface<RowCase> {
protected:
    /// A low-confidence decode (every position of the one block is scored) with fresh random logits, most rows
    /// adversarial; returns the logits as the device sees them.
    std::vector<float> Prepare() {
        const RowCase c = GetParam();
        mask = c.vocabulary / 3;
        options = saber_decode_options{};
        options.generation_length = c.generation;
        options.block_length = c.generation;
        options.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
        options.steps = c.generation;
        options.metric = c.metric;
        options.temperature = c.temperature;
        options.seed = 0x5EED5EED12345ull;
        Create(options, c.vocabulary, mask, c.batch);

        std::mt19937 rng(static_cast<unsigned>(c.vocabulary * 31 + c.dtype));
        std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
        std::vector<float> values(static_cast<size_t>(c.batch) * c.generation * c.vocabulary);
        for (float &x : values) x = uniform(rng);
        const int other = (mask + 1) % c.vocabulary;
        for (int r = 0; r < c.batch * c.generation; ++r) {
            float *row = values.data() + static_cast<size_t>(r) * c.vocabulary;
            switch (r % 5) {
                case 1: row[mask] = 50.0f; break;                                   // the mask id holds the maximum
                case 2: for (int v = 0; v < c.vocabulary; v += 3) row[v] = -kInf;    // banned tokens
                        row[other] = 1.0f;
                        break;
                case 3: if (c.vocabulary > 2) row[c.vocabulary - 1] = row[other] = 20.0f;   // a tie for the maximum
                        break;
                case 4: for (int v = 0; v < c.vocabulary; ++v) row[v] = v % 7 == 6 ? -3.0f : v % 2 ? -0.0f : 0.0f;   // a zero maximum, many ties
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

    /// Every row of the first step is the host build's definition of it, bit for bit.
    void ExpectEveryRowIsTheDefinition(const saber::testing::RowResults &rows, const std::vector<float> &seen, const std::string &what) {
        const RowCase c = GetParam();
        for (int b = 0; b < c.batch; ++b)
            for (int g = 0; g < c.generation; ++g) {
                const size_t at = static_cast<size_t>(b) * c.generation + g;
                const saber::exact::RowResult want = saber::exact::row_reference(seen.data() + at * c.vocabulary, c.vocabulary, mask, -1, c.metric,
                                                                                 c.temperature, options.seed, 1, b, g);
                ExpectTheDefinition(rows, at, want, what + ", sequence " + std::to_string(b) + " position " + std::to_string(g));
                if (HasFatalFailure()) return;
            }
    }

    saber_decode_options options{};
    int mask = 0;
};

TEST_P(RowConfidence, StepComputesTheDefinitionsBits) {
    const RowCase c = GetParam();
    const std::vector<float> seen = Prepare();
    ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
    Step(c.dtype);
    ASSERT_EQ(status.error, SABER_OK) << "bad logits reported at position " << status.error_position;
    saber::testing::RowResults rows;
    ASSERT_EQ(saber::testing::read_rows(decode, rows), SABER_OK);
    ExpectEveryRowIsTheDefinition(rows, seen, "step");
}

TEST_P(RowConfidence, FastAndReferencePathsComputeTheDefinitionsBitsForEverySplit) {
    const RowCase c = GetParam();
    const std::vector<float> seen = Prepare();
    ExpectEveryRowIsTheDefinition(RunRows(saber::RowPath::Reference), seen, "reference path");
    const int chunks = (c.vocabulary + 1023) / 1024;
    ExpectEveryRowIsTheDefinition(RunRows(saber::RowPath::Fast), seen, "planned split (" + std::to_string(saber::testing::row_splits(decode)) + ")");
    for (int splits : {1, 2, 3, 64}) {
        ASSERT_EQ(saber::testing::set_row_splits(decode, splits), SABER_OK) << saber_last_error();
        const int used = saber::testing::row_splits(decode);
        EXPECT_LE(used, std::min(splits, chunks)) << "more splits than chunks clamp";
        ExpectEveryRowIsTheDefinition(RunRows(saber::RowPath::Fast), seen, std::to_string(used) + " splits");
    }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, RowConfidence,
    ::testing::Values(RowCase{SABER_DTYPE_FLOAT32, 2, SABER_METRIC_MAXPROB, 0, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT32, 37, SABER_METRIC_MARGIN, 0, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT32, 1001, SABER_METRIC_NEGENTROPY, 0, 2, 10},     // rows not 16-byte aligned
                      RowCase{SABER_DTYPE_FLOAT32, 5120, SABER_METRIC_MARGIN, 0, 2, 10},         // 5 full, aligned chunks
                      RowCase{SABER_DTYPE_FLOAT32, 5120, SABER_METRIC_NEGENTROPY, 0.7f, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT32, 4099, SABER_METRIC_RANDOM, 0.7f, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT32, 4099, SABER_METRIC_MAXPROB, 0, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT32, 37, SABER_METRIC_MARGIN, 3e38f, 1, 10},       // T g overflows: NaN scores
                      RowCase{SABER_DTYPE_FLOAT32, 151936, SABER_METRIC_NEGENTROPY, 0, 1, 2},
                      RowCase{SABER_DTYPE_FLOAT32, 151936, SABER_METRIC_MARGIN, 0.7f, 1, 1},
                      RowCase{SABER_DTYPE_FLOAT16, 1003, SABER_METRIC_MARGIN, 0, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT16, 9, SABER_METRIC_MAXPROB, 1.5f, 2, 10},
                      RowCase{SABER_DTYPE_FLOAT16, 8192, SABER_METRIC_NEGENTROPY, 0.7f, 2, 5},
                      RowCase{SABER_DTYPE_BFLOAT16, 151936, SABER_METRIC_MAXPROB, 0, 1, 2},
                      RowCase{SABER_DTYPE_BFLOAT16, 151936, SABER_METRIC_NEGENTROPY, 0.7f, 1, 1},
                      RowCase{SABER_DTYPE_BFLOAT16, 77, SABER_METRIC_NEGENTROPY, 0.5f, 2, 10},
                      RowCase{SABER_DTYPE_BFLOAT16, 3, SABER_METRIC_MARGIN, 0, 2, 10},
                      RowCase{SABER_DTYPE_BFLOAT16, 2051, SABER_METRIC_RANDOM, 0, 2, 10},
                      // V = 50257 (GPT-2's): row r starts r (mod 4, float) or r (mod 8, 16-bit) logits past a 16-byte
                      // boundary, so 8 rows take every rotation of row_scan.h's layout (lane 0's blended first vector,
                      // the first chunk read id by id)
                      RowCase{SABER_DTYPE_FLOAT32, 50257, SABER_METRIC_MARGIN, 0, 1, 8},
                      RowCase{SABER_DTYPE_FLOAT32, 50257, SABER_METRIC_NEGENTROPY, 0.7f, 1, 8},
                      RowCase{SABER_DTYPE_FLOAT16, 50257, SABER_METRIC_RANDOM, 0, 1, 8},
                      RowCase{SABER_DTYPE_BFLOAT16, 50257, SABER_METRIC_MARGIN, 0.7f, 1, 8}),
    RowCaseName);

// ---- the split plans (host functions: these run without a GPU) ----

/// Every split reads whole chunks, starting at a multiple of 1024 ids; together they cover the row; none is empty.
void ExpectWholeChunks(const saber::RowSplit &split, int vocabulary) {
    const int chunks = (vocabulary + 1023) / 1024;
    ASSERT_GE(split.splits, 1);
    ASSERT_GE(split.chunks, 1);
    EXPECT_LE(split.splits, chunks) << "V " << vocabulary;
    EXPECT_GE(static_cast<long>(split.chunks) * split.splits, chunks) << "V " << vocabulary << ": the splits cover the row";
    EXPECT_LT(static_cast<long>(split.chunks) * (split.splits - 1), chunks) << "V " << vocabulary << ": no split is empty";
    for (int s = 0; s < split.splits; ++s) {
        const long begin = static_cast<long>(s) * split.chunks * 1024;
        EXPECT_EQ(begin % 1024, 0);
        EXPECT_LT(begin, vocabulary) << "split " << s << " of V " << vocabulary << " is empty";
    }
}

/// The plan's model of a split's run time: waves of multiprocessors x resident blocks, each as long as a split's chunks.
long long SplitTime(const saber::RowSplit &split, int rows, int multiprocessors, int resident) {
    const long long wave = static_cast<long long>(multiprocessors) * resident;
    return (static_cast<long long>(std::max(1, rows)) * split.splits + wave - 1) / wave * split.chunks;
}

TEST(RowSplitPlan, OneBlockPerRowWhenRowsFillAWave) {
    // 132 SMs (H100) of 4 resident blocks: a wave is 528 blocks.
    EXPECT_EQ(saber::plan_row_split(528, 126464, 132, 4).splits, 1);
    EXPECT_EQ(saber::plan_row_split(528, 151937, 132, 4).chunks, 149) << "one split reads every chunk";
    EXPECT_EQ(saber::plan_row_split(396, 151936, 132, 3).splits, 1) << "132 x 3 sampled blocks";
    EXPECT_EQ(saber::plan_row_split(8 * 1024, 151936, 132, 4).splits, 1);
    EXPECT_EQ(saber::plan_row_split(4, 16384 + 1024 * 15, 132, 4).splits, 1) << "rows shorter than two splits' minimum are not cut";
    EXPECT_GT(saber::plan_row_split(527, 151936, 132, 8).splits, 1) << "the same rows are too few for 8 resident blocks";
}

TEST(RowSplitPlan, FewRowsAreCutBetweenChunksIntoWholeWaves) {
    for (int resident : {1, 3, 4, 8})
        for (int rows : {1, 8, 32, 100, 256, 300, 527, 1000})
            for (int vocabulary : {1, 2, 1000, 16384, 32768, 50257, 126464, 151936, 151937, (1 << 21) - 1}) {
                const saber::RowSplit split = saber::plan_row_split(rows, vocabulary, 132, resident);
                ExpectWholeChunks(split, vocabulary);
                const int chunks = (vocabulary + 1023) / 1024;
                const std::string where = std::to_string(rows) + " rows, V " + std::to_string(vocabulary) + ", " +
                                          std::to_string(resident) + " resident blocks";
                EXPECT_LE(split.splits, std::max(1, chunks / 16)) << where << ": a split reads at least 16 chunks";
                if (rows >= 132 * resident) {
                    EXPECT_EQ(split.splits, 1) << where;
                    continue;
                }
                // No other whole-chunk split of at most chunks / 16 splits finishes sooner in whole waves.
                for (int wanted = 1; wanted <= std::max(1, chunks / 16); ++wanted)
                    EXPECT_LE(SplitTime(split, rows, 132, resident), SplitTime(saber::fixed_row_split(vocabulary, wanted), rows, 132, resident))
                        << where << ", against " << wanted << " splits";
            }
    // 256 rows on a 528-block wave, 124 chunks: 2 splits (512 blocks, one wave of 62 chunks); 3 would need 2 waves.
    EXPECT_EQ(saber::plan_row_split(256, 126464, 132, 4).splits, 2);
    EXPECT_EQ(saber::plan_row_split(256, 126464, 132, 4).chunks, 62);
    // The thread limit's 8 blocks (1056): 4 splits, 1024 blocks of 31 chunks.
    EXPECT_EQ(saber::plan_row_split(256, 126464, 132, 8).splits, 4);
    // 132 rows, 3 sampled blocks (396): 3 splits fill the wave exactly.
    EXPECT_EQ(saber::plan_row_split(132, 151937, 132, 3).splits, 3);
    EXPECT_EQ(saber::plan_row_split(132, 151937, 132, 3).chunks, 50);
    // One row: capped at 124 chunks / 16 = 7 splits.
    EXPECT_EQ(saber::plan_row_split(1, 126464, 132, 4).splits, 7);
    EXPECT_EQ(saber::plan_row_split(0, 126464, 132, 0).splits, 7) << "no rows and no resident figure: counted as 1 and 1";
    EXPECT_EQ(saber::plan_row_split(1, 126464, 0, 4).splits, 4) << "no multiprocessors: counted as 1 (a wave of 4 blocks)";
}

TEST(RowSplitPlan, ResidentBlocksComeFromTheKernelsOccupancy) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device on this machine";
    for (float temperature : {0.0f, 0.7f})
        for (int metric : {SABER_METRIC_MAXPROB, SABER_METRIC_NEGENTROPY})
            for (int dtype : {SABER_DTYPE_FLOAT32, SABER_DTYPE_FLOAT16, SABER_DTYPE_BFLOAT16}) {
                saber_decode_options o{};
                o.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
                o.metric = metric;
                o.temperature = temperature;
                const int resident = saber::row_pass_resident_blocks(dtype, o);
                EXPECT_GE(resident, 1);
                EXPECT_LE(resident, 8) << "256-thread blocks: at most 2048 threads per SM";
            }
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the queries leave no pending error";
}

TEST(RowSplitPlan, FixedSplitsAreWholeChunksAndNeverEmpty) {
    for (int vocabulary : {1, 2, 1023, 1024, 1025, 4099, 5120, 151936})
        for (int splits : {1, 2, 3, 4, 7, 64, 65535}) ExpectWholeChunks(saber::fixed_row_split(vocabulary, splits), vocabulary);
    EXPECT_EQ(saber::fixed_row_split(4096, 4).splits, 4);
    EXPECT_EQ(saber::fixed_row_split(4096, 4).chunks, 1);
    EXPECT_EQ(saber::fixed_row_split(1000, 4).splits, 1) << "one chunk: one split";
    EXPECT_EQ(saber::fixed_row_split(2, 64).splits, 1);
    EXPECT_EQ(saber::fixed_row_split(5120, 64).splits, 5) << "more splits than chunks clamp";
    EXPECT_EQ(saber::fixed_row_split(5120, 3).splits, 3);    // chunks 2, 2, 1
    EXPECT_EQ(saber::fixed_row_split(5120, 3).chunks, 2);
    EXPECT_EQ(saber::fixed_row_split(5120, 4).splits, 3);    // 2 chunks each, or an empty fourth split
    EXPECT_EQ(saber::fixed_row_split(4099, 2).splits, 2);    // chunks 3, 2 (the last one holds 3 ids)
}

using saber_tests::saber_options;

class BadLogits : public Device, public ::testing::WithParamInterface<int> {};

TEST_P(BadLogits, StopTheDecodeAndNameTheFirstPlace) {
    const saber_decode_options o = saber_options(8, 8, 2, 8);
    const int vocabulary = 4096, mask = 4095;   // 4 chunks
    Create(o, vocabulary, mask, 1);
    ASSERT_EQ(saber::testing::set_row_splits(decode, GetParam()), SABER_OK);
    ASSERT_EQ(saber::testing::row_splits(decode), GetParam());
    std::vector<float> values(8 * vocabulary, 0.5f);
    values[5 * vocabulary + 3000] = NAN;   // same row, a later chunk (and split) than the +inf below
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

// ---- boundary coverage: one value planted at each place where the fast path changes how it reads a row ----

enum class Planted { UniqueMax, NaN, PlusInf };

struct BoundaryCase {
    int dtype;
    int offset;   // elements the logits base pointer is moved by: 1 misaligns the rows' 16-byte vectors
    Planted planted;
};

std::string BoundaryCaseName(const ::testing::TestParamInfo<BoundaryCase> &info) {
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const planted[] = {"UniqueMax", "NaN", "PlusInf"};
    const BoundaryCase &c = info.param;
    return std::string(dtypes[c.dtype]) + "_offset" + std::to_string(c.offset) + "_" + planted[static_cast<int>(c.planted)];
}

/// One row of V = 151937 logits (148 full chunks and a tail of 385 ids, an odd length: the next row would be misaligned),
/// starting `offset` elements past the buffer's (256-byte aligned) base. Each boundary place in turn holds the planted
/// value: the row's first id, the last id before its first 16-byte boundary and the first after it, the end of that first
/// vector, both sides of four 1024-id chunk edges (the first two, a middle one, the last), and at those edges the places
/// of row_scan.h's rotated layout (the row's start `rotation` ids past a 16-byte boundary): the first of the previous
/// chunk's last `rotation` ids (lane 0's first elements, read from the slot past the chunk's grid) and both sides of the
/// chunk's first 16-byte boundary; the tail's first id and the row's last. The rest are random in [-8, 8].
class RowBoundaries : public Device, public ::testing::WithParamInterface<BoundaryCase> {
protected:
    static constexpr int kVocabulary = 151937, kMask = 100;

    void SetUp() override {
        Device::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        options = saber_decode_options{};
        options.generation_length = 1;
        options.block_length = 1;
        options.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
        options.steps = 1;
        options.metric = SABER_METRIC_MARGIN;
        options.seed = 0xB0B0ull;
        Create(options, kVocabulary, kMask, 1, 0, 64);   // room for a float row moved by up to 15 logits
        std::mt19937 rng(static_cast<unsigned>(GetParam().dtype * 2 + GetParam().offset));
        std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
        base.resize(static_cast<size_t>(GetParam().offset) + kVocabulary);
        for (float &x : base) x = uniform(rng);
    }

    /// The places, ascending, without the mask id.
    std::vector<int> Places() const {
        const int size = GetParam().dtype == SABER_DTYPE_FLOAT32 ? 4 : 2, width = 16 / size;
        const int start_byte = GetParam().offset * size;          // the row's start past a 16-byte boundary
        const int head = (16 - start_byte % 16) / size;            // ids before the row's first 16-byte boundary after its start
        const int rotation = start_byte % 16 / size;               // row_scan.h's rotation of the row
        std::vector<int> places{0, head - 1, head, head + width - 1};
        // Both sides of the first two chunk edges, a middle one and the last one, and the rotated layout's places there
        // (every chunk runs the same code; each place costs a pass over a 152k row in the slow GPU simulator, so not all
        // 148 edges).
        const int last_edge = (kVocabulary - 1) / 1024 * 1024;
        for (const int edge : {1024, 2048, last_edge / 2 / 1024 * 1024, last_edge}) {
            places.push_back(edge - 1);
            places.push_back(edge);
            places.push_back(edge - rotation);
            places.push_back(edge + head - 1);
            places.push_back(edge + head);
        }
        places.push_back(kVocabulary / 1024 * 1024);   // the tail's first id
        places.push_back(kVocabulary - 1);
        std::sort(places.begin(), places.end());
        places.erase(std::unique(places.begin(), places.end()), places.end());
        places.erase(std::remove_if(places.begin(), places.end(), [](int v) { return v < 0 || v == kMask; }), places.end());
        return places;
    }

    /// Uploads the base row with `value` at `place` (and `later` at V - 1 when place < V - 1), returning the row as the device
    /// sees it.
    std::vector<float> UploadWith(int place, float value, float later) {
        std::vector<float> values = base;
        const int offset = GetParam().offset;
        values[offset + place] = value;
        if (place < kVocabulary - 1) values[offset + kVocabulary - 1] = later;
        const std::vector<float> seen = Upload(values, GetParam().dtype);
        return std::vector<float>(seen.begin() + offset, seen.end());
    }

    void *Row() {
        void *pointer = nullptr;
        EXPECT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
        const int size = GetParam().dtype == SABER_DTYPE_FLOAT32 ? 4 : 2;
        return static_cast<char *>(pointer) + static_cast<size_t>(GetParam().offset) * size;
    }

    saber_decode_options options{};
    std::vector<float> base;
};

TEST_P(RowBoundaries, PlantedValueIsFoundAtEveryBoundary) {
    const BoundaryCase c = GetParam();
    const std::vector<int> places = Places();
    ASSERT_GE(places.size(), 12u);
    const int planned = saber::testing::row_splits(decode);
    for (const int place : places) {
        SCOPED_TRACE("planted at id " + std::to_string(place));
        if (c.planted == Planted::UniqueMax) {
            // The unique maximum is the prediction, and c, q and the margin are the host definition's bits, with the
            // planned split and with one block per row.
            const std::vector<float> row = UploadWith(place, 30.0f, 1.0f);
            const saber::exact::RowResult want =
                saber::exact::row_reference(row.data(), kVocabulary, kMask, -1, options.metric, 0.0f, options.seed, 1, 0, 0);
            ASSERT_EQ(want.prediction, place) << "the test's maximum is not unique";
            for (const int splits : {planned, 1}) {
                ASSERT_EQ(saber::testing::set_row_splits(decode, splits), SABER_OK) << saber_last_error();
                ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
                ASSERT_EQ(saber::testing::launch_rows(decode, Row(), c.dtype), SABER_OK) << saber_last_error();
                saber::testing::RowResults rows;
                ASSERT_EQ(saber::testing::read_rows(decode, rows), SABER_OK) << saber_last_error();
                ExpectTheDefinition(rows, 0, want, std::to_string(saber::testing::row_splits(decode)) + " splits");
                if (HasFatalFailure()) return;
            }
        } else {
            // A bad logit stops the step, naming the lowest bad id (a second bad value, of the other kind, sits at V - 1).
            const bool nan = c.planted == Planted::NaN;
            UploadWith(place, nan ? NAN : kInf, nan ? kInf : NAN);
            ASSERT_EQ(saber::testing::reset(decode), SABER_OK) << saber_last_error();
            ASSERT_EQ(saber_decode_step(decode, Row(), c.dtype), SABER_OK) << saber_last_error();
            ASSERT_EQ(saber_decode_poll(decode, &status), SABER_OK) << saber_last_error();
            EXPECT_EQ(status.error, SABER_ERROR_INVALID_LOGITS);
            EXPECT_EQ(status.error_step, 1);
            EXPECT_EQ(status.error_position, 0);
            EXPECT_EQ(status.error_vocabulary_index, place);
            if (HasFailure()) return;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, RowBoundaries,
    ::testing::Values(BoundaryCase{SABER_DTYPE_FLOAT16, 0, Planted::UniqueMax}, BoundaryCase{SABER_DTYPE_FLOAT16, 1, Planted::UniqueMax},
                      BoundaryCase{SABER_DTYPE_BFLOAT16, 0, Planted::UniqueMax}, BoundaryCase{SABER_DTYPE_BFLOAT16, 1, Planted::UniqueMax},
                      BoundaryCase{SABER_DTYPE_FLOAT16, 0, Planted::NaN}, BoundaryCase{SABER_DTYPE_FLOAT16, 1, Planted::NaN},
                      BoundaryCase{SABER_DTYPE_BFLOAT16, 0, Planted::NaN}, BoundaryCase{SABER_DTYPE_BFLOAT16, 1, Planted::NaN},
                      BoundaryCase{SABER_DTYPE_FLOAT16, 0, Planted::PlusInf}, BoundaryCase{SABER_DTYPE_FLOAT16, 1, Planted::PlusInf},
                      BoundaryCase{SABER_DTYPE_BFLOAT16, 0, Planted::PlusInf}, BoundaryCase{SABER_DTYPE_BFLOAT16, 1, Planted::PlusInf},
                      // float rows: aligned, and rotated by 1 and 3 (the tail slot's first 4 and 12 bytes in lane 0)
                      BoundaryCase{SABER_DTYPE_FLOAT32, 0, Planted::UniqueMax}, BoundaryCase{SABER_DTYPE_FLOAT32, 1, Planted::UniqueMax},
                      BoundaryCase{SABER_DTYPE_FLOAT32, 3, Planted::UniqueMax}, BoundaryCase{SABER_DTYPE_FLOAT32, 3, Planted::NaN},
                      BoundaryCase{SABER_DTYPE_FLOAT32, 3, Planted::PlusInf}, BoundaryCase{SABER_DTYPE_BFLOAT16, 5, Planted::UniqueMax}),
    BoundaryCaseName);

TEST_F(Device, SaberDecodeCommitsNFirstAndFinishesWithoutMasks) {
    const saber_decode_options o = saber_options(32, 8, 3, 4);
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

TEST_F(Device, TokenConfidenceIsTheDefinitionsQForEverySplit) {
    saber_decode_options o = saber_options(16, 16, 3, 4);
    o.variant = SABER_VARIANT_PAPER;   // q of every decoded position
    o.temperature = 0.7f;
    o.seed = 77;
    const int vocabulary = 3001, mask = 7, batch = 2, generation = 16;
    Create(o, vocabulary, mask, batch);
    std::mt19937 rng(21);
    std::normal_distribution<float> logit(0.0f, 3.0f);
    std::vector<float> values(static_cast<size_t>(batch) * generation * vocabulary);
    for (float &x : values) x = logit(rng);
    Upload(values, SABER_DTYPE_FLOAT32);
    Step(SABER_DTYPE_FLOAT32);   // commits at least n = 3 positions of each sequence
    ASSERT_EQ(status.error, SABER_OK);
    std::vector<int32_t> canvas(static_cast<size_t>(batch) * generation);
    ASSERT_EQ(saber_decode_read(decode, canvas.data(), nullptr, nullptr), SABER_OK);
    for (float &x : values) x = logit(rng);
    Upload(values, SABER_DTYPE_FLOAT32);
    void *pointer = nullptr;
    ASSERT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
    int decoded = 0;
    for (int splits : {0, 1, 3}) {
        if (splits > 0) {
            ASSERT_EQ(saber::testing::set_row_splits(decode, splits), SABER_OK) << saber_last_error();
        }
        saber::testing::RowResults rows;
        ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
        ASSERT_EQ(saber::testing::launch_rows(decode, pointer, SABER_DTYPE_FLOAT32), SABER_OK) << saber_last_error();
        ASSERT_EQ(saber::testing::read_rows(decode, rows), SABER_OK) << saber_last_error();
        for (int b = 0; b < batch; ++b)
            for (int g = 0; g < generation; ++g) {
                const size_t at = static_cast<size_t>(b) * generation + g;
                const int token = canvas[at] != mask ? canvas[at] : -1;
                decoded += token >= 0;
                const saber::exact::RowResult want =
                    saber::exact::row_reference(values.data() + at * vocabulary, vocabulary, mask, token, SABER_METRIC_MAXPROB, o.temperature, o.seed, 2, b, g);
                ExpectTheDefinition(rows, at, want, std::to_string(saber::testing::row_splits(decode)) + " splits, sequence " + std::to_string(b) +
                                                        " position " + std::to_string(g) + ", token " + std::to_string(token));
                if (HasFatalFailure()) return;
            }
    }
    EXPECT_GE(decoded, 3 * 2 * batch) << "the first step commits n positions of each sequence";
}

// ---- the row plan: the fast pass's grid walks each sequence's own candidate rows ----

namespace {

struct PlanCase {
    int strategy;
    int splits;   // 0: the planned split
};

std::string PlanCaseName(const ::testing::TestParamInfo<PlanCase> &info) {
    const char *name = info.param.strategy == SABER_STRATEGY_SABER ? "saber" : info.param.strategy == SABER_STRATEGY_FACTOR ? "factor" : "threshold";
    return std::string(name) + "_splits" + std::to_string(info.param.splits);
}

/// The row-plan scenario: four sequences driven apart by their logits (confident rows commit at once, flat ones a
/// position at a time), stepped until all but one finish or five steps are taken, so that at the checked row pass
/// they are done, or in different blocks with some of the block decoded.
struct PlanScenario {
    static constexpr int kVocabulary = 2100, kMask = 2099, kGeneration = 8, kBatch = 4;   // 3 chunks, rows not aligned
    // K = 4, not 2: with two positions a block the factor rule commits the whole block every step (rank 1 always
    // passes, and a passing prefix of M - 1 commits all M), so every sequence would finish at step 4 together.
    static constexpr int kBlock = 4, kMaxSteps = 5;

    static saber_decode_options Options(int strategy) {
        saber_decode_options o = saber_tests::saber_options(kGeneration, kBlock, 1, 4);
        o.strategy = strategy;
        o.threshold = 0.9f;
        o.factor = 1.0f;
        return o;
    }

    /// confident(b, step): sequence 0 always, 1 never, 2 in its first two steps, 3 after its first.
    static bool Confident(int b, int step) { return b == 0 || (b == 2 && step < 2) || (b == 3 && step >= 1); }

    /// Step `taken`'s logits ([batch, G, V] floats), drawn from rng in the order the device test draws them.
    static void Logits(std::mt19937 &rng, int taken, std::vector<float> &values) {
        std::uniform_real_distribution<float> flat(-0.01f, 0.01f);
        values.resize(static_cast<size_t>(kBatch) * kGeneration * kVocabulary);
        for (int b = 0; b < kBatch; ++b)
            for (int g = 0; g < kGeneration; ++g) {
                float *row = values.data() + (static_cast<size_t>(b) * kGeneration + g) * kVocabulary;
                for (int v = 0; v < kVocabulary; ++v) row[v] = Confident(b, taken) ? 0.0f : flat(rng);
                if (Confident(b, taken)) row[(g * 37 + b) % kMask] = 30.0f;
            }
    }

    /// Which sequences are done when the scenario stops, and the steps taken.
    struct Run {
        std::vector<int32_t> done;
        int taken = 0;
    };

    /// The scenario on the host, sharing no code with the kernels: every row through exact::row_reference (the
    /// definition), every sequence's step through decide_reference.h, with the device test's stopping rule.
    static Run Emulate(int strategy) {
        const saber_decode_options o = Options(strategy);
        std::mt19937 rng(23);
        std::vector<float> values;
        std::vector<saber::reference::Sequence> sequences(kBatch);
        for (auto &q : sequences) {
            q.canvas.assign(kGeneration, kMask);
            q.decoded.assign(kGeneration, 0);
            q.commit_set.assign(kGeneration, 0);
            q.commit_confidence.assign(kGeneration, 0.0f);
            q.previous.assign(kGeneration, 0.0f);
            q.delta.assign(kGeneration, 0.0f);
        }
        Run run;
        run.done.assign(kBatch, 0);
        while (run.taken < kMaxSteps) {
            Logits(rng, run.taken, values);
            for (int b = 0; b < kBatch; ++b) {
                saber::reference::Sequence &q = sequences[static_cast<size_t>(b)];
                if (q.done) continue;
                saber::reference::Rows rows;
                for (int g = 0; g < kGeneration; ++g) {
                    const float *row = values.data() + (static_cast<size_t>(b) * kGeneration + g) * kVocabulary;
                    const saber::exact::RowResult r = saber::exact::row_reference(row, kVocabulary, kMask, q.decoded[g] ? q.canvas[g] : -1,
                                                                                  SABER_METRIC_MAXPROB, 0.0f, o.seed, run.taken + 1, b, g);
                    rows.prediction.push_back(r.prediction);
                    rows.confidence.push_back(r.confidence);
                    rows.token_confidence.push_back(r.token_confidence);
                    rows.metric.push_back(r.metric);
                }
                saber::reference::step(o, kBlock, kMask, run.taken + 1, q, rows, nullptr);
            }
            ++run.taken;
            for (int b = 0; b < kBatch; ++b) run.done[static_cast<size_t>(b)] = sequences[static_cast<size_t>(b)].done ? 1 : 0;
            if (std::count(run.done.begin(), run.done.end(), 1) >= kBatch - 1) break;
        }
        return run;
    }
};

}  // namespace

class RowPlanScenario : public ::testing::TestWithParam<int> {};

TEST_P(RowPlanScenario, TheHostEmulationLeavesOneSequenceDecodingAndTheConfidentOneDone) {
    // Runs without a device: the device test below rests on these facts of its scenario, so they are checked first on
    // the host, with the definition of the rows and the independent decide reference.
    const PlanScenario::Run run = PlanScenario::Emulate(GetParam());
    const int finished = static_cast<int>(std::count(run.done.begin(), run.done.end(), 1));
    EXPECT_LT(finished, PlanScenario::kBatch) << "a sequence must still be decoding after " << run.taken << " steps";
    EXPECT_EQ(run.done[1], 0) << "sequence 1 (flat rows, a position a step) cannot finish 8 positions in 5 steps";
    if (GetParam() == SABER_STRATEGY_THRESHOLD || GetParam() == SABER_STRATEGY_FACTOR) {
        EXPECT_EQ(run.done[0], 1) << "the confident sequence finishes within the scenario's steps";
    }
}

INSTANTIATE_TEST_SUITE_P(Strategies, RowPlanScenario, ::testing::Values(SABER_STRATEGY_THRESHOLD, SABER_STRATEGY_FACTOR, SABER_STRATEGY_SABER),
                         [](const ::testing::TestParamInfo<int> &info) {
                             return std::string(info.param == SABER_STRATEGY_SABER ? "saber" : info.param == SABER_STRATEGY_FACTOR ? "factor" : "threshold");
                         });

class RowPlan : public Device, public ::testing::WithParamInterface<PlanCase> {};

TEST_P(RowPlan, StaggeredSequencesReadTheirOwnRowsBitForBit) {
    // The scenario of PlanScenario, stepped on the device: the done flags must be the host emulation's. Then the fast
    // pass (grid-stride over the row plan) must write exactly the rows the reference path (one thread per position)
    // writes, with the same bits, and those are the host build's definition.
    constexpr int kVocabulary = PlanScenario::kVocabulary, kMask = PlanScenario::kMask, kGeneration = PlanScenario::kGeneration,
                  kBatch = PlanScenario::kBatch;
    const saber_decode_options o = PlanScenario::Options(GetParam().strategy);
    Create(o, kVocabulary, kMask, kBatch);
    if (GetParam().splits > 0) {
        ASSERT_EQ(saber::testing::set_row_splits(decode, GetParam().splits), SABER_OK) << saber_last_error();
    }
    int32_t length = 0;
    ASSERT_EQ(saber_decode_length(decode, &length), SABER_OK);
    ASSERT_EQ(length, kGeneration) << "empty prompts";
    std::mt19937 rng(23);
    std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
    std::vector<float> values;
    std::vector<int32_t> done(kBatch);
    int taken = 0;   // steps
    while (taken < PlanScenario::kMaxSteps) {
        PlanScenario::Logits(rng, taken, values);
        Upload(values, SABER_DTYPE_FLOAT32);
        Step(SABER_DTYPE_FLOAT32);
        ASSERT_EQ(status.error, SABER_OK);
        ++taken;
        ASSERT_EQ(saber_decode_read(decode, nullptr, nullptr, done.data()), SABER_OK);
        if (std::count(done.begin(), done.end(), 1) >= kBatch - 1) break;
    }
    const PlanScenario::Run emulated = PlanScenario::Emulate(o.strategy);
    ASSERT_EQ(taken, emulated.taken) << "steps taken, device vs the host emulation";
    ASSERT_EQ(done, emulated.done) << "sequences done, device vs the host emulation";
    ASSERT_LT(std::count(done.begin(), done.end(), 1), kBatch) << "a sequence must still be decoding";

    for (int dtype : {SABER_DTYPE_FLOAT32, SABER_DTYPE_FLOAT16, SABER_DTYPE_BFLOAT16}) {
        for (float &x : values) x = uniform(rng);
        const std::vector<float> seen = Upload(values, dtype);
        void *pointer = nullptr;
        ASSERT_EQ(saber_buffer_device_pointer(logits, &pointer), SABER_OK);
        saber::testing::RowResults fast, reference;
        for (auto [path, out] : {std::pair{saber::RowPath::Fast, &fast}, std::pair{saber::RowPath::Reference, &reference}}) {
            ASSERT_EQ(saber::testing::poison_rows(decode), SABER_OK);
            ASSERT_EQ(saber::testing::launch_rows(decode, pointer, dtype, path), SABER_OK) << saber_last_error();
            ASSERT_EQ(saber::testing::read_rows(decode, *out), SABER_OK) << saber_last_error();
        }
        int written = 0;
        for (int b = 0; b < kBatch; ++b)
            for (int g = 0; g < kGeneration; ++g) {
                const size_t at = static_cast<size_t>(b) * kGeneration + g;
                const std::string where = "dtype " + std::to_string(dtype) + ", sequence " + std::to_string(b) + " position " + std::to_string(g);
                ASSERT_EQ(fast.prediction[at], reference.prediction[at]) << where;
                ASSERT_EQ(bits_of(fast.confidence[at]), bits_of(reference.confidence[at])) << where;
                ASSERT_EQ(bits_of(fast.token_confidence[at]), bits_of(reference.token_confidence[at])) << where;
                ASSERT_EQ(bits_of(fast.metric[at]), bits_of(reference.metric[at])) << where;
                if (reference.prediction[at] < 0) continue;   // not a row of this step: untouched by both
                ++written;
                EXPECT_FALSE(done[static_cast<size_t>(b)]) << where << ": a finished sequence has no rows";
                ExpectTheDefinition(fast, at, saber::exact::row_reference(seen.data() + at * kVocabulary, kVocabulary, kMask, -1, SABER_METRIC_MAXPROB, 0.0f,
                                                                         o.seed, taken + 1, b, g),
                                    where);
            }
        EXPECT_GT(written, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Strategies, RowPlan,
                         ::testing::Values(PlanCase{SABER_STRATEGY_THRESHOLD, 0}, PlanCase{SABER_STRATEGY_THRESHOLD, 3},
                                           PlanCase{SABER_STRATEGY_FACTOR, 0}, PlanCase{SABER_STRATEGY_FACTOR, 3},
                                           PlanCase{SABER_STRATEGY_SABER, 0}, PlanCase{SABER_STRATEGY_SABER, 3}),
                         PlanCaseName);

// ---- batch composition: a sequence decodes the same alone and beside others ----

/// The logits a model gives one sequence: a function of that sequence's own tokens (prompt and generation) and the
/// position, whatever batch it is in.
void SequenceLogits(const int32_t *tokens, int count, int position, int vocabulary, int mask, float *out) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < count; ++i) h = (h ^ static_cast<uint32_t>(tokens[i])) * 1099511628211ull;
    std::mt19937_64 rng(h ^ (static_cast<uint64_t>(position) * 0x9E3779B97F4A7C15ull));
    std::normal_distribution<float> logit(0.0f, 2.0f);
    for (int v = 0; v < vocabulary; ++v) out[v] = logit(rng);
    out[mask] = 9.0f;   // a model may favour its mask id; it is never predicted
    out[rng() % static_cast<uint64_t>(vocabulary)] += 6.0f;
}

/// What sequence 0 of a decode went through: its generation, NFE and every step's trace.
struct FirstSequenceRun {
    std::vector<int32_t> tokens;
    int32_t nfe = 0;
    std::vector<saber_trace_step> steps;
    std::vector<int32_t> events, trace_tokens;
    std::vector<uint32_t> confidences, deltas;   // bits
};

class BatchComposition : public Device {
protected:
    static constexpr int kVocabulary = 5001, kMask = 5000, kGeneration = 16;   // 5 chunks, rows not 16-byte aligned

    /// Decodes `prompts` as one batch (the model: SequenceLogits) with `splits` blocks per row (0: the planned split).
    void DecodeTogether(const std::vector<std::vector<int32_t>> &prompts, int splits, FirstSequenceRun &out) {
        saber_decode_destroy(decode);
        saber_buffer_destroy(logits);
        decode = nullptr;
        logits = nullptr;
        saber_decode_options o = saber_options(kGeneration, 8, 2, 4);
        o.variant = SABER_VARIANT_PAPER;
        o.temperature = 0.7f;
        o.seed = 1234;
        const int batch = static_cast<int>(prompts.size());
        std::vector<int32_t> lengths, flat;
        for (const auto &p : prompts) {
            lengths.push_back(static_cast<int32_t>(p.size()));
            flat.insert(flat.end(), p.begin(), p.end());
        }
        constexpr int kTraceCapacity = 256;
        ASSERT_EQ(saber_decode_create(context, &o, kVocabulary, kMask, batch, flat.data(), lengths.data(), kTraceCapacity, &decode), SABER_OK)
            << saber_last_error();
        int32_t length = 0;
        ASSERT_EQ(saber_decode_length(decode, &length), SABER_OK);
        const size_t rows = static_cast<size_t>(batch) * length;
        ASSERT_EQ(saber_buffer_create(context, rows * kVocabulary * 4, &logits), SABER_OK);
        if (splits > 0) {
            ASSERT_EQ(saber::testing::set_row_splits(decode, splits), SABER_OK) << saber_last_error();
        }
        std::vector<int32_t> canvas(rows), done(static_cast<size_t>(batch));
        std::vector<float> values(rows * kVocabulary, 0.0f);
        int steps = 0;
        while (true) {
            ASSERT_EQ(saber_decode_read(decode, canvas.data(), nullptr, done.data()), SABER_OK);
            if (done[0]) break;
            ASSERT_LT(steps, kTraceCapacity) << "no progress";
            for (int b = 0; b < batch; ++b)
                for (int p = lengths[b]; p < lengths[b] + kGeneration; ++p)
                    SequenceLogits(canvas.data() + static_cast<size_t>(b) * length, lengths[b] + kGeneration, p, kVocabulary, kMask,
                                   values.data() + (static_cast<size_t>(b) * length + p) * kVocabulary);
            Upload(values, SABER_DTYPE_FLOAT32);
            Step(SABER_DTYPE_FLOAT32);
            ASSERT_EQ(status.error, SABER_OK);
            ++steps;
        }
        out.tokens.assign(canvas.begin() + lengths[0], canvas.begin() + lengths[0] + kGeneration);
        std::vector<int32_t> nfe(static_cast<size_t>(batch));
        ASSERT_EQ(saber_decode_read(decode, nullptr, nfe.data(), nullptr), SABER_OK);
        out.nfe = nfe[0];
        for (int step = 1; step <= steps; ++step) {
            saber_trace_step info{};
            std::vector<int32_t> events(kGeneration), tokens(kGeneration);
            std::vector<float> confidences(kGeneration), deltas(kGeneration);
            ASSERT_EQ(saber_decode_read_trace(decode, 0, step, &info, events.data(), tokens.data(), confidences.data(), deltas.data()), SABER_OK)
                << saber_last_error();
            out.steps.push_back(info);
            out.events.insert(out.events.end(), events.begin(), events.end());
            out.trace_tokens.insert(out.trace_tokens.end(), tokens.begin(), tokens.end());
            for (int g = 0; g < kGeneration; ++g) {
                out.confidences.push_back(bits_of(confidences[static_cast<size_t>(g)]));
                out.deltas.push_back(bits_of(deltas[static_cast<size_t>(g)]));
            }
        }
    }
};

TEST_F(BatchComposition, ASequenceDecodesTheSameAloneAndInBatchesOfTwoAndEight) {
    std::mt19937 rng(3);
    std::vector<std::vector<int32_t>> prompts{{11, 12, 13, 14, 15}};
    for (int b = 1; b < 8; ++b) {
        std::vector<int32_t> prompt(static_cast<size_t>(1 + rng() % 12));
        for (int32_t &t : prompt) t = static_cast<int32_t>(rng() % kMask);
        prompts.push_back(prompt);
    }
    FirstSequenceRun alone, pair, eight;
    DecodeTogether({prompts[0]}, 1, alone);
    if (HasFatalFailure()) return;
    DecodeTogether({prompts[0], prompts[1]}, 0, pair);
    if (HasFatalFailure()) return;
    DecodeTogether(prompts, 3, eight);
    if (HasFatalFailure()) return;
    ASSERT_FALSE(alone.steps.empty());
    for (const FirstSequenceRun *other : {&pair, &eight}) {
        const char *name = other == &pair ? "batch of 2" : "batch of 8";
        EXPECT_EQ(other->tokens, alone.tokens) << name;
        EXPECT_EQ(other->nfe, alone.nfe) << name;
        ASSERT_EQ(other->steps.size(), alone.steps.size()) << name;
        for (size_t i = 0; i < alone.steps.size(); ++i)
            EXPECT_EQ(std::memcmp(&other->steps[i], &alone.steps[i], sizeof(saber_trace_step)), 0) << name << ", step " << i + 1;
        EXPECT_EQ(other->events, alone.events) << name;
        EXPECT_EQ(other->trace_tokens, alone.trace_tokens) << name;
        EXPECT_EQ(other->confidences, alone.confidences) << name << ": trace confidences (bits)";
        EXPECT_EQ(other->deltas, alone.deltas) << name << ": trace deltas (bits)";
    }
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

TEST_F(Device, ScaledTermsHaveTheHostsBitsOnTheDevice) {
    // exact::scaled_terms_fast (the row pass's terms) and the definition's scaled_terms, on the device, against the host
    // build bit for bit; the host tests check their agreement on every float of [-90, 0] and in classes.
    namespace exact = saber::exact;
    std::mt19937 rng(19);
    std::uniform_real_distribution<float> wide(-90.0f, 0.0f), near(-35.0f, 0.0f);
    std::vector<float> inputs = exact_inputs(rng, 2048, [&](std::mt19937 &r) { return wide(r); },
                                             {0.0f, -0.0f, -kInf, -1e-45f, -1e-39f, -86.0f, -86.00001f, -87.0f, -87.00001f, -29.1f, -29.2f, -33.6f, -3.4e38f});
    for (int i = 0; i < 2048; ++i) inputs.push_back(near(rng));
    const size_t n = inputs.size();
    float *device_inputs = nullptr, *device_outputs = nullptr;
    ASSERT_EQ(cudaMalloc(&device_inputs, n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&device_outputs, 4 * n * sizeof(float)), cudaSuccess);
    std::vector<float> out(4 * n, NAN);
    ASSERT_EQ(cudaMemcpy(device_inputs, inputs.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(saber::launch_scaled_terms(device_inputs, device_outputs, static_cast<int64_t>(n), nullptr), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(out.data(), device_outputs, 4 * n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(device_inputs);
    cudaFree(device_outputs);
    for (size_t i = 0; i < n; ++i) {
        const float d = inputs[i];
        const exact::ScaledTerms fast = exact::scaled_terms_fast(d), definition = exact::scaled_terms(d, 0.0f);
        const float host[4] = {fast.sum, fast.entropy, definition.sum, definition.entropy};
        for (int k = 0; k < 4; ++k) ASSERT_EQ(exact::bits(out[4 * i + k]), exact::bits(host[k])) << "output " << k << " at d = " << d;
    }
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

// ---- contexts, threads and devices (issue 13): entry points bind their context's device; a context outlives its handles;
// a CUDA error pending before a launch is reported as such ----

namespace {

/// Runs a whole small SABER decode on `device` from the calling thread, whose current device is set to `current` first;
/// returns the canvas, or an empty vector after a failure (reported through ADD_FAILURE). Every call must leave the
/// thread's current device at `current`.
std::vector<int32_t> DecodeOnDevice(int device, int current) {
    const auto failed = [](const char *what) {
        ADD_FAILURE() << what << ": " << saber_last_error();
        return std::vector<int32_t>{};
    };
    if (cudaSetDevice(current) != cudaSuccess) return failed("cudaSetDevice");
    const auto current_is_kept = [current] {
        int now = -1;
        return cudaGetDevice(&now) == cudaSuccess && now == current;
    };
    const saber_decode_options o = saber_options(16, 8, 2, 4);
    const int vocabulary = 64, mask = 63, generation = 16;
    saber_context context = nullptr;
    saber_buffer logits = nullptr;
    saber_decode decode = nullptr;
    std::vector<int32_t> canvas(generation);
    std::vector<int32_t> lengths(1, 0);
    if (saber_context_create(device, &context) != SABER_OK) return failed("saber_context_create");
    EXPECT_TRUE(current_is_kept()) << "saber_context_create changed the caller's current device";
    bool ok = saber_decode_create(context, &o, vocabulary, mask, 1, nullptr, lengths.data(), 0, &decode) == SABER_OK &&
              saber_buffer_create(context, static_cast<uint64_t>(generation) * vocabulary * 4, &logits) == SABER_OK;
    EXPECT_TRUE(ok) << saber_last_error();
    std::mt19937 rng(static_cast<unsigned>(29));
    std::uniform_real_distribution<float> uniform(-4.0f, 4.0f);
    saber_decode_status status{};
    void *pointer = nullptr;
    ok = ok && saber_buffer_device_pointer(logits, &pointer) == SABER_OK;
    for (int step = 0; ok && step < generation; ++step) {
        std::vector<float> values(static_cast<size_t>(generation) * vocabulary);
        for (float &x : values) x = uniform(rng);
        for (int g = 0; g < generation; ++g) values[static_cast<size_t>(g) * vocabulary + mask] = 100.0f;
        ok = saber_buffer_upload(logits, 0, values.data(), values.size() * 4) == SABER_OK &&
             saber_decode_step(decode, pointer, SABER_DTYPE_FLOAT32) == SABER_OK && saber_decode_poll(decode, &status) == SABER_OK &&
             status.error == SABER_OK;
        EXPECT_TRUE(ok) << "step " << step << ": " << saber_last_error();
        EXPECT_TRUE(current_is_kept()) << "a call on device " << device << " changed the caller's current device " << current;
        if (status.active_sequences == 0) break;
    }
    ok = ok && status.active_sequences == 0 && saber_decode_read(decode, canvas.data(), nullptr, nullptr) == SABER_OK;
    EXPECT_TRUE(ok) << saber_last_error();
    EXPECT_EQ(saber_decode_destroy(decode), SABER_OK) << saber_last_error();
    EXPECT_EQ(saber_buffer_destroy(logits), SABER_OK) << saber_last_error();
    EXPECT_EQ(saber_context_destroy(context), SABER_OK) << saber_last_error();
    EXPECT_TRUE(current_is_kept());
    return ok ? canvas : std::vector<int32_t>{};
}

}  // namespace

// Two contexts used from two threads whose current device is another one (the .NET pool-thread case). With two or more
// devices the contexts are on devices 0 and 1 and each thread's current device is the other context's; with one device
// both contexts are on device 0 (the test then checks that two contexts and threads share it, and that the current
// device is left alone).
TEST_F(Device, TwoContextsOnTwoThreadsDecodeOnTheirOwnDevices) {
    int count = 0;
    ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
    const int second = count > 1 ? 1 : 0;
    std::vector<int32_t> first_canvas, second_canvas;
    std::thread a([&] { first_canvas = DecodeOnDevice(0, second); });
    std::thread b([&] { second_canvas = DecodeOnDevice(second, 0); });
    a.join();
    b.join();
    ASSERT_FALSE(first_canvas.empty());
    EXPECT_EQ(first_canvas, second_canvas) << "the same decode on devices 0 and " << second;
    if (count < 2) std::printf("[ NOTE     ] one CUDA device: both contexts ran on device 0\n");
}

TEST_F(Device, AContextWithLiveHandlesIsNotDestroyed) {
    const saber_decode_options o = saber_options(8, 8, 2, 8);
    Create(o, 64, 63, 2);   // one decode and one buffer from `context`
    saber_buffer extra = nullptr;
    ASSERT_EQ(saber_buffer_create(context, 256, &extra), SABER_OK);
    EXPECT_EQ(saber_context_destroy(context), SABER_ERROR_INVALID_ARGUMENT);
    const std::string message = saber_last_error();
    EXPECT_NE(message.find("3 live handle(s)"), std::string::npos) << message;
    EXPECT_NE(message.find("1 decode and 2 buffers"), std::string::npos) << message;
    // The refused destroy left everything usable.
    void *stream = nullptr;
    EXPECT_EQ(saber_context_stream(context, &stream), SABER_OK);
    EXPECT_EQ(saber_buffer_upload(extra, 0, message.data(), 16), SABER_OK) << saber_last_error();
    EXPECT_EQ(saber_buffer_destroy(extra), SABER_OK);
    EXPECT_EQ(saber_decode_destroy(decode), SABER_OK);
    decode = nullptr;
    EXPECT_EQ(saber_context_destroy(context), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(saber_last_error()).find("(1 buffer)"), std::string::npos) << saber_last_error();
    EXPECT_EQ(saber_buffer_destroy(logits), SABER_OK);
    logits = nullptr;
    EXPECT_EQ(saber_context_destroy(context), SABER_OK) << saber_last_error();
    context = nullptr;
}

TEST_F(Device, AnErrorPendingBeforeALaunchIsReportedAsSuchAndNotAsTheLaunchs) {
    // Another library's failed call leaves a (non-sticky) error pending on this thread.
    void *huge = nullptr;
    ASSERT_NE(cudaMalloc(&huge, size_t{1} << 62), cudaSuccess);
    ASSERT_NE(cudaPeekAtLastError(), cudaSuccess) << "the failed call left no pending error to test with";
    const std::vector<float> inputs(64, -1.0f);
    std::vector<float> outputs(inputs.size());
    EXPECT_EQ(saber_exact_eval_device(context, SABER_EXACT_EXP, inputs.data(), outputs.data(), 64), SABER_ERROR_CUDA);
    const std::string message = saber_last_error();
    EXPECT_NE(message.find("already pending"), std::string::npos) << message;
    EXPECT_NE(message.find("cudaErrorMemoryAllocation"), std::string::npos) << message;
    EXPECT_NE(message.find("not an error of this launch"), std::string::npos) << message;
    // Reported once: the next call launches normally.
    EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
    EXPECT_EQ(saber_exact_eval_device(context, SABER_EXACT_EXP, inputs.data(), outputs.data(), 64), SABER_OK) << saber_last_error();
}

// saber_context_widen_ids: int32 ids (the decode's canvases) to int64 (a model's input_ids), every value, queued on the
// context's stream and read back after it; count 0 writes nothing.
TEST_F(Device, WidenIdsWritesEveryInt32AsInt64) {
    constexpr int64_t count = 5003;   // several blocks and a ragged last one
    std::mt19937 random(24);
    std::uniform_int_distribution<int32_t> any(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
    std::vector<int32_t> ids(count + 1);
    for (int32_t &id : ids) id = any(random);
    ids[0] = 0;
    ids[1] = -1;
    ids[2] = std::numeric_limits<int32_t>::min();
    ids[3] = std::numeric_limits<int32_t>::max();
    ids[4] = std::numeric_limits<int32_t>::min() + 1;
    ids[count] = -7;   // the last value of the run that starts at element 1
    saber_buffer source = nullptr, destination = nullptr;
    ASSERT_EQ(saber_buffer_create(context, ids.size() * sizeof(int32_t), &source), SABER_OK) << saber_last_error();
    ASSERT_EQ(saber_buffer_create(context, ids.size() * sizeof(int64_t), &destination), SABER_OK) << saber_last_error();
    void *source_pointer = nullptr, *destination_pointer = nullptr;
    ASSERT_EQ(saber_buffer_device_pointer(source, &source_pointer), SABER_OK);
    ASSERT_EQ(saber_buffer_device_pointer(destination, &destination_pointer), SABER_OK);
    ASSERT_EQ(saber_buffer_upload(source, 0, ids.data(), ids.size() * sizeof(int32_t)), SABER_OK) << saber_last_error();
    const std::vector<int64_t> poison(ids.size(), 0x5A5A5A5A5A5A5A5ALL);
    auto read = [&] {
        std::vector<int64_t> out(ids.size());
        EXPECT_EQ(saber_buffer_download(destination, 0, out.data(), out.size() * sizeof(int64_t)), SABER_OK) << saber_last_error();
        return out;
    };

    ASSERT_EQ(saber_buffer_upload(destination, 0, poison.data(), poison.size() * sizeof(int64_t)), SABER_OK);
    ASSERT_EQ(saber_context_widen_ids(context, source_pointer, destination_pointer, 0), SABER_OK) << saber_last_error();
    EXPECT_EQ(read(), poison) << "count 0 writes nothing";

    ASSERT_EQ(saber_context_widen_ids(context, source_pointer, destination_pointer, count), SABER_OK) << saber_last_error();
    std::vector<int64_t> out = read();   // the download is ordered after the widening on the stream
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(out[i], static_cast<int64_t>(ids[i])) << "element " << i;
    EXPECT_EQ(out[count], poison[count]) << "nothing past count";
    EXPECT_EQ(out[2], -2147483648LL);
    EXPECT_EQ(out[3], 2147483647LL);

    // A source that is 4- but not 8-byte aligned (a canvas row of odd length), into an offset destination.
    ASSERT_EQ(saber_buffer_upload(destination, 0, poison.data(), poison.size() * sizeof(int64_t)), SABER_OK);
    ASSERT_EQ(saber_context_widen_ids(context, static_cast<const int32_t *>(source_pointer) + 1, static_cast<int64_t *>(destination_pointer) + 1,
                                      count),
              SABER_OK)
        << saber_last_error();
    out = read();
    EXPECT_EQ(out[0], poison[0]);
    for (int64_t i = 1; i <= count; ++i) ASSERT_EQ(out[i], static_cast<int64_t>(ids[i])) << "element " << i;

    EXPECT_EQ(saber_buffer_destroy(source), SABER_OK);
    EXPECT_EQ(saber_buffer_destroy(destination), SABER_OK);
}
