// Host-side tests of the C ABI: they need no GPU and run in CI.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <climits>
#include <random>
#include <thread>
#include <tuple>
#include <vector>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "test_support.h"
#include "exact_math.h"
#include "handle_registry.h"
#include "kernels/row_scan.h"
#include "philox.h"
#include "saber/saber.h"
#include "validate.h"

namespace {

saber_decode_options saber_options() {
    saber_decode_options o = saber_tests::saber_options(8, 4, 2, 8);
    o.threshold = 0.9f;
    o.factor = 1.0f;
    return o;
}

std::string error() { return saber_last_error(); }

TEST(Abi, VersionMatchesTheHeader) {
    EXPECT_EQ(saber_abi_version(), SABER_ABI_VERSION);
    EXPECT_EQ(SABER_ABI_VERSION, 2) << "ABI 2: saber_engine_* removed, saber_context_widen_ids added";
}

TEST(Abi, StructLayoutsDescribeEveryAbiStruct) {
    const saber_struct_layout *layouts = nullptr;
    int32_t count = 0;
    ASSERT_EQ(saber_struct_layouts(&layouts, &count), SABER_OK);
    ASSERT_EQ(count, 4);
    EXPECT_STREQ(layouts[0].name, "saber_decode_options");
    EXPECT_EQ(layouts[0].size, sizeof(saber_decode_options));
    EXPECT_EQ(layouts[0].field_count, 15u);
    EXPECT_STREQ(layouts[0].field_names[13], "factor");
    EXPECT_STREQ(layouts[0].field_names[14], "seed");
    EXPECT_EQ(layouts[0].field_offsets[14], offsetof(saber_decode_options, seed));
    // factor took the padding after temperature: the size and the other offsets are those of the struct without it.
    EXPECT_EQ(sizeof(saber_decode_options), 64u);
    EXPECT_EQ(offsetof(saber_decode_options, factor), 52u);
    EXPECT_EQ(offsetof(saber_decode_options, seed), 56u);
    EXPECT_STREQ(layouts[2].name, "saber_trace_step");
    EXPECT_EQ(layouts[2].field_offsets[4], offsetof(saber_trace_step, tau));
    for (int32_t i = 0; i < count; ++i)
        for (uint32_t f = 1; f < layouts[i].field_count; ++f)
            EXPECT_GT(layouts[i].field_offsets[f], layouts[i].field_offsets[f - 1]) << layouts[i].name << " field " << f;
}

// Known-answer vectors published with Random123 (philox4x32_10).
TEST(Philox, MatchesThePublishedKnownAnswers) {
    struct Case {
        uint32_t c[4], k[2], x[4];
    } cases[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Case &t : cases) {
        const saber::PhiloxWords w = saber::philox4x32_10(t.c[0], t.c[1], t.c[2], t.c[3], t.k[0], t.k[1]);
        EXPECT_EQ(w.x0, t.x[0]);
        EXPECT_EQ(w.x1, t.x[1]);
        EXPECT_EQ(w.x2, t.x[2]);
        EXPECT_EQ(w.x3, t.x[3]);
    }
}

TEST(Philox, ExportedDrawFollowsTheDocumentedLayout) {
    const uint64_t seed = 0x0123456789ABCDEFull;
    for (int v = 0; v < 9; ++v) {
        // counter (v/4, position, sequence, step), key (seed low, seed high), word v % 4
        const saber::PhiloxWords w = saber::philox4x32_10(static_cast<uint32_t>(v / 4), 17, 3, 5, 0x89ABCDEFu, 0x01234567u);
        const uint32_t words[4] = {w.x0, w.x1, w.x2, w.x3};
        EXPECT_EQ(saber_random_bits(seed, 5, 3, 17, v), words[v % 4]) << "v=" << v;
    }
}

TEST(Philox, UniformIsExactAndStrictlyInsideTheUnitInterval) {
    for (uint32_t bits : {0u, 0x1FFu, 0x200u, 0xFFFFFE00u, 0xFFFFFFFFu}) {
        const float u = saber::to_uniform(bits);
        EXPECT_GT(u, 0.0f);
        EXPECT_LT(u, 1.0f);
        EXPECT_EQ(static_cast<double>(u), ((bits >> 9) + 0.5) / 8388608.0);
        EXPECT_TRUE(std::isfinite(saber::exact::gumbel(u)));
    }
}

TEST(Validation, GoodOptionsPass) {
    saber_decode_options o = saber_options();
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.strategy = SABER_STRATEGY_LOW_CONFIDENCE;
    o.steps = 4;
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.steps = 128;   // 16 x G, the largest S
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.strategy = SABER_STRATEGY_THRESHOLD;
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.strategy = SABER_STRATEGY_FACTOR;
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.factor = 1e30f;   // any finite positive factor (large ones commit every masked position)
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
    o.generation_length = o.block_length = 1 << 20;   // the largest G
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_OK) << error();
}

struct BadOption {
    const char *name;
    void (*edit)(saber_decode_options &);
    const char *message;
};

class InvalidOptions : public ::testing::TestWithParam<BadOption> {};

TEST_P(InvalidOptions, AreRejectedNamingTheValue) {
    saber_decode_options o = saber_options();
    GetParam().edit(o);
    EXPECT_EQ(saber_validate_options(&o, 100, 99), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find(GetParam().message), std::string::npos) << error();
}

INSTANTIATE_TEST_SUITE_P(
    Spec7, InvalidOptions,
    ::testing::Values(
        BadOption{"G0", [](saber_decode_options &o) { o.generation_length = 0; }, "generation_length G must be > 0; got 0"},
        BadOption{"K0", [](saber_decode_options &o) { o.block_length = 0; }, "block_length K must be > 0 and divide G=8; got 0"},
        BadOption{"K3", [](saber_decode_options &o) { o.block_length = 3; }, "divide G=8; got 3"},
        BadOption{"S", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_LOW_CONFIDENCE; o.steps = 3; },
                  "steps S must be a positive multiple of the block count 2 (G=8, K=4); got 3"},
        BadOption{"Gmax", [](saber_decode_options &o) { o.generation_length = (1 << 20) + 8; },
                  "generation_length G must be at most 1048576; got 1048584"},
        BadOption{"Smax", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_LOW_CONFIDENCE; o.steps = 130; },
                  "steps S must be at most 16 x G = 128 (steps past G commit nothing); got 130"},
        BadOption{"n", [](saber_decode_options &o) { o.min_tokens_per_step = 0; }, "min_tokens_per_step n must be >= 1; got 0"},
        BadOption{"mu", [](saber_decode_options &o) { o.remask_divisor = 0; }, "remask_divisor mu must be >= 1; got 0"},
        BadOption{"T", [](saber_decode_options &o) { o.temperature = -0.5f; }, "temperature T must be finite and >= 0; got -0.5"},
        BadOption{"Tnan", [](saber_decode_options &o) { o.temperature = NAN; }, "got nan"},
        BadOption{"theta", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_THRESHOLD; o.threshold = 1.5f; },
                  "threshold theta must lie in (0, 1]; got 1.5"},
        BadOption{"fixed", [](saber_decode_options &o) { o.use_fixed_threshold = 1; o.fixed_threshold = 0.0f; },
                  "fixed_threshold theta must lie in (0, 1]; got 0"},
        BadOption{"variant", [](saber_decode_options &o) { o.variant = 7; }, "got 7"},
        BadOption{"metric", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_LOW_CONFIDENCE; o.steps = 2; o.metric = 9; },
                  "metric must be a saber_metric (0..3); got 9"},
        BadOption{"factor0", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_FACTOR; o.factor = 0.0f; },
                  "factor must be finite and > 0; got 0"},
        BadOption{"factorNeg", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_FACTOR; o.factor = -2.0f; },
                  "factor must be finite and > 0; got -2"},
        BadOption{"factorInf", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_FACTOR; o.factor = INFINITY; },
                  "factor must be finite and > 0; got inf"},
        BadOption{"factorNaN", [](saber_decode_options &o) { o.strategy = SABER_STRATEGY_FACTOR; o.factor = NAN; },
                  "factor must be finite and > 0; got nan"},
        BadOption{"strategy", [](saber_decode_options &o) { o.strategy = 5; }, "strategy must be a saber_strategy (0..3); got 5"}),
    [](const ::testing::TestParamInfo<BadOption> &info) { return std::string(info.param.name); });

TEST(Validation, MaskIdOutsideTheVocabulary) {
    saber_decode_options o = saber_options();
    EXPECT_EQ(saber_validate_options(&o, 100, 100), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("mask id must lie in [0, V=100); got 100"), std::string::npos) << error();
    EXPECT_EQ(saber_validate_options(&o, 100, -1), SABER_ERROR_INVALID_ARGUMENT);
}

TEST(Validation, NullOptions) {
    EXPECT_EQ(saber_validate_options(nullptr, 10, 1), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_validate_options: options is null") << "the message names the entry point and the argument";
}

TEST(Errors, SuccessClearsTheLastError) {
    EXPECT_EQ(saber_validate_options(nullptr, 10, 1), SABER_ERROR_INVALID_ARGUMENT);
    saber_decode_options o = saber_options();
    EXPECT_EQ(saber_validate_options(&o, 10, 1), SABER_OK);
    EXPECT_STREQ(saber_last_error(), "");
}

TEST(Handles, NullHandlesAreErrorsAndDestroyingNullSucceeds) {
    EXPECT_EQ(saber_context_destroy(nullptr), SABER_OK);
    EXPECT_EQ(saber_buffer_destroy(nullptr), SABER_OK);
    EXPECT_EQ(saber_decode_destroy(nullptr), SABER_OK);
    void *stream = nullptr;
    EXPECT_NE(saber_context_stream(nullptr, &stream), SABER_OK);
    saber_decode_status status{};
    EXPECT_NE(saber_decode_poll(nullptr, &status), SABER_OK);
    EXPECT_NE(saber_decode_step(nullptr, &status, SABER_DTYPE_FLOAT32), SABER_OK);
}

TEST(Handles, ForeignHandlesAreRejected) {
    if (!saber_built_with_cuda()) GTEST_SKIP() << "built without CUDA: every device call reports SABER_ERROR_NO_DEVICE";
    int fake = 0;
    saber_decode_status status{};
    EXPECT_EQ(saber_decode_poll(reinterpret_cast<saber_decode>(&fake), &status), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_decode_poll: decode is not a live handle (destroyed or foreign)");
    EXPECT_EQ(saber_context_copy_to_device(nullptr, &fake, &fake, 4), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_copy_to_device: context is null");
}

TEST(WidenIds, ArgumentErrorsNameTheValueBeforeAnyDeviceCall) {
    if (!saber_built_with_cuda()) {
        int32_t source[1] = {0};
        int64_t destination[1] = {0};
        EXPECT_EQ(saber_context_widen_ids(nullptr, source, destination, 1), SABER_ERROR_NO_DEVICE);
        EXPECT_NE(error().find("saber_context_widen_ids: libsaber_native was built without CUDA"), std::string::npos) << error();
        GTEST_SKIP() << "built without CUDA: every device call reports SABER_ERROR_NO_DEVICE";
    }
    // Checked before the context (null here): no device is needed to reach these errors.
    alignas(8) static int64_t storage[64];
    const void *source = storage;
    void *destination = storage + 32;
    EXPECT_EQ(saber_context_widen_ids(nullptr, source, destination, -1), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: count must be >= 0; got -1");
    EXPECT_EQ(saber_context_widen_ids(nullptr, source, destination, INT64_MIN), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("got -9223372036854775808"), std::string::npos) << error();
    EXPECT_EQ(saber_context_widen_ids(nullptr, source, destination, INT64_MAX / 8 + 1), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("count must be at most 1152921504606846975"), std::string::npos) << error();
    EXPECT_EQ(saber_context_widen_ids(nullptr, nullptr, destination, 3), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: device_source is null with count 3");
    EXPECT_EQ(saber_context_widen_ids(nullptr, source, nullptr, 3), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: device_destination is null with count 3");
    EXPECT_EQ(saber_context_widen_ids(nullptr, reinterpret_cast<const char *>(source) + 2, destination, 3), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("device_source must be 4-byte aligned"), std::string::npos) << error();
    EXPECT_EQ(saber_context_widen_ids(nullptr, source, reinterpret_cast<char *>(destination) + 4, 3), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("device_destination must be 8-byte aligned"), std::string::npos) << error();
    // Overlap: in place, the destination just inside the source's end, the source just inside the destination's end.
    EXPECT_EQ(saber_context_widen_ids(nullptr, storage, storage, 2), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("overlap"), std::string::npos) << error();
    EXPECT_EQ(saber_context_widen_ids(nullptr, storage, storage + 1, 4), SABER_ERROR_INVALID_ARGUMENT) << "source 16 bytes, destination at +8";
    EXPECT_EQ(saber_context_widen_ids(nullptr, storage + 3, storage, 4), SABER_ERROR_INVALID_ARGUMENT) << "destination 32 bytes, source at +24";
    // Adjacent ranges do not overlap: past the argument checks, the null context is the error.
    EXPECT_EQ(saber_context_widen_ids(nullptr, storage, storage + 2, 4), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: context is null");
    EXPECT_EQ(saber_context_widen_ids(nullptr, storage + 4, storage, 4), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: context is null");
    // count 0 needs no pointers, but still a live context.
    EXPECT_EQ(saber_context_widen_ids(nullptr, nullptr, nullptr, 0), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: context is null");
    int fake = 0;
    EXPECT_EQ(saber_context_widen_ids(reinterpret_cast<saber_context>(&fake), nullptr, nullptr, 0), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(error(), "saber_context_widen_ids: context is not a live handle (destroyed or foreign)");
}

TEST(DeviceCapability, DevicesOlderThanSm80AreRefusedNamingTheDeviceAndItsCapability) {
    // Described devices (no device call): what saber_context_create checks with cudaGetDeviceProperties' answer.
    EXPECT_EQ(saber::validate_device_capability(1, "Tesla T4", 7, 5), SABER_ERROR_NO_DEVICE);
    EXPECT_NE(error().find("CUDA device 1 (Tesla T4) has compute capability 7.5"), std::string::npos) << error();
    EXPECT_NE(error().find("need 8.0 or newer"), std::string::npos) << error();
    EXPECT_EQ(saber::validate_device_capability(0, "Tesla V100-SXM2-32GB", 7, 0), SABER_ERROR_NO_DEVICE);
    EXPECT_NE(error().find("(Tesla V100-SXM2-32GB) has compute capability 7.0"), std::string::npos) << error();
    EXPECT_EQ(saber::validate_device_capability(0, nullptr, 6, 1), SABER_ERROR_NO_DEVICE);
    EXPECT_NE(error().find("(unnamed) has compute capability 6.1"), std::string::npos) << error();
    for (auto [name, major, minor] : {std::tuple{"NVIDIA A100-SXM4-80GB", 8, 0}, std::tuple{"NVIDIA GeForce RTX 3090", 8, 6},
                                      std::tuple{"NVIDIA L4", 8, 9}, std::tuple{"NVIDIA H100 80GB HBM3", 9, 0},
                                      std::tuple{"NVIDIA B200", 10, 0}, std::tuple{"NVIDIA GeForce RTX 5090", 12, 0}})
        EXPECT_EQ(saber::validate_device_capability(0, name, major, minor), SABER_OK) << name;
}

TEST(NoDevice, ContextCreationReportsWhyWithoutAGpu) {
    saber_context context = nullptr;
    const saber_status status = saber_context_create(0, &context);
    if (status == SABER_OK) {
        saber_context_destroy(context);
        GTEST_SKIP() << "a CUDA device is present; this test covers machines without one";
    }
    EXPECT_TRUE(status == SABER_ERROR_NO_DEVICE || status == SABER_ERROR_CUDA || status == SABER_ERROR_INVALID_ARGUMENT) << status;
    EXPECT_EQ(context, nullptr);
    EXPECT_FALSE(error().empty());
}

}  // namespace

// ---- exact step arithmetic (exact_math.h): accuracy against double-precision libm, edge values ----

namespace {

/// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
    return std::llabs(static_cast<int64_t>(saber::exact::bits(a)) - static_cast<int64_t>(saber::exact::bits(b)));
}

}  // namespace

TEST(ExactMath, ExpIsWithinItsRelativeErrorBoundOnItsWholeDomain) {
    using saber::exact::exp_nonpositive;
    EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
    EXPECT_EQ(exp_nonpositive(-0.0f), 1.0f);
    EXPECT_EQ(exp_nonpositive(-INFINITY), 0.0f);
    EXPECT_EQ(exp_nonpositive(-86.0001f), 0.0f);
    EXPECT_GT(exp_nonpositive(-86.0f), 1.17549435e-38f) << "every non-zero result is a normal float";
    // The bound docs/arithmetic.md states: 1.05e-7 (the polynomial and its roundings) plus 1.34e-8 |x| (log2 e rounded to
    // float: x log2e is off by 1.93e-8 |x|, times ln 2). Near 0 that is within 1 ulp; at -86, 1.26e-6.
    double worst = 0, worst_near_zero = 0;
    // Every 7th float from -0 down to -86 (about 1.6e8 of the 1.1e9 in the domain).
    for (uint32_t u = 0x80000000u; u <= saber::exact::bits(-86.0f); u += 7) {
        const float x = saber::exact::from_bits(u);
        const double want = std::exp(static_cast<double>(x));
        const double error = std::abs(static_cast<double>(exp_nonpositive(x)) - want) / want;
        worst = std::max(worst, error - 1.34e-8 * std::abs(static_cast<double>(x)));
        if (x >= -1.0f) worst_near_zero = std::max(worst_near_zero, error);
    }
    EXPECT_LE(worst, 1.05e-7) << "worst relative error beyond 1.34e-8 |x| against libm's double exp";
    EXPECT_LE(worst_near_zero, 1.0e-7) << "worst relative error on [-1, 0]";
}

TEST(ExactMath, LogIsWithinTwoUlpsOnPositiveNormals) {
    using saber::exact::log_positive;
    EXPECT_EQ(log_positive(1.0f), 0.0f);
    int64_t worst = 0;
    for (uint32_t u = 0x00800000u; u < 0x7F800000u; u += 13) {
        const float x = saber::exact::from_bits(u);
        const float l = log_positive(x);
        const double want = std::log(static_cast<double>(x));
        const float rounded = static_cast<float>(want);
        if (rounded == 0.0f) continue;
        worst = std::max(worst, ulps(l, rounded));
    }
    EXPECT_LE(worst, 2) << "worst ulp error against libm's double log";
    // Near 1, where ln x is tiny, the error stays relative.
    for (float x : {0.99999994f, 1.00000012f, 0.9999f, 1.0001f})
        EXPECT_LE(ulps(log_positive(x), static_cast<float>(std::log(static_cast<double>(x)))), 2) << x;
}

TEST(ExactMath, GumbelOfEveryUniformDrawIsCloseToTheDoubleTransform) {
    double worst = 0;
    float largest = -INFINITY;
    // Every uniform the layout can draw: u = ((b >> 9) + 0.5) 2^-23 for the 2^23 values of b >> 9.
    for (uint32_t high = 0; high < (1u << 23); ++high) {
        const float u = saber::to_uniform(high << 9);
        const double want = -std::log(-std::log(static_cast<double>(u)));
        const float g = saber::exact::gumbel(u);
        const double error = std::abs(static_cast<double>(g) - want) / std::max(1.0, std::abs(want));
        worst = std::max(worst, error);
        largest = std::max(largest, g);
    }
    EXPECT_LE(worst, 1e-6) << "worst error relative to max(1, |g|)";
    EXPECT_LE(largest, saber::exact::kGumbelMax) << "the bound the fast row pass skips draws by";
}

TEST(ExactMath, FixedTermsAreTheTruncatedScaledTerm) {
    using saber::exact::fixed_term;
    EXPECT_EQ(fixed_term(1.0f), uint64_t{1} << 42);
    EXPECT_EQ(fixed_term(0.0f), 0u);
    EXPECT_EQ(fixed_term(0x1p-42f), 1u);
    EXPECT_EQ(fixed_term(0x1.8p-43f), 0u) << "truncated, not rounded";
    for (uint32_t u = 0; u <= saber::exact::bits(1.0f); u += 4099) {
        const float e = saber::exact::from_bits(u);
        EXPECT_EQ(fixed_term(e), static_cast<uint64_t>(std::floor(static_cast<double>(e) * 0x1p42))) << e;
    }
    // 2^21 terms of 1 (the vocabulary limit) fit a uint64 with room to spare.
    EXPECT_LT(static_cast<double>(fixed_term(1.0f)) * (1 << 21), 0x1p64);
}

namespace {

/// Whether the fast pass's scaled terms of d (exact::scaled_terms_fast) keep their promise against the definition's
/// (scaled_terms(d, 0), d being a logit minus its chunk's maximum): the same bits where d >= -86 (and, for the entropy
/// term, where mul(e, -d) is normal or 0: a scaled value of 0 or at least 2^-84), and otherwise both below 2^-75.
bool fast_terms_keep_their_promise(float d, std::string *why) {
    using namespace saber::exact;
    const ScaledTerms fast = scaled_terms_fast(d), definition = scaled_terms(d, 0.0f);
    const bool exact_region = d >= kExpCutoff;
    const auto check = [&](float f, float r, bool same, const char *what) {
        const bool ok = same ? bits(f) == bits(r) : (f >= 0.0f && f < 0x1p-75f && r >= 0.0f && r < 0x1p-75f);
        if (!ok && why && why->empty()) *why = std::string(what) + " at d = " + std::to_string(d) + ": fast " + std::to_string(f) + ", definition " + std::to_string(r);
        return ok;
    };
    const bool sum = check(fast.sum, definition.sum, exact_region, "sum term");
    const bool entropy = check(fast.entropy, definition.entropy, exact_region && (definition.entropy == 0.0f || definition.entropy >= 0x1p-84f), "entropy term");
    return sum && entropy;
}

/// Counts the floats with bits [first, last] (stepping by `stride`; bits of negative floats grow with their magnitude)
/// at which fast_terms_keep_their_promise fails, and reports the first.
uint64_t fast_term_failures(uint32_t first, uint32_t last, uint32_t stride) {
    uint64_t failures = 0;
    for (uint64_t u = first; u <= last; u += stride) {
        std::string why;
        if (!fast_terms_keep_their_promise(saber::exact::from_bits(static_cast<uint32_t>(u)), &why) && failures++ == 0) ADD_FAILURE() << why;
    }
    return failures;
}

}  // namespace

TEST(ExactMath, FastScaledTermsAreTheDefinitionsWhereTheyCanMatter) {
    using namespace saber::exact;
    // Every float of [-90, -2^-24] (2.6e8 floats: every magnitude where k, f and the cut-offs vary), and every 61st float
    // of (-2^-24, -0] (where k = 0 and f is d log2e); SABER_EXHAUSTIVE=1 checks every float of [-90, -0] (1.1e9).
    const bool exhaustive = std::getenv("SABER_EXHAUSTIVE") != nullptr && std::string(std::getenv("SABER_EXHAUSTIVE")) == "1";
    const uint32_t small = bits(-0x1p-24f);
    EXPECT_EQ(fast_term_failures(small, bits(-90.0f), 1), 0u);
    EXPECT_EQ(fast_term_failures(bits(-0.0f), small, exhaustive ? 1 : 61), 0u);
    // The edges: zeros, -inf, subnormals, the cut-offs at -86 and -87 and where the terms' integers become 0, -FLT_MAX.
    const float edges[] = {0.0f, -0.0f, -INFINITY, -1e-45f, -1e-39f, -86.0f, -87.0f, -29.0f, -29.2f, -33.5f, -34.0f, -0.5f, -1.0f, -3.4e38f};
    for (const float edge : edges)
        for (int step = -3; step <= 3; ++step) {
            const uint32_t u = bits(edge);
            const float d = from_bits(edge == 0.0f && step < 0 ? u : u + static_cast<uint32_t>(step));
            if (!(d <= 0.0f)) continue;
            std::string why;
            EXPECT_TRUE(fast_terms_keep_their_promise(d, &why)) << why;
        }
    EXPECT_EQ(scaled_terms_fast(0.0f).sum, kFixedScale);
    EXPECT_EQ(scaled_terms_fast(0.0f).entropy, 0.0f);
    EXPECT_EQ(scaled_terms(-INFINITY, 0.0f).sum, 0.0f) << "a -inf logit has no term";
    EXPECT_LT(scaled_terms_fast(-INFINITY).sum, 0x1p-75f);
    EXPECT_LT(scaled_terms_fast(-INFINITY).entropy, 0x1p-75f);
}

TEST(ExactMath, ClassSumsOfTheFastTermsAreTheDefinitionsIntegers) {
    // chunk_partial_of's argument: terms that differ only below 2^-75 never change a class's integer. 4 million random
    // classes of d values drawn where it matters: tiny terms (below -86, -inf, subnormal products), terms whose integer
    // part is small (d near -29 to -34), the pairs' partners around 2^-50 and 2^-25 (d near -64.4 and -46.6), and large.
    using namespace saber::exact;
    std::mt19937 rng(41);
    const float pool[] = {-INFINITY, -1e-39f, -86.5f, -87.0f, -100.0f, -3.4e38f, -29.1f, -29.3f, -30.0f, -33.6f, -34.0f,
                          -64.4f, -64.5f, -46.6f, -46.5f, -28.0f, -10.0f, -1.0f, 0.0f, -0.0f};
    std::uniform_int_distribution<int> pick(0, static_cast<int>(sizeof pool / sizeof pool[0]) - 1);
    std::uniform_real_distribution<float> jitter(-0.25f, 0.25f);
    uint64_t mismatches = 0;
    for (int i = 0; i < 4000000; ++i) {
        float d[4];
        ScaledTerms fast[4], definition[4];
        for (int s = 0; s < 4; ++s) {
            d[s] = pool[pick(rng)];
            if (std::isfinite(d[s]) && d[s] < 0.0f && d[s] > -1e30f && (rng() & 1)) d[s] = std::min(0.0f, d[s] + jitter(rng));
            fast[s] = scaled_terms_fast(d[s]);
            definition[s] = scaled_terms(d[s], 0.0f);
        }
        const uint64_t fs = class_sum_truncated(fast[0].sum, fast[1].sum, fast[2].sum, fast[3].sum);
        const uint64_t rs = class_sum_truncated(definition[0].sum, definition[1].sum, definition[2].sum, definition[3].sum);
        const uint64_t fe = class_sum_truncated(fast[0].entropy, fast[1].entropy, fast[2].entropy, fast[3].entropy);
        const uint64_t re = class_sum_truncated(definition[0].entropy, definition[1].entropy, definition[2].entropy, definition[3].entropy);
        if ((fs != rs || fe != re) && mismatches++ == 0)
            ADD_FAILURE() << "class of d = " << d[0] << ", " << d[1] << ", " << d[2] << ", " << d[3] << ": fast " << fs << " " << fe << ", definition " << rs << " " << re;
    }
    EXPECT_EQ(mismatches, 0u);
}

TEST(ExactMath, EvalChecksItsArguments) {
    float in[2] = {-1.0f, 0.5f}, out[2] = {7.0f, 7.0f};
    EXPECT_EQ(saber_exact_eval(SABER_EXACT_EXP, in, out, 2), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("saber_exact_eval: input 1 (0.5) is outside function 0's domain"), std::string::npos) << error();
    EXPECT_EQ(out[0], 7.0f) << "nothing is written on failure";
    EXPECT_EQ(saber_exact_eval(9, in, out, 1), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(saber_exact_eval(SABER_EXACT_EXP, in, out, 1), SABER_OK) << error();
    EXPECT_EQ(out[0], saber::exact::exp_nonpositive(-1.0f));
    uint64_t terms[2];
    EXPECT_EQ(saber_exact_fixed_terms(in, terms, 2), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(saber_exact_fixed_terms(in + 1, terms, 1), SABER_OK) << error();
    EXPECT_EQ(terms[0], uint64_t{1} << 41);
}

// ---- exact step arithmetic: one row (row_reference and the chunk merge) ----

namespace {

std::vector<float> random_row(std::mt19937 &rng, int vocabulary, float scale) {
    std::normal_distribution<float> logit(0.0f, scale);
    std::vector<float> row(static_cast<size_t>(vocabulary));
    for (float &l : row) l = logit(rng);
    return row;
}

}  // namespace

TEST(ExactRow, ProbabilitiesAreWithinAMillionthOfTheExactSoftmax) {
    std::mt19937 rng(5);
    double worst_c = 0, worst_excess = 0, worst_entropy = 0;
    for (int vocabulary : {2, 37, 1000, 5000, 151936})
        for (float scale : {0.5f, 3.0f, 20.0f}) {
            std::vector<float> row = random_row(rng, vocabulary, scale);
            if (vocabulary > 2) row[static_cast<size_t>(vocabulary) - 1] = -INFINITY;  // a banned id
            const float max = *std::max_element(row.begin(), row.end());
            double sum = 0, weighted = 0;
            for (float l : row) {
                if (l == -INFINITY) continue;
                const double e = std::exp(static_cast<double>(l) - max);
                sum += e;
                weighted += e * (static_cast<double>(l) - max);
            }
            for (int metric : {SABER_METRIC_MAXPROB, SABER_METRIC_NEGENTROPY}) {
                const saber::exact::RowResult r = saber::exact::row_reference(row.data(), vocabulary, 0, 1, metric, 0.0f, 0, 1, 0, 0);
                ASSERT_GE(r.prediction, 1);
                const double c = std::exp(static_cast<double>(row[r.prediction]) - max) / sum;
                const double q = std::exp(static_cast<double>(row[1]) - max) / sum;
                // The float subtraction l - M is off by up to |l - M| 2^-24, which exp turns into that relative error: the bound
                // is 4e-7 + |l - M| 2^-24 (docs/arithmetic.md). Below e^-86 of the maximum's term s is 0 by definition.
                for (auto [got, want, gap] : {std::tuple<double, double, double>{r.confidence, c, max - row[r.prediction]},
                                              {r.token_confidence, q, max - row[1]}}) {
                    if (want <= 1e-30) {
                        EXPECT_LE(got, 1e-30);
                        continue;
                    }
                    const double relative = std::abs(got - want) / want;
                    worst_excess = std::max(worst_excess, relative - gap * 0x1p-24);
                    if (want >= 1e-3) worst_c = std::max(worst_c, relative);
                }
                if (metric == SABER_METRIC_NEGENTROPY) worst_entropy = std::max(worst_entropy, std::abs(r.metric - (weighted / sum - std::log(sum))));
            }
        }
    EXPECT_LE(worst_c, 1e-6) << "relative error of c and q where they are at least 1e-3";
    EXPECT_LE(worst_excess, 4e-7) << "relative error of c and q beyond |l - M| 2^-24";
    EXPECT_LE(worst_entropy, 1e-5) << "absolute error of the negentropy";
    // The measured figures docs/arithmetic.md quotes (shown with --gtest_output or in the XML report).
    char measured[160];
    snprintf(measured, sizeof measured, "c, q: %.2g beyond the gap term, %.2g where >= 1e-3; negentropy %.2g", worst_excess, worst_c, worst_entropy);
    RecordProperty("measured", measured);
}

TEST(ExactRow, ChunkPartialsComputedInAnyOrderMergeToTheReferencesBits) {
    std::mt19937 rng(9);
    for (int vocabulary : {1, 1024, 1025, 4099, 151936}) {
        std::vector<float> row = random_row(rng, vocabulary, 4.0f);
        const int chunks = (vocabulary + saber::exact::kChunk - 1) / saber::exact::kChunk;
        std::vector<saber::exact::ChunkPartial> parts(static_cast<size_t>(chunks));
        // As a parallel pass would: chunks computed in a shuffled order, each into its own slot, then merged in chunk order.
        std::vector<int> order(static_cast<size_t>(chunks));
        for (int j = 0; j < chunks; ++j) order[static_cast<size_t>(j)] = j;
        std::shuffle(order.begin(), order.end(), rng);
        for (int j : order)
            parts[static_cast<size_t>(j)] = saber::exact::chunk_partial(row.data(), j * saber::exact::kChunk,
                                                                       std::min(vocabulary, (j + 1) * saber::exact::kChunk), true);
        const saber::exact::RowNormaliser merged = saber::exact::merge_chunks(parts.data(), chunks);
        const int mask = vocabulary - 1;
        const saber::exact::RowResult r = saber::exact::row_reference(row.data(), vocabulary, mask, -1, SABER_METRIC_NEGENTROPY, 0.0f, 0, 1, 0, 0);
        if (vocabulary == 1) {
            EXPECT_EQ(r.prediction, -1);
            EXPECT_EQ(r.bad_index, 1) << "nothing finite besides the mask";
            continue;
        }
        EXPECT_EQ(saber::exact::bits(r.confidence), saber::exact::bits(saber::exact::probability(row[static_cast<size_t>(r.prediction)], merged)));
        // A chunk's fixed-point sum is the same in any order of its classes (integer addition): the last chunk's classes
        // added last to first, each from its four ids' terms.
        uint64_t reversed = 0;
        const int begin = (chunks - 1) * saber::exact::kChunk;
        const float max = parts.back().max;
        for (int v = std::min(vocabulary, begin + saber::exact::kClassStride) - 1; v >= begin; --v) {
            float t[4];
            for (int s = 0; s < 4; ++s) {
                const int id = v + s * saber::exact::kClassStride;
                t[s] = id < vocabulary ? saber::exact::scaled_terms(row[static_cast<size_t>(id)], max).sum : 0.0f;
            }
            reversed += saber::exact::class_sum_truncated(t[0], t[1], t[2], t[3]);
        }
        EXPECT_EQ(reversed, parts.back().sum);
    }
}

TEST(ExactRow, RowArgumentsAreChecked) {
    const float row[3] = {0.0f, 1.0f, 2.0f};
    int32_t prediction = 0, bad = 0;
    float values[3];
    EXPECT_EQ(saber_exact_row(row, 3, 3, -1, 0, 0.0f, 0, 1, 0, 0, &prediction, &bad, values), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("saber_exact_row: mask id must lie in [0, V=3); got 3"), std::string::npos) << error();
    EXPECT_EQ(saber_exact_row(row, 3, 2, -1, 0, 0.0f, 0, 1, 0, 0, &prediction, &bad, values), SABER_OK) << error();
    EXPECT_EQ(prediction, 1) << "the mask id is never predicted";
    EXPECT_EQ(bad, -1);
    EXPECT_TRUE(std::isnan(values[1])) << "no token asked: q is NaN";
}

// ---- the fast row pass's lane and warp steps (kernels/row_scan.h), emulated on the host ----

namespace {

namespace exact = saber::exact;
namespace scan = saber::scan;

/// A row in memory as the kernel reads it: float logits (4 bytes) or bfloat16 (2 bytes: the high half of each float, so
/// the row's values must be bfloat16 values), starting `rotation` logits past a 16-byte boundary of a simulated address
/// space, with NaN bytes (0xFF) before and after it. Every load the kernel makes is checked: a 16-byte vector must be
/// aligned and lie inside the row, a scalar inside the row.
class MemoryRow {
public:
    MemoryRow(const std::vector<float> &row, int logit_bytes, int rotation)
        : size_(logit_bytes), vocabulary_(static_cast<int>(row.size())), start_(64 + rotation * logit_bytes),
          bytes_(static_cast<size_t>(start_) + row.size() * static_cast<size_t>(logit_bytes) + 64, 0xFF) {
        for (size_t v = 0; v < row.size(); ++v) {
            const uint32_t bits = exact::bits(row[v]);
            if (size_ == 4) {
                std::memcpy(&bytes_[static_cast<size_t>(start_) + 4 * v], &bits, 4);
            } else {
                EXPECT_EQ(bits & 0xFFFFu, 0u) << "id " << v << ": not a bfloat16 value";
                const uint16_t high = static_cast<uint16_t>(bits >> 16);
                std::memcpy(&bytes_[static_cast<size_t>(start_) + 2 * v], &high, 2);
            }
        }
    }

    int width() const { return 16 / size_; }
    int rotation() const { return scan::row_rotation(static_cast<unsigned long long>(start_), size_); }

    /// The 16-byte vector at row offset `offset` (in ids), as four words in memory order.
    std::array<uint32_t, 4> vector(int offset) {
        const long long address = start_ + static_cast<long long>(offset) * size_;
        EXPECT_EQ(address % 16, 0) << "a vector load at row offset " << offset << " is not 16-byte aligned";
        EXPECT_GE(offset, 0) << "a vector load before the row";
        EXPECT_LE(static_cast<long long>(offset) + width(), vocabulary_) << "a vector load past the row";
        ++vector_loads;
        std::array<uint32_t, 4> words{};
        std::memcpy(words.data(), &bytes_[static_cast<size_t>(address)], 16);
        return words;
    }

    /// The bits of logit v as its vector holds them (16 bits for bfloat16).
    uint32_t scalar(int v) {
        EXPECT_TRUE(v >= 0 && v < vocabulary_) << "a scalar load of id " << v << " outside the row";
        ++scalar_loads;
        uint32_t bits = 0;
        std::memcpy(&bits, &bytes_[static_cast<size_t>(start_) + static_cast<size_t>(v) * static_cast<size_t>(size_)], static_cast<size_t>(size_));
        return bits;
    }

    /// A logit's float from the bits its vector holds.
    float widen(uint32_t bits) const { return size_ == 4 ? exact::from_bits(bits) : exact::from_bits(bits << 16); }
    uint32_t neg_inf_bits() const { return size_ == 4 ? 0xFF800000u : 0xFF80u; }
    int logit_bytes() const { return size_; }

    long long vector_loads = 0, scalar_loads = 0;

private:
    int size_, vocabulary_, start_;
    std::vector<uint8_t> bytes_;
};

/// What the emulation saw besides the results.
struct EmulationStats {
    long long chunks = 0, ranked = 0;   // good chunks read, and those whose warp ranked them (the slow path)
};

/// Lane l's logits of chunk c as the kernel loads them (row_confidence.cu's scan_chunk): the vectors (lane 0's first one
/// blended with the tail slot when the row is rotated), or id by id with -inf past the row; widened in element order.
void load_lane(MemoryRow &memory, const scan::ChunkLayout &c, int lane, float (&x)[scan::kPerLane]) {
    const int width = memory.width();
    if (c.vectors) {
        const int per_word = 4 / memory.logit_bytes();
        for (int k = 0; k < scan::kPerLane / width; ++k) {
            std::array<uint32_t, 4> words = memory.vector(scan::vector_offset(c, width, lane, k));
            if (k == 0 && c.rotation != 0) {
                const std::array<uint32_t, 4> tail = lane == 0 ? memory.vector(scan::tail_offset(c)) : std::array<uint32_t, 4>{};
                const int tail_bytes = lane == 0 ? c.rotation * memory.logit_bytes() : 0;
                for (int w = 0; w < 4; ++w) words[static_cast<size_t>(w)] = scan::rotated_word(words[static_cast<size_t>(w)], tail[static_cast<size_t>(w)], tail_bytes, w);
            }
            for (int j = 0; j < width; ++j) {
                const uint32_t word = words[static_cast<size_t>(j / per_word)];
                const uint32_t bits = per_word == 1 ? word : (j % 2 == 0 ? word & 0xFFFFu : word >> 16);
                x[k * width + j] = memory.widen(bits);
            }
        }
    } else {
        for (int e = 0; e < scan::kPerLane; ++e) {
            const int v = scan::lane_id(c, width, lane, e);
            x[e] = memory.widen(v < c.end ? memory.scalar(v) : memory.neg_inf_bits());
        }
    }
}

/// row_confidence.cu's fast pass for one row, emulated: the row cut into `splits` runs of whole chunks, each read by a
/// block of 8 warps (chunks w, w + 8, ... of the run for warp w) of 32 lanes running row_scan.h's steps, with the kernel's
/// loads from `memory` (row_rotation, chunk_layout), its warp reductions as loops over the lanes, the warps' chunks
/// interleaved in a random order with the block's floor read stale at random (any value it held is a valid floor), every
/// warp's and split's summary merged in a shuffled order, the chunk terms computed in a shuffled order and added in chunk
/// order. `row` holds the values `memory` holds. Returns what the kernel writes.
exact::RowResult emulate_fast_pass(const std::vector<float> &row, MemoryRow &memory, int splits, int mask, int token, int metric, float temperature,
                                   uint64_t seed, int step, int sequence, int position, std::mt19937 &rng, EmulationStats *stats = nullptr) {
    constexpr int kWarps = 8;
    const int vocabulary = static_cast<int>(row.size());
    const int width = memory.width(), rotation = memory.rotation();
    const int chunks = (vocabulary + exact::kChunk - 1) / exact::kChunk;
    const int per_split = (chunks + std::min(splits, chunks) - 1) / std::min(splits, chunks);
    const bool entropy = metric == SABER_METRIC_NEGENTROPY;
    const bool runner_up = metric == SABER_METRIC_MARGIN;   // the kernel's kRunnerUp
    const scan::ScanArgs a{vocabulary, mask, temperature, exact::mul(temperature, exact::kGumbelMax), seed, step, sequence, position};
    const scan::VectorChunks vector_chunks = scan::vector_chunks(vocabulary, width, rotation);
    std::vector<exact::ChunkPartial> parts(static_cast<size_t>(chunks));
    std::vector<scan::RowSummary> split_summaries;
    for (int first = 0; first < chunks; first += per_split) {
        const int last = std::min(chunks, first + per_split);
        int32_t block_floor = scan::no_floor_key();
        struct Warp {
            int next;                                 // its next chunk
            int32_t seen_floor;                       // the block floor it last read
            scan::RowSummary summary;                 // top and max: the warp's; bad, nan_score: merged over its lanes below
            std::vector<int> bad, nan;                // per lane
        };
        std::vector<Warp> warps;
        for (int w = 0; w < kWarps; ++w)
            warps.push_back(Warp{first + w, block_floor, scan::empty_summary(), std::vector<int>(scan::kLanes, scan::kNoBad), std::vector<int>(scan::kLanes, 0)});
        while (true) {
            std::vector<int> busy;
            for (int w = 0; w < kWarps; ++w)
                if (warps[static_cast<size_t>(w)].next < last) busy.push_back(w);
            if (busy.empty()) break;
            Warp &warp = warps[static_cast<size_t>(busy[rng() % busy.size()])];
            const int chunk = warp.next;
            warp.next += kWarps;
            const scan::ChunkLayout c = scan::chunk_layout(chunk, vocabulary, width, rotation);
            EXPECT_EQ(c.vectors, vector_chunks.holds(chunk)) << "chunk " << chunk;
            float x[scan::kLanes][scan::kPerLane];
            bool good = true;
            for (int l = 0; l < scan::kLanes; ++l) {
                load_lane(memory, c, l, x[l]);
                for (int e = 0; e < scan::kPerLane; ++e) {
                    // The layout: lane l's element e holds id lane_id's logit, -inf past the row.
                    const int v = scan::lane_id(c, width, l, e);
                    EXPECT_EQ(exact::bits(x[l][e]), exact::bits(v < c.end ? row[static_cast<size_t>(v)] : -INFINITY)) << "chunk " << chunk << " lane " << l << " element " << e;
                }
                // The kernel's test of a lane: its maximum, NaN or +inf when a logit is bad.
                const bool lane_good = scan::good_max(scan::lane_max_or_bad(x[l]));
                EXPECT_EQ(lane_good, scan::all_good(x[l]));
                good &= lane_good;
            }
            if (!good) {
                for (int l = 0; l < scan::kLanes; ++l)
                    if (!scan::good_max(scan::lane_max_or_bad(x[l])))
                        warp.bad[static_cast<size_t>(l)] = std::min(warp.bad[static_cast<size_t>(l)], scan::lowest_bad_id(x[l], c, width, l));
                continue;
            }
            // The kernel's warp maximum: an integer maximum of scan::order_key, then canonical.
            int32_t max_key = INT32_MIN;
            for (int l = 0; l < scan::kLanes; ++l) {
                const float lane_max = scan::lane_max_or_bad(x[l]);
                EXPECT_EQ(exact::bits(lane_max), exact::bits(scan::lane_max(x[l])));
                max_key = std::max(max_key, scan::order_key(lane_max));
            }
            const float m = scan::canonical_max(scan::float_of_order_key(max_key));
            if (m > warp.summary.max) warp.summary.max = m;
            if (stats) ++stats->chunks;
            // The prediction: the warp-uniform test, then (rarely) the lanes' best two and the two reduction rounds.
            if (rng() % 2) warp.seen_floor = block_floor;   // a fresh read, or the stale value of an earlier one
            const bool rank = temperature > 0.0f ? scan::chunk_may_rank_sampled(m, warp.summary.top, warp.seen_floor, a.score_bound, runner_up)
                                                 : scan::chunk_may_rank_greedy(max_key, warp.summary.top, warp.seen_floor, runner_up);
            if (rank) {
                if (stats) ++stats->ranked;
                if (temperature == 0.0f && !runner_up && !scan::chunk_holds(c, mask)) {
                    // The best alone: the chunk's maximum at the lowest id holding it (a warp minimum), no ranking.
                    int id = INT_MAX;
                    for (int l = 0; l < scan::kLanes; ++l) id = std::min(id, scan::lane_best_greedy(x[l], c, width, l, m));
                    EXPECT_NE(id, INT_MAX) << "chunk " << chunk << ": some lane holds its maximum";
                    exact::offer(warp.summary.top, m, id);
                } else {
                    const float floor = scan::float_of_order_key(scan::candidate_floor_key(warp.summary.top, warp.seen_floor, runner_up));
                    scan::LaneTop tops[scan::kLanes];
                    for (int l = 0; l < scan::kLanes; ++l)
                        tops[l] = temperature > 0.0f ? scan::lane_top_sampled(x[l], c, width, l, a, floor, warp.nan[static_cast<size_t>(l)])
                                                     : scan::lane_top_greedy(x[l], c, width, l, mask, floor);
                    int32_t key1 = INT32_MIN;
                    for (const scan::LaneTop &t : tops) key1 = std::max(key1, scan::candidate_key(t.score1, t.id1));
                    if (key1 != scan::kNoKey) {
                        int id1 = INT_MAX;
                        for (const scan::LaneTop &t : tops) id1 = std::min(id1, scan::candidate_id(t.score1, t.id1, key1));
                        float score2[scan::kLanes];
                        int ids2[scan::kLanes];
                        int32_t key2 = INT32_MIN;
                        for (int l = 0; l < scan::kLanes; ++l) {
                            scan::second_round(tops[l], id1, score2[l], ids2[l]);
                            key2 = std::max(key2, scan::candidate_key(score2[l], ids2[l]));
                        }
                        int id2 = -1;
                        if (key2 != scan::kNoKey) {
                            id2 = INT_MAX;
                            for (int l = 0; l < scan::kLanes; ++l) id2 = std::min(id2, scan::candidate_id(score2[l], ids2[l], key2));
                        }
                        scan::merge_chunk_best(warp.summary.top, key1, id1, key2, id2);
                    }
                }
                const int32_t published = scan::published_floor_key(warp.summary.top, runner_up);
                if (published != scan::no_floor_key()) block_floor = std::max(block_floor, published);
            }
            exact::ChunkPartial p{m, 0, 0};
            for (int l = 0; l < scan::kLanes; ++l) {
                const exact::ChunkPartial q = width == 4 ? (entropy ? scan::lane_terms<true, 4>(x[l], m) : scan::lane_terms<false, 4>(x[l], m))
                                                         : (entropy ? scan::lane_terms<true, 8>(x[l], m) : scan::lane_terms<false, 8>(x[l], m));
                p.sum += q.sum;
                p.entropy += q.entropy;
            }
            parts[static_cast<size_t>(chunk)] = p;
        }
        // reduce_block: each warp's lanes reduced (bad, nan_score), the warps merged in any order.
        std::shuffle(warps.begin(), warps.end(), rng);
        scan::RowSummary block = scan::empty_summary();
        for (Warp &warp : warps) {
            for (int l = 0; l < scan::kLanes; ++l) {
                warp.summary.bad = std::min(warp.summary.bad, warp.bad[static_cast<size_t>(l)]);
                warp.summary.nan_score |= warp.nan[static_cast<size_t>(l)];
            }
            scan::merge(block, warp.summary);
        }
        split_summaries.push_back(block);
    }
    std::shuffle(split_summaries.begin(), split_summaries.end(), rng);
    scan::RowSummary r = scan::empty_summary();
    for (const scan::RowSummary &s : split_summaries) scan::merge(r, s);
    if (r.bad != scan::kNoBad) return exact::RowResult{-1, r.bad, 0.0f, 0.0f, 0.0f};
    const exact::FloatRow load{row.data()};
    if (r.nan_score) r.top = exact::top_two(load, vocabulary, mask, temperature, seed, step, sequence, position);
    if (r.top.best < 0) return exact::RowResult{-1, vocabulary, 0.0f, 0.0f, 0.0f};
    exact::RowNormaliser n{r.max, 0.0, 0.0};
    std::vector<int> order(static_cast<size_t>(chunks));
    for (int c = 0; c < chunks; ++c) order[static_cast<size_t>(c)] = c;
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<exact::ChunkTerms> terms(static_cast<size_t>(chunks));
    for (int c : order)
        if (parts[static_cast<size_t>(c)].max != -INFINITY) terms[static_cast<size_t>(c)] = exact::chunk_terms(parts[static_cast<size_t>(c)], n.max);
    for (int c = 0; c < chunks; ++c)
        if (parts[static_cast<size_t>(c)].max != -INFINITY) {
            n.sum = exact::dadd(n.sum, terms[static_cast<size_t>(c)].sum);
            n.entropy = exact::dadd(n.entropy, terms[static_cast<size_t>(c)].entropy);
        }
    return exact::finish_row(load, n, r.top, vocabulary, token, metric, seed, step, sequence, position);
}

/// The row as bfloat16 values (truncated: NaN, +-inf and the zeros stay what they are).
std::vector<float> to_bfloat16(std::vector<float> row) {
    for (float &l : row) l = exact::from_bits(exact::bits(l) & 0xFFFF0000u);
    return row;
}

/// Expects the emulated fast pass of `row` to be exact::row_reference's bits, for float (width 4) or bfloat16 (width 8)
/// memory at `rotation`, with `splits` splits.
void ExpectFastPassIsTheDefinition(const std::vector<float> &row, int logit_bytes, int rotation, int splits, int mask, int token, int metric,
                                   float temperature, uint64_t seed, std::mt19937 &rng, const std::string &where, EmulationStats *stats = nullptr) {
    const int vocabulary = static_cast<int>(row.size());
    const exact::RowResult want = exact::row_reference(row.data(), vocabulary, mask, token, metric, temperature, seed, 3, 1, 9);
    MemoryRow memory(row, logit_bytes, rotation);
    ASSERT_EQ(memory.rotation(), rotation);
    const exact::RowResult got = emulate_fast_pass(row, memory, splits, mask, token, metric, temperature, seed, 3, 1, 9, rng, stats);
    const std::string at = where + " (" + (logit_bytes == 4 ? "float" : "bfloat16") + ", rotation " + std::to_string(rotation) + ", " +
                           std::to_string(splits) + " splits)";
    ASSERT_EQ(got.prediction, want.prediction) << at;
    ASSERT_EQ(got.bad_index, want.bad_index) << at;
    if (want.prediction < 0) return;
    ASSERT_EQ(exact::bits(got.confidence), exact::bits(want.confidence)) << at;
    ASSERT_EQ(exact::bits(got.token_confidence), exact::bits(want.token_confidence)) << at;
    ASSERT_EQ(exact::bits(got.metric), exact::bits(want.metric)) << at;
}

}  // namespace

TEST(FastRowPass, OrderKeysOrderFloatsAndInvertExactly) {
    namespace scan = saber::scan;
    namespace exact = saber::exact;
    std::vector<float> values = {-INFINITY, -3.4028235e38f, -1.0f, -1e-45f, -0.0f, 0.0f, 1e-45f, 1.17549435e-38f, 1.0f, 3.4028235e38f, INFINITY};
    std::mt19937 rng(29);
    for (int i = 0; i < 100000; ++i) {
        const float x = exact::from_bits(static_cast<uint32_t>(rng()));
        if (x == x) values.push_back(x);
    }
    std::sort(values.begin(), values.end(), [](float a, float b) { return a < b || (a == b && std::signbit(a) && !std::signbit(b)); });
    for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_EQ(exact::bits(scan::float_of_order_key(scan::order_key(values[i]))), exact::bits(values[i])) << values[i];
        if (i == 0) continue;
        if (exact::bits(values[i - 1]) == exact::bits(values[i])) {
            ASSERT_EQ(scan::order_key(values[i - 1]), scan::order_key(values[i])) << values[i];
        } else {
            ASSERT_LT(scan::order_key(values[i - 1]), scan::order_key(values[i])) << values[i - 1] << " vs " << values[i];
        }
    }
    // The lane maximum with NaN propagation: NaN or +inf exactly when a logit is bad.
    float x[scan::kPerLane];
    for (int bad = 0; bad < 3; ++bad)
        for (int at = 0; at < scan::kPerLane; at += 7) {
            for (int e = 0; e < scan::kPerLane; ++e) x[e] = e % 3 ? -INFINITY : static_cast<float>(e) - 40.0f;
            if (bad == 1) x[at] = NAN;
            if (bad == 2) x[at] = INFINITY;
            EXPECT_EQ(scan::good_max(scan::lane_max_or_bad(x)), bad == 0);
            EXPECT_EQ(scan::all_good(x), bad == 0);
        }
}

TEST(FastRowPass, LaneStepsEmulatedOnTheHostComputeTheDefinitionsBits) {
    std::mt19937 rng(17);
    std::normal_distribution<float> logit(0.0f, 4.0f);
    int rows = 0, sampled_rows = 0;
    for (int vocabulary : {2, 3, 37, 1001, 1024, 4099, 5120, 20000})
        for (int pattern = 0; pattern < 9; ++pattern)
            for (float temperature : {0.0f, 0.7f, 5.0f, 3e38f}) {
                std::vector<float> row(static_cast<size_t>(vocabulary));
                for (float &l : row) l = logit(rng);
                const int mask = static_cast<int>(rng() % static_cast<unsigned>(vocabulary));
                const int other = (mask + 1) % vocabulary;
                switch (pattern) {
                    case 1: row[static_cast<size_t>(mask)] = 50.0f; break;   // the mask id holds the maximum
                    case 2:                                                    // banned ids
                        for (int v = 0; v < vocabulary; v += 3) row[static_cast<size_t>(v)] = -INFINITY;
                        row[static_cast<size_t>(other)] = 1.0f;
                        break;
                    case 3:   // exact ties everywhere: logits on a coarse grid
                        for (float &l : row) l = std::round(l * 0.5f) * 2.0f;
                        break;
                    case 4:   // a zero maximum, +0 and -0
                        for (int v = 0; v < vocabulary; ++v) row[static_cast<size_t>(v)] = v % 7 == 6 ? -3.0f : v % 2 ? -0.0f : 0.0f;
                        break;
                    case 5:   // bad logits: +inf, and a NaN later
                        row[static_cast<size_t>(vocabulary / 2)] = INFINITY;
                        row[static_cast<size_t>(vocabulary - 1)] = NAN;
                        break;
                    case 6:   // nothing finite but the mask id
                        for (float &l : row) l = -INFINITY;
                        row[static_cast<size_t>(mask)] = 1.0f;
                        break;
                    case 7:   // large magnitudes and subnormals
                        for (size_t v = 0; v < row.size(); v += 5) row[v] = v % 2 ? 1e-40f : -5e29f;
                        break;
                    case 8:   // flat logits: the Gumbel noise decides
                        for (float &l : row) l *= 0.01f;
                        break;
                    default: break;
                }
                const int metric = static_cast<int>(rng() % 4);
                const int token = rng() % 3 == 0 ? -1 : static_cast<int>(rng() % static_cast<unsigned>(vocabulary));
                const uint64_t seed = rng();
                ++rows;
                sampled_rows += temperature > 0.0f && saber::exact::row_reference(row.data(), vocabulary, mask, token, metric, temperature, seed, 3, 1, 9).prediction >= 0;
                const std::string where = "V " + std::to_string(vocabulary) + ", pattern " + std::to_string(pattern) + ", T " + std::to_string(temperature) +
                                          ", metric " + std::to_string(metric);
                const std::vector<float> bf16 = to_bfloat16(row);
                for (int splits : {1, 2, 3, 64}) {
                    // float and bfloat16 memory, each at a random rotation (FastRowPass.EveryRotation... covers them all)
                    ExpectFastPassIsTheDefinition(row, 4, static_cast<int>(rng() % 4), splits, mask, token, metric, temperature, seed, rng, where);
                    if (HasFatalFailure()) return;
                    ExpectFastPassIsTheDefinition(bf16, 2, static_cast<int>(rng() % 8), splits, mask, token, metric, temperature, seed, rng, where);
                    if (HasFatalFailure()) return;
                }
            }
    EXPECT_EQ(rows, 8 * 9 * 4);
    EXPECT_GT(sampled_rows, 50);
}

/// Rows of every rotation and of lengths that are not a multiple of the vector width (so the next row's start is rotated):
/// the vector chunks, lane 0's blended first vector and the id-by-id edge chunks give the definition's bits, and every
/// load stays inside the row (MemoryRow checks it). Each kind of row the issue names: random N(0, 2^2), peaked, falling
/// with the id, ties, the mask id holding the maximum, NaN and +inf at the rotated places.
TEST(FastRowPass, EveryRotationAndLengthReadsTheRowAndComputesTheDefinitionsBits) {
    std::mt19937 rng(41);
    std::normal_distribution<float> logit(0.0f, 2.0f);
    long long vector_loads = 0, scalar_loads = 0;
    for (int logit_bytes : {4, 2})
        for (int rotation = 0; rotation < 16 / logit_bytes; ++rotation)
            for (int vocabulary : {1023, 2047, 3073, 9001, 10243})
                for (int pattern = 0; pattern < 7; ++pattern) {
                    std::vector<float> row(static_cast<size_t>(vocabulary));
                    for (float &l : row) l = logit(rng);
                    const int mask = static_cast<int>(rng() % static_cast<unsigned>(vocabulary));
                    const int width = 16 / logit_bytes;
                    // the ids at the rotated places of chunk 1: its last (lane 0's first elements) and its first
                    const int last_of_1 = std::min(vocabulary, 2048) - 1, first_of_1 = 1024 + (width - rotation) % width;
                    const auto set = [&](int v, float value) {
                        if (v < vocabulary) row[static_cast<size_t>(v)] = value;
                    };
                    switch (pattern) {
                        case 1: set(last_of_1, 30.0f); break;                                              // peaked at a wrapped id
                        case 2: for (int v = 0; v < vocabulary; ++v) row[static_cast<size_t>(v)] = -0.001f * static_cast<float>(v); break;   // falling
                        case 3: for (float &l : row) l = std::round(l); break;                             // ties
                        case 4: set(mask, 40.0f); set(first_of_1, 20.0f); break;                           // the mask id holds the maximum
                        case 5: set(last_of_1, NAN); set(first_of_1, INFINITY); set(1, INFINITY); break;   // bad logits
                        case 6:   // a zero maximum held first by -0: equal scores, the lower id wins whatever the sign
                            for (int v = 0; v < vocabulary; ++v) row[static_cast<size_t>(v)] = v % 5 == 4 ? -1.0f : v % 2 ? 0.0f : -0.0f;
                            break;
                        default: break;
                    }
                    const std::vector<float> values = logit_bytes == 2 ? to_bfloat16(row) : row;
                    const int metric = static_cast<int>(rng() % 4);
                    const float temperature = pattern == 3 ? 0.7f : 0.0f;
                    const std::string where = "V " + std::to_string(vocabulary) + ", pattern " + std::to_string(pattern);
                    ExpectFastPassIsTheDefinition(values, logit_bytes, rotation, 1 + static_cast<int>(rng() % 3), mask, -1, metric, temperature, rng(), rng, where);
                    if (HasFatalFailure()) return;
                    // The loads of one pass: every chunk but the first of a rotated row and the last ones is read as
                    // vectors (lane 0 adds its tail slot when the row is rotated); only the others id by id.
                    MemoryRow memory(values, logit_bytes, rotation);
                    (void)emulate_fast_pass(values, memory, 1, mask, -1, metric, 0.0f, 1, 3, 1, 9, rng);
                    const scan::VectorChunks vector = scan::vector_chunks(vocabulary, width, rotation);
                    const int vector_count = std::max(0, vector.end - vector.first);
                    EXPECT_EQ(memory.vector_loads, vector_count * (exact::kChunk / width + (rotation != 0 ? 1 : 0))) << where;
                    EXPECT_EQ(memory.scalar_loads, vocabulary - vector_count * exact::kChunk) << where;
                    if (vocabulary == 10243) {
                        EXPECT_GE(vector_count, 8) << "at most the first and the last two of 11 chunks id by id";
                    }
                    vector_loads += memory.vector_loads;
                    scalar_loads += memory.scalar_loads;
                }
    EXPECT_GT(vector_loads, 0);
    EXPECT_GT(scalar_loads, 0);
}

/// A few long rows (V up to 151,936: LLaDA's 126,464, Qwen's 151,936, GPT-2's 50,257 in float, which rotates every row
/// but one in four) of random N(0, 2^2) logits, at T = 0 and 0.7, with the planned split and with one.
TEST(FastRowPass, LongRowsComputeTheDefinitionsBits) {
    std::mt19937 rng(43);
    std::normal_distribution<float> logit(0.0f, 2.0f);
    const struct {
        int vocabulary, logit_bytes, rotation, splits;
        float temperature;
    } cases[] = {{126464, 2, 0, 1, 0.0f}, {151936, 2, 3, 7, 0.7f}, {50257, 4, 1, 1, 0.0f}, {50257, 4, 3, 3, 0.7f}};
    for (const auto &c : cases) {
        std::vector<float> row(static_cast<size_t>(c.vocabulary));
        for (float &l : row) l = logit(rng);
        const std::vector<float> values = c.logit_bytes == 2 ? to_bfloat16(row) : row;
        const int mask = c.vocabulary - 1;
        ExpectFastPassIsTheDefinition(values, c.logit_bytes, c.rotation, c.splits, mask, 5, SABER_METRIC_MARGIN, c.temperature, rng(), rng,
                                      "V " + std::to_string(c.vocabulary));
        if (HasFatalFailure()) return;
    }
}

/// The row as float16 values, each float rounded to the nearest binary16 (ties to even; subnormal below 2^-14, +-inf
/// past 65504), held as floats: the values a float16 row widens to.
std::vector<float> to_float16(std::vector<float> row) {
    for (float &l : row) {
        if (!std::isfinite(l) || l == 0.0f) continue;
        int exponent = 0;
        (void)std::frexp(l, &exponent);   // |l| = m 2^exponent, m in [0.5, 1): the unit in the last place is 2^(exponent - 11)
        const float ulp = std::ldexp(1.0f, std::max(exponent - 11, -24));
        const float rounded = std::nearbyint(l / ulp) * ulp;   // the default rounding mode: to nearest, ties to even
        l = std::fabs(rounded) > 65504.0f ? std::copysign(INFINITY, l) : rounded;
    }
    return row;
}

/// The row shapes of issue 27's static report, at LLaDA's V = 126,464: random N(0, 2^2) logits (an early step of a
/// diffusion decode, every position still open), a peaked row (the same noise plus one id 20 above it, at a random place:
/// a position the model is sure of), and logits falling with the id (-0.0001 v: the best case, the running best set by
/// each warp's first chunk).
std::vector<float> row_of_shape(const std::string &shape, int vocabulary, std::mt19937 &rng) {
    std::normal_distribution<float> logit(0.0f, 2.0f);
    std::vector<float> row(static_cast<size_t>(vocabulary));
    if (shape == "falling") {
        for (int v = 0; v < vocabulary; ++v) row[static_cast<size_t>(v)] = -0.0001f * static_cast<float>(v);
        return row;
    }
    for (float &l : row) l = logit(rng);
    if (shape == "peaked") row[rng() % row.size()] += 20.0f;
    return row;
}

/// Issue 27: a warp ranks a chunk (the divergent per-lane work) only when the chunk's maximum beats the floor, its own
/// runner-up or the block's. The census of ranked chunks for each row shape and logit type, at V = 126,464 with the
/// split the row pass plans for the static report's 256 rows (2 splits of 62 chunks; 8 warps a block), 16 rows each. On
/// random and peaked rows it is under half the chunks, about half of those each warp's first of a split (each lane's own
/// runner-up, the test before issue 27, was beaten by some lane of the warp on nearly every chunk); on falling rows, at
/// most each warp's first chunk of a split.
/// Printed, and written as JSON to $SABER_ROW_SHAPES_JSON when set: bench/kernel_report.py weighs the hot loop's steady
/// and ranked paths by these fractions. The bounds are loose: the emulation's interleaving of the warps and its stale
/// floor reads are random, not a GPU's. Float16 rows run through the float memory layout (the ranking depends on the
/// chunk maxima and the warp's best two, not on the lanes' layout; both types' vectors cover the same 1024 ids a chunk).
TEST(FastRowPass, RankedChunksByRowShape) {
    constexpr int kVocabulary = 126464, kRows = 16, kSplits = 2, kWarps = 8;
    const int chunks = (kVocabulary + 1023) / 1024, mask = kVocabulary - 1;
    const char *shapes[] = {"random", "peaked", "falling"}, *types[] = {"f32", "f16", "bf16"};
    // stats: the kernel without a runner-up (every strategy but low-confidence by margin: the report's); with_runner_up:
    // the margin metric's kernel, on the same rows.
    EmulationStats stats[3][3], with_runner_up[3][3];
    std::mt19937 rng(47);
    for (int shape = 0; shape < 3; ++shape)
        for (int type = 0; type < 3; ++type)
            for (int r = 0; r < kRows; ++r) {
                const std::vector<float> row = row_of_shape(shapes[shape], kVocabulary, rng);
                const std::vector<float> values = type == 2 ? to_bfloat16(row) : type == 1 ? to_float16(row) : row;
                MemoryRow memory(values, type == 2 ? 2 : 4, 0);
                (void)emulate_fast_pass(values, memory, kSplits, mask, -1, SABER_METRIC_MAXPROB, 0.0f, 1, 3, 1, 9, rng, &stats[shape][type]);
                (void)emulate_fast_pass(values, memory, kSplits, mask, -1, SABER_METRIC_MARGIN, 0.0f, 1, 3, 1, 9, rng, &with_runner_up[shape][type]);
                if (HasFailure()) return;   // the emulation itself disagrees with the layout: no census
            }

    std::string json = "{\"vocabulary\": " + std::to_string(kVocabulary) + ", \"rows\": " + std::to_string(kRows) +
                       ", \"splits\": " + std::to_string(kSplits) + ", \"shapes\": {";
    for (int shape = 0; shape < 3; ++shape) {
        json += std::string(shape ? ", " : "") + "\"" + shapes[shape] + "\": {";
        for (int type = 0; type < 3; ++type) {
            const EmulationStats &st = stats[shape][type];
            const double fraction = static_cast<double>(st.ranked) / static_cast<double>(st.chunks);
            const EmulationStats &ru = with_runner_up[shape][type];
            std::printf("[          ] %s %s rows: %lld of %lld chunks ranked (%.1f%%; %.1f%% keeping the runner-up)\n", shapes[shape], types[type],
                        st.ranked, st.chunks, 100.0 * fraction, 100.0 * static_cast<double>(ru.ranked) / static_cast<double>(ru.chunks));
            char entry[160];
            std::snprintf(entry, sizeof entry, "%s\"%s\": {\"chunks\": %lld, \"ranked\": %lld, \"ranked_fraction\": %.4f}", type ? ", " : "",
                          types[type], st.chunks, st.ranked, fraction);
            json += entry;
        }
        json += "}";
    }
    json += "}}\n";
    if (const char *path = std::getenv("SABER_ROW_SHAPES_JSON")) {
        FILE *f = std::fopen(path, "w");
        ASSERT_NE(f, nullptr) << "SABER_ROW_SHAPES_JSON=" << path << ": cannot be written";
        std::fputs(json.c_str(), f);
        std::fclose(f);
    }

    for (int shape = 0; shape < 3; ++shape)
        for (int type = 0; type < 3; ++type) {
            const EmulationStats &st = stats[shape][type];
            const std::string where = std::string(shapes[shape]) + " " + types[type];
            EXPECT_EQ(st.chunks, static_cast<long long>(kRows) * chunks) << where << ": every chunk of a good row is read once";
            if (shape == 2) {
                EXPECT_LE(st.ranked, kRows * kSplits * kWarps) << where << ": at most each warp's first chunk of a split";
                EXPECT_GE(st.ranked, kRows * kSplits) << where << ": a split's first chunk is always ranked";
            } else {
                // A warp's first chunk of a split is ranked (8 of a split's 62 chunks: 13%), and a few later ones; fewer
                // beat the best than the runner-up.
                EXPECT_LT(static_cast<double>(st.ranked) / static_cast<double>(st.chunks), 0.5) << where;
                EXPECT_LT(st.ranked, with_runner_up[shape][type].ranked) << where << ": the best's floor is the higher";
            }
        }
}

/// to_float16 rounds to binary16 as the hardware does: exact values stay, a tie goes to the even neighbour, the
/// subnormal step is 2^-24, and past the largest half it is infinite.
TEST(FastRowPass, Float16RoundingIsBinary16s) {
    const std::vector<float> in = {1.0f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, 2049.0f, 2051.0f, -3.14159265f, 65504.0f,
                                   65520.0f, 1e-7f, 3e-8f, 2.9e-8f, 0.0f, -INFINITY};
    const std::vector<float> want = {1.0f, 1.0f, 1.0f + 4.0f / 2048.0f, 2048.0f, 2052.0f, -3.140625f, 65504.0f,
                                     INFINITY, 1.1920929e-7f, 5.9604645e-8f, 0.0f, 0.0f, -INFINITY};
    const std::vector<float> got = to_float16(in);
    for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(exact::bits(got[i]), exact::bits(want[i])) << "to_float16(" << in[i] << ")";
}

/// The layout and the floor: every id of a chunk is held once; chunk_layout's vector chunks are vector_chunks'; lane 0's
/// rotated vector takes exactly the tail's first bytes; a floor key lets exactly the scores at or above the runner-up
/// through (the zeros alike).
TEST(FastRowPass, LayoutAndFloorHelpersKeepTheirPromises) {
    namespace scan = saber::scan;
    namespace exact = saber::exact;
    for (int width : {4, 8})
        for (int rotation = 0; rotation < width; ++rotation) {
            for (int vocabulary : {1, 7, 1024, 1025, 2048, 2049, 5000, 10240, 10247})
                for (int chunk = 0; chunk * exact::kChunk < vocabulary; ++chunk)
                    EXPECT_EQ(scan::chunk_layout(chunk, vocabulary, width, rotation).vectors, scan::vector_chunks(vocabulary, width, rotation).holds(chunk))
                        << "width " << width << " rotation " << rotation << " V " << vocabulary << " chunk " << chunk;
            const scan::ChunkLayout c = scan::chunk_layout(3, 100000, width, rotation);
            std::vector<int> held(exact::kChunk, 0);
            for (int l = 0; l < scan::kLanes; ++l)
                for (int e = 0; e < scan::kPerLane; ++e) {
                    const int v = scan::lane_id(c, width, l, e);
                    ASSERT_TRUE(v >= c.begin && v < c.begin + exact::kChunk);
                    ++held[static_cast<size_t>(v - c.begin)];
                    // ids ascend in e within a lane, but lane 0's first `rotation` elements hold the chunk's last ids
                    if (e > 0 && !(l == 0 && e == rotation)) {
                        EXPECT_GT(v, scan::lane_id(c, width, l, e - 1));
                    }
                    // element_of inverts lane_id, and no other lane holds the id
                    EXPECT_EQ(scan::element_of(c, width, l, v), e);
                    EXPECT_EQ(scan::element_of(c, width, (l + 1) % scan::kLanes, v), -1);
                }
            EXPECT_EQ(std::count(held.begin(), held.end(), 1), exact::kChunk);
            EXPECT_EQ(scan::element_of(c, width, 0, c.begin - 1), -1);
            EXPECT_EQ(scan::element_of(c, width, 0, c.begin + exact::kChunk), -1);
        }
    for (int tail_bytes = 0; tail_bytes <= 16; ++tail_bytes)
        for (int word = 0; word < 4; ++word) {
            const uint32_t blended = scan::rotated_word(0x11111111u, 0x22222222u, tail_bytes, word);
            for (int b = 0; b < 4; ++b)
                EXPECT_EQ((blended >> (8 * b)) & 0xFFu, 4 * word + b < tail_bytes ? 0x22u : 0x11u) << tail_bytes << " " << word;
        }
    const float scores[] = {-INFINITY, -3e38f, -2.0f, -1e-45f, -0.0f, 0.0f, 1e-45f, 1.5f, 3e38f, INFINITY};
    for (float s : scores) {
        if (s == -INFINITY) continue;
        const float floor = scan::float_of_order_key(scan::floor_key_below(s));
        for (float x : scores) EXPECT_EQ(x > floor, x >= s) << "score " << x << " runner-up " << s;
        EXPECT_EQ(scan::candidate_key(s, 3), scan::candidate_key(s == 0.0f ? 0.0f : s, 7)) << "the zeros alike";
    }
    EXPECT_EQ(scan::candidate_key(1.0f, -1), scan::kNoKey);
    EXPECT_EQ(scan::float_of_order_key(scan::no_floor_key()), -INFINITY);

    // lane_best_greedy: the warp minimum of its answers is the lowest id holding the chunk's maximum, for every width and
    // rotation, with the maximum held many times (lane 0's wrapped elements included) or once.
    std::mt19937 rng(11);
    for (int width : {4, 8})
        for (int rotation = 0; rotation < width; ++rotation)
            for (int trial = 0; trial < 40; ++trial) {
                const scan::ChunkLayout c{2048, 2048 + exact::kChunk, rotation, true};
                const int levels = trial % 2 ? 3 : 1000;
                float x[scan::kLanes][scan::kPerLane];
                std::vector<float> by_id(exact::kChunk);
                for (int l = 0; l < scan::kLanes; ++l)
                    for (int e = 0; e < scan::kPerLane; ++e) {
                        x[l][e] = static_cast<float>(rng() % levels) - (trial % 4 == 1 ? 2.0f : 0.0f) + (rng() % 2 ? 0.0f : -0.0f);
                        by_id[static_cast<size_t>(scan::lane_id(c, width, l, e) - c.begin)] = x[l][e];
                    }
                float m = -INFINITY;
                for (float v : by_id) m = std::max(m, v);
                m = scan::canonical_max(m);
                int want = -1;
                for (int i = 0; i < exact::kChunk && want < 0; ++i)
                    if (by_id[static_cast<size_t>(i)] == m) want = c.begin + i;
                int got = INT_MAX;
                for (int l = 0; l < scan::kLanes; ++l) got = std::min(got, scan::lane_best_greedy(x[l], c, width, l, m));
                EXPECT_EQ(got, want) << "width " << width << ", rotation " << rotation << ", trial " << trial;
            }
}

// ---- decode extents (validate.cpp): every product of the decode's arguments in 64 bits, checked before allocating ----

namespace {

TEST(DecodeExtent, ProductsPast32BitsAreExactNotWrapped) {
    // batch x K = 65535 x 65538 = 4295032830: in 32 bits it wraps to 65534, a small positive row count that would plan a
    // split (and allocate split scratch) for a batch that fills the GPU many times over.
    const int32_t batch = 65535, generation = 65538, block = 65538, length = 65538 + 7;
    ASSERT_EQ(static_cast<int32_t>(static_cast<uint32_t>(batch) * static_cast<uint32_t>(block)), 65534) << "the 32-bit product wraps";
    saber::DecodeExtent extent{};
    ASSERT_EQ(saber::plan_decode_extent(batch, generation, block, length, 3, extent), SABER_OK) << error();
    EXPECT_EQ(extent.first_block_rows, 4295032830ull);
    EXPECT_EQ(extent.split_rows, 2147483647) << "saturated for the int split planner, never wrapped";
    EXPECT_EQ(extent.positions, 4295032830ull);
    EXPECT_EQ(extent.canvas, 65535ull * (65538 + 7));
    EXPECT_EQ(extent.trace_slots, 3ull * 65535);
    EXPECT_EQ(extent.trace_cells, 3ull * 65535 * 65538);
}

TEST(DecodeExtent, TheLargestAcceptedOptionsStayExact) {
    // The limits validate_options and validate_prompts accept: batch 65535, G = K = 2^20.
    saber::DecodeExtent extent{};
    ASSERT_EQ(saber::plan_decode_extent(65535, 1 << 20, 1 << 20, (1 << 21) - 1, 0, extent), SABER_OK) << error();
    EXPECT_EQ(extent.first_block_rows, 65535ull << 20);
    EXPECT_EQ(extent.positions, 65535ull << 20);
    EXPECT_EQ(extent.split_rows, 2147483647);
    EXPECT_EQ(extent.trace_cells, 0u);
    ASSERT_EQ(saber::plan_decode_extent(2, 8, 4, 10, 1, extent), SABER_OK);
    EXPECT_EQ(extent.split_rows, 8) << "small products are unchanged";
}

TEST(DecodeExtent, ATraceRingNoDeviceHoldsIsRefusedNamingTheProduct) {
    // trace_capacity x batch x G = 2^31 x 65535 x 2^20 overflows 64 bits; refused before anything is allocated.
    saber::DecodeExtent extent{};
    EXPECT_EQ(saber::plan_decode_extent(65535, 1 << 20, 1 << 20, (1 << 21) - 1, 2147483647, extent), SABER_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(error().find("trace_capacity x batch x G"), std::string::npos) << error();
    EXPECT_EQ(saber::plan_decode_extent(0, 8, 4, 8, 0, extent), SABER_ERROR_INVALID_ARGUMENT);
}

// ---- the handle registry (handle_registry.h): a context outlives what was created from it ----

TEST(HandleRegistry, AContextWithLiveHandlesIsNotRetiredAndSaysHowManyAreAlive) {
    saber::HandleRegistry r;
    using Kind = saber::HandleRegistry::Kind;
    int context = 0, decode1 = 0, decode2 = 0, buffer = 0, buffer2 = 0;
    ASSERT_TRUE(r.add(&context, Kind::Context));
    ASSERT_TRUE(r.add(&decode1, Kind::Decode, &context));
    ASSERT_TRUE(r.add(&decode2, Kind::Decode, &context));
    ASSERT_TRUE(r.add(&buffer, Kind::Buffer, &context));
    saber::HandleRegistry::Dependents alive;
    EXPECT_FALSE(r.retire_if_unused(&context, alive));
    EXPECT_EQ(alive.decodes, 2u);
    EXPECT_EQ(alive.buffers, 1u);
    EXPECT_EQ(alive.total(), 3u);
    EXPECT_EQ(saber::describe(alive), "2 decodes and 1 buffer");
    EXPECT_TRUE(r.contains(&context)) << "a refused destroy leaves the context usable";

    // A retired handle is no longer live, but its context keeps counting it until its resources are released.
    saber::HandleRegistry::Retired retired;
    ASSERT_TRUE(r.retire(&decode1, retired));
    EXPECT_FALSE(r.contains(&decode1));
    EXPECT_FALSE(r.retire(&decode1, retired)) << "retiring twice is an error, not a double release";
    EXPECT_FALSE(r.retire_if_unused(&context, alive));
    EXPECT_EQ(alive.decodes, 2u);
    r.released(retired);
    EXPECT_EQ(r.dependents(&context).decodes, 1u);

    ASSERT_TRUE(r.add(&buffer2, Kind::Buffer, &context));
    EXPECT_FALSE(r.retire_if_unused(&context, alive));
    EXPECT_EQ(saber::describe(alive), "1 decode and 2 buffers");
    for (int *h : {&decode2, &buffer, &buffer2}) {
        ASSERT_TRUE(r.retire(h, retired));
        r.released(retired);
    }
    EXPECT_TRUE(r.retire_if_unused(&context, alive));
    EXPECT_EQ(alive.total(), 0u);
    EXPECT_FALSE(r.contains(&context));
    EXPECT_FALSE(r.retire_if_unused(&context, alive)) << "destroyed twice";
}

TEST(HandleRegistry, NothingIsCreatedFromADestroyedContext) {
    saber::HandleRegistry r;
    using Kind = saber::HandleRegistry::Kind;
    int context = 0, buffer = 0, foreign = 0;
    EXPECT_FALSE(r.add(&buffer, Kind::Buffer, &foreign)) << "the owner was never live";
    EXPECT_FALSE(r.contains(&buffer));
    ASSERT_TRUE(r.add(&context, Kind::Context));
    saber::HandleRegistry::Dependents alive;
    ASSERT_TRUE(r.retire_if_unused(&context, alive));
    EXPECT_FALSE(r.add(&buffer, Kind::Buffer, &context));
    EXPECT_EQ(r.dependents(&context).total(), 0u);
}

TEST(HandleRegistry, ContextsOnManyThreadsCountOnlyTheirOwnHandles) {
    saber::HandleRegistry r;
    using Kind = saber::HandleRegistry::Kind;
    constexpr int kThreads = 4, kHandles = 500;
    std::vector<int> contexts(kThreads);
    std::vector<std::vector<int>> handles(kThreads, std::vector<int>(kHandles));
    for (int &c : contexts) ASSERT_TRUE(r.add(&c, Kind::Context));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int &h : handles[t]) r.add(&h, Kind::Decode, &contexts[t]);
            saber::HandleRegistry::Retired retired;
            for (int i = 0; i < kHandles - 1; ++i)
                if (r.retire(&handles[t][i], retired)) r.released(retired);
        });
    for (std::thread &t : threads) t.join();
    for (int t = 0; t < kThreads; ++t) {
        saber::HandleRegistry::Dependents alive;
        EXPECT_FALSE(r.retire_if_unused(&contexts[t], alive));
        EXPECT_EQ(alive.decodes, 1u) << "context " << t;
        saber::HandleRegistry::Retired retired;
        ASSERT_TRUE(r.retire(&handles[t].back(), retired));
        r.released(retired);
        EXPECT_TRUE(r.retire_if_unused(&contexts[t], alive));
    }
}

}  // namespace
