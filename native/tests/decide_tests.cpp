// Decide tests. Host part (no GPU): the decide code of kernels/decide_block.h, run on an emulated one-thread block
// (the same functions, bitonic sort included, that the kernel runs), against the independent reference of
// decide_reference.h, bit for bit: every output array, the trace, the counters and the status, over random tie-heavy
// states and multi-step runs of every strategy. Device part (skips without a device): the decide kernel, one launch at a
// time on injected row results, against the same reference, with the handshake counter, status and row plan.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "device_test.h"
#include "decide_reference.h"
#include "kernels/decide_block.h"
#include "saber/saber.h"
#include "testing.h"

namespace {

using saber::DecodeState;
using saber::kNoError;
namespace decide = saber::decide;
namespace reference = saber::reference;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kVocabulary = 50;
constexpr int kMask = 7;

// ---------------------------------------------------------------------------------------------------------------------
// A decode's state on the host, laid out as DecodeState's arrays.

struct Batch {
    saber_decode_options o{};
    bool tiny = false;   // confidences may lie below 2^-20
    int batch = 0, G = 0, K = 0, length = 0, trace_capacity = 0;
    std::vector<int32_t> prompt_length, block, block_step, nfe, done, canvas, prediction;
    std::vector<int8_t> decoded, commit_set, in_draft, selected;
    std::vector<float> commit_confidence, previous, delta, confidence, token_confidence, metric;
    std::vector<unsigned long long> chunk_partials;   // scratch: one 24-byte exact::ChunkPartial per row (row_chunks = 1)
    std::vector<long long> row_offsets;
    std::vector<saber_trace_step> trace_steps;
    std::vector<int32_t> trace_events, trace_tokens;
    std::vector<float> trace_confidences, trace_deltas;
    unsigned int blocks_done = 0;
    int32_t step = 0, error_step = 0;
    unsigned long long error = kNoError;
    saber_decode_status status{};
    saber::HostStatus host_status{};     // the mapped block: the steps finished and the last two statuses
    unsigned long long finished_steps = 0;

    size_t at(int b, int g) const { return static_cast<size_t>(b) * G + g; }

    /// The state with pointers into this object (valid while it lives and is not resized).
    DecodeState state() {
        DecodeState s{};
        s.options = o;
        s.batch = batch;
        s.generation = G;
        s.block_length = K;
        s.length = length;
        s.vocabulary = kVocabulary;
        s.mask_id = kMask;
        s.trace_capacity = trace_capacity;
        s.row_chunks = 1;
        s.row_splits = 1;
        s.prompt_length = prompt_length.data();
        s.block = block.data();
        s.block_step = block_step.data();
        s.nfe = nfe.data();
        s.done = done.data();
        s.canvas = canvas.data();
        s.decoded = decoded.data();
        s.commit_set = commit_set.data();
        s.in_draft = in_draft.data();
        s.selected = selected.data();
        s.commit_confidence = commit_confidence.data();
        s.previous = previous.data();
        s.delta = delta.data();
        s.prediction = prediction.data();
        s.confidence = confidence.data();
        s.token_confidence = token_confidence.data();
        s.metric = metric.data();
        s.chunk_partials = chunk_partials.data();
        s.row_offsets = row_offsets.data();
        s.blocks_done = &blocks_done;
        s.step = &step;
        s.error = &error;
        s.error_step = &error_step;
        s.status = &status;
        s.host_status = &host_status;
        s.finished_steps = &finished_steps;
        if (trace_capacity > 0) {
            s.trace_steps = trace_steps.data();
            s.trace_events = trace_events.data();
            s.trace_tokens = trace_tokens.data();
            s.trace_confidences = trace_confidences.data();
            s.trace_deltas = trace_deltas.data();
        }
        return s;
    }
};

template <typename T>
T pick(std::mt19937 &rng, const std::vector<T> &values) {
    return values[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
}

bool chance(std::mt19937 &rng, double p) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < p; }

int uniform(std::mt19937 &rng, int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng); }

// Tie-heavy values: many exact repeats, -0 and +0, the usual thresholds and their neighbours, values with full
// mantissas. Half the batches draw from the set with tiny values too (below 2^-20: tau's sum then takes the sequential
// path), the others only from values tau's exact integer sum covers.
const std::vector<float> kConfidences = {-0.0f, 0.0f, 0x1p-20f, 3e-6f, 0.1f, 0.125f, 0.25f, 1.0f / 3.0f, 0.5f, 0.5f, 0.5f, 0.75f,
                                         0.9f, std::nextafter(0.9f, 1.0f), 1.0f, 1.0f};
const std::vector<float> kTinyConfidences = {-0.0f, 0.0f, 1e-30f, 5e-7f, 0.125f, 0.25f, 0.5f, 0.5f, 0.5f, 0.75f,
                                             0.9f, std::nextafter(0.9f, 1.0f), 1.0f, 1.0f};
// The factor rule's edges: thresholds 1 - F / (i + 1) hit exactly (0.75 = rank 3 at F = 1, 0.5 = rank 3 at F = 2, 0 =
// rank 3 at F = 4) or missed by one float (the nearest floats around 2/3, rank 2 at F = 1), with ties.
const std::vector<float> kFactorConfidences = {-0.0f, 0.0f, 0.25f, 0.5f, 0.5f, std::nextafter(0.5f, 0.0f), 2.0f / 3.0f,
                                               std::nextafter(2.0f / 3.0f, 0.0f), 0.75f, 0.75f, std::nextafter(0.75f, 0.0f),
                                               0.8f, 0.875f, std::nextafter(0.875f, 0.0f), 0.9375f, 0.96875f, 1.0f, 1.0f};
const std::vector<float> kMetrics = {-3.5f, -1.0f, -0.0f, 0.0f, 0.0f, 0.25f, 0.5f, 0.5f, 1.0f};
const std::vector<float> kPrevious = {-0.0f, 0.0f, 0.25f, 0.5f, 0.5f, 0.9f, 1.0f, -kInf};

int token(std::mt19937 &rng) {
    const int t = uniform(rng, 0, kVocabulary - 2);
    return t >= kMask ? t + 1 : t;
}

/// A random decode state of `batch` sequences (some done), consistent with the strategy's invariants: nothing decoded or
/// committed past the active end, canvases hold a token exactly where decoded, the baselines' earlier blocks complete.
Batch random_batch(std::mt19937 &rng, const saber_decode_options &o, int batch, int trace_capacity) {
    Batch x;
    x.o = o;
    x.batch = batch;
    x.G = o.generation_length;
    x.K = o.block_length;
    x.trace_capacity = trace_capacity;
    x.tiny = chance(rng, 0.5);
    const std::vector<float> &confidences = x.tiny ? kTinyConfidences : kConfidences;
    const int max_prompt = 3;
    x.length = max_prompt + x.G;
    const size_t n = static_cast<size_t>(batch) * x.G;
    const bool saber = o.strategy == SABER_STRATEGY_SABER;
    const int blocks = x.G / x.K;
    x.prompt_length.resize(batch);
    x.block.resize(batch);
    x.block_step.resize(batch);
    x.nfe.resize(batch);
    x.done.resize(batch);
    x.canvas.assign(static_cast<size_t>(batch) * x.length, kMask);
    x.prediction.assign(n, -1);
    x.decoded.assign(n, 0);
    x.commit_set.assign(n, 0);
    x.in_draft.assign(n, 0);
    x.selected.assign(n, 0);
    x.commit_confidence.assign(n, 0.0f);
    x.previous.assign(n, 0.0f);
    x.delta.assign(n, 0.0f);
    x.confidence.assign(n, kNaN);
    x.token_confidence.assign(n, kNaN);
    x.metric.assign(n, kNaN);
    x.chunk_partials.assign(n * 3, 0x5A5A5A5A5A5A5A5Aull);
    x.row_offsets.assign(static_cast<size_t>(batch) + 1, -1);
    const size_t cells = static_cast<size_t>(trace_capacity) * batch * x.G;
    x.trace_steps.assign(static_cast<size_t>(trace_capacity) * batch, saber_trace_step{-1, -1, -1, -1, -1.0});
    x.trace_events.assign(cells, 0x7777);
    x.trace_tokens.assign(cells, -5);
    x.trace_confidences.assign(cells, -2.5f);
    x.trace_deltas.assign(cells, -3.5f);
    x.step = uniform(rng, 0, 7);
    x.status = x.host_status.slots[0] = x.host_status.slots[1] = saber_decode_status{-9, -9, -9, -9, -9, -9, -9};
    x.finished_steps = static_cast<unsigned long long>(uniform(rng, 0, 5));
    for (int b = 0; b < batch; ++b) {
        x.prompt_length[b] = uniform(rng, 0, max_prompt);
        int32_t *canvas = x.canvas.data() + static_cast<size_t>(b) * x.length;
        for (int i = 0; i < x.prompt_length[b]; ++i) canvas[i] = token(rng);
        canvas += x.prompt_length[b];
        x.done[b] = b > 0 && chance(rng, 0.25) ? 1 : 0;   // staggered finishes; sequence 0 always active
        x.nfe[b] = uniform(rng, 0, 40);
        x.block[b] = uniform(rng, 0, blocks - 1);
        x.block_step[b] = o.strategy == SABER_STRATEGY_LOW_CONFIDENCE ? uniform(rng, 0, o.steps / blocks - 1) : 0;
        const int begin = x.block[b] * x.K, end = begin + x.K;
        const double filled = pick(rng, std::vector<double>{0.0, 0.3, 0.7, 0.95, 1.0});
        for (int g = 0; g < x.G; ++g) {
            const size_t at = x.at(b, g);
            int8_t decoded = 0;
            if (g < begin) decoded = saber ? chance(rng, 0.9) : 1;
            else if (g < end) decoded = chance(rng, filled);
            x.decoded[at] = decoded;
            if (decoded) canvas[g] = token(rng);
            if (g < end) {
                x.commit_set[at] = saber && (decoded || (o.variant == SABER_VARIANT_REFERENCE && chance(rng, 0.3)));
                x.commit_confidence[at] = x.commit_set[at] || chance(rng, 0.3) ? pick(rng, confidences) : 0.0f;
                x.previous[at] = pick(rng, kPrevious);
            } else {
                x.previous[at] = chance(rng, 0.5) ? 0.0f : -kInf;
            }
            x.delta[at] = pick(rng, kPrevious);
            x.in_draft[at] = static_cast<int8_t>(uniform(rng, 0, 1));
            x.selected[at] = static_cast<int8_t>(uniform(rng, 0, 1));
        }
    }
    return x;
}

/// This step's row results: values for the rows the row pass computes (docs/strategies.md: Saber every position before
/// the active end, the baselines the block's masked positions), NaN and -1 for every other row.
void random_rows(std::mt19937 &rng, Batch &x) {
    const bool saber = x.o.strategy == SABER_STRATEGY_SABER, paper = saber && x.o.variant == SABER_VARIANT_PAPER;
    const std::vector<float> &confidences = x.o.strategy == SABER_STRATEGY_FACTOR ? kFactorConfidences : x.tiny ? kTinyConfidences : kConfidences;
    for (int b = 0; b < x.batch; ++b) {
        const int begin = x.block[b] * x.K, end = begin + x.K;
        for (int g = 0; g < x.G; ++g) {
            const size_t at = x.at(b, g);
            const bool row = !x.done[b] && g < end && (saber || (g >= begin && !x.decoded[at]));
            x.prediction[at] = row ? token(rng) : -1;
            x.confidence[at] = row ? pick(rng, confidences) : kNaN;
            x.token_confidence[at] = row && paper && x.decoded[at] ? pick(rng, confidences) : kNaN;
            x.metric[at] = row ? (x.o.strategy == SABER_STRATEGY_LOW_CONFIDENCE ? pick(rng, kMetrics) : x.confidence[at]) : kNaN;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The reference step of a whole batch, and the comparison.

reference::Sequence sequence_of(const Batch &x, int b) {
    reference::Sequence q;
    q.block = x.block[b];
    q.block_step = x.block_step[b];
    q.nfe = x.nfe[b];
    q.done = x.done[b] != 0;
    const size_t from = x.at(b, 0), to = from + x.G;
    const auto canvas = x.canvas.begin() + static_cast<ptrdiff_t>(static_cast<size_t>(b) * x.length + x.prompt_length[b]);
    q.canvas.assign(canvas, canvas + x.G);
    q.decoded.assign(x.decoded.begin() + from, x.decoded.begin() + to);
    q.commit_set.assign(x.commit_set.begin() + from, x.commit_set.begin() + to);
    q.commit_confidence.assign(x.commit_confidence.begin() + from, x.commit_confidence.begin() + to);
    q.previous.assign(x.previous.begin() + from, x.previous.begin() + to);
    q.delta.assign(x.delta.begin() + from, x.delta.begin() + to);
    return q;
}

void put_sequence(Batch &x, int b, const reference::Sequence &q) {
    x.block[b] = q.block;
    x.block_step[b] = q.block_step;
    x.nfe[b] = q.nfe;
    x.done[b] = q.done ? 1 : 0;
    const size_t from = x.at(b, 0);
    std::copy(q.canvas.begin(), q.canvas.end(), x.canvas.begin() + static_cast<ptrdiff_t>(static_cast<size_t>(b) * x.length + x.prompt_length[b]));
    std::copy(q.decoded.begin(), q.decoded.end(), x.decoded.begin() + static_cast<ptrdiff_t>(from));
    std::copy(q.commit_set.begin(), q.commit_set.end(), x.commit_set.begin() + static_cast<ptrdiff_t>(from));
    std::copy(q.commit_confidence.begin(), q.commit_confidence.end(), x.commit_confidence.begin() + static_cast<ptrdiff_t>(from));
    std::copy(q.previous.begin(), q.previous.end(), x.previous.begin() + static_cast<ptrdiff_t>(from));
    std::copy(q.delta.begin(), q.delta.end(), x.delta.begin() + static_cast<ptrdiff_t>(from));
}

reference::Rows rows_of(const Batch &x, int b) {
    reference::Rows r;
    const size_t from = x.at(b, 0), to = from + x.G;
    r.prediction.assign(x.prediction.begin() + from, x.prediction.begin() + to);
    r.confidence.assign(x.confidence.begin() + from, x.confidence.begin() + to);
    r.token_confidence.assign(x.token_confidence.begin() + from, x.token_confidence.begin() + to);
    r.metric.assign(x.metric.begin() + from, x.metric.begin() + to);
    return r;
}

/// The state after one step of `x` by the reference (scratch arrays excepted: in_draft, selected, chunk_partials).
Batch expected_step(const Batch &x) {
    Batch e = x;
    const int t = x.step + 1;
    if (x.error == kNoError) {
        for (int b = 0; b < x.batch; ++b) {
            if (x.done[b]) continue;
            reference::Sequence q = sequence_of(e, b);
            reference::Trace trace;
            size_t slot = 0;
            if (x.trace_capacity > 0) {
                slot = static_cast<size_t>((t - 1) % x.trace_capacity) * x.batch + b;
                const auto from = static_cast<ptrdiff_t>(slot * x.G), to = from + x.G;
                trace.events.assign(e.trace_events.begin() + from, e.trace_events.begin() + to);
                trace.tokens.assign(e.trace_tokens.begin() + from, e.trace_tokens.begin() + to);
                trace.confidences.assign(e.trace_confidences.begin() + from, e.trace_confidences.begin() + to);
                trace.deltas.assign(e.trace_deltas.begin() + from, e.trace_deltas.begin() + to);
            }
            reference::step(x.o, x.K, kMask, t, q, rows_of(x, b), x.trace_capacity > 0 ? &trace : nullptr);
            put_sequence(e, b, q);
            if (x.trace_capacity > 0) {
                const auto from = static_cast<ptrdiff_t>(slot * x.G);
                e.trace_steps[slot] = trace.header;
                std::copy(trace.events.begin(), trace.events.end(), e.trace_events.begin() + from);
                std::copy(trace.tokens.begin(), trace.tokens.end(), e.trace_tokens.begin() + from);
                std::copy(trace.confidences.begin(), trace.confidences.end(), e.trace_confidences.begin() + from);
                std::copy(trace.deltas.begin(), trace.deltas.end(), e.trace_deltas.begin() + from);
            }
        }
        // A step that finds every sequence finished (queued one step ahead by a host loop) is no step.
        if (std::count(x.done.begin(), x.done.end(), 0) > 0) e.step += 1;
    } else if (e.error_step == 0) {
        e.error_step = e.step + 1;
    }
    int active = 0;
    std::vector<reference::Sequence> sequences;
    for (int b = 0; b < e.batch; ++b) {
        active += e.done[b] ? 0 : 1;
        reference::Sequence q;
        q.block = e.block[b];
        q.done = e.done[b] != 0;
        sequences.push_back(q);
    }
    e.status = reference::status(e.step, active, e.error, e.error_step);
    e.finished_steps += 1;
    e.host_status.version = e.finished_steps;   // published: the steps finished, this step's status in its slot
    e.host_status.slots[e.finished_steps % 2] = e.status;
    e.row_offsets = reference::row_offsets(e.o, e.K, sequences);
    return e;
}

/// Bytes of a value, for bit-for-bit comparisons (floats included: -0 vs +0 and NaN payloads count).
template <typename T>
bool same_bits(const T &a, const T &b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
::testing::AssertionResult same_array(const char *name, const std::vector<T> &got, const std::vector<T> &want) {
    if (got.size() != want.size()) return ::testing::AssertionFailure() << name << ": size " << got.size() << " vs " << want.size();
    for (size_t i = 0; i < got.size(); ++i)
        if (!same_bits(got[i], want[i]))
            return ::testing::AssertionFailure() << name << "[" << i << "]: got " << +got[i] << ", want " << +want[i];
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_header(const saber_trace_step &a, const saber_trace_step &b) {
    if (a.step == b.step && a.committed == b.committed && a.remasked == b.remasked && a.reserved == b.reserved && same_bits(a.tau, b.tau))
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "trace header {" << a.step << ", " << a.committed << ", " << a.remasked << ", " << a.tau
                                         << "} vs {" << b.step << ", " << b.committed << ", " << b.remasked << ", " << b.tau << "}";
}

::testing::AssertionResult same_status(const char *name, const saber_decode_status &a, const saber_decode_status &b) {
    if (same_bits(a, b)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " {" << a.steps << ", " << a.active_sequences << ", " << a.error << ", " << a.error_step
                                         << ", " << a.error_sequence << ", " << a.error_position << ", " << a.error_vocabulary_index
                                         << "} vs {" << b.steps << ", " << b.active_sequences << ", " << b.error << ", " << b.error_step
                                         << ", " << b.error_sequence << ", " << b.error_position << ", " << b.error_vocabulary_index << "}";
}

/// Expects every output of a step to equal the reference's (scratch excepted; row_offsets when `plan`).
void expect_same_state(const Batch &got, const Batch &want, bool plan, const std::string &where) {
    SCOPED_TRACE(where);
    EXPECT_TRUE(same_array("block", got.block, want.block));
    EXPECT_TRUE(same_array("block_step", got.block_step, want.block_step));
    EXPECT_TRUE(same_array("nfe", got.nfe, want.nfe));
    EXPECT_TRUE(same_array("done", got.done, want.done));
    EXPECT_TRUE(same_array("canvas", got.canvas, want.canvas));
    EXPECT_TRUE(same_array("decoded", got.decoded, want.decoded));
    EXPECT_TRUE(same_array("commit_set", got.commit_set, want.commit_set));
    EXPECT_TRUE(same_array("commit_confidence", got.commit_confidence, want.commit_confidence));
    EXPECT_TRUE(same_array("previous", got.previous, want.previous));
    EXPECT_TRUE(same_array("delta", got.delta, want.delta));
    EXPECT_TRUE(same_array("trace_events", got.trace_events, want.trace_events));
    EXPECT_TRUE(same_array("trace_tokens", got.trace_tokens, want.trace_tokens));
    EXPECT_TRUE(same_array("trace_confidences", got.trace_confidences, want.trace_confidences));
    EXPECT_TRUE(same_array("trace_deltas", got.trace_deltas, want.trace_deltas));
    for (size_t i = 0; i < want.trace_steps.size(); ++i) EXPECT_TRUE(same_header(got.trace_steps[i], want.trace_steps[i])) << "slot " << i;
    EXPECT_EQ(got.step, want.step);
    EXPECT_EQ(got.error_step, want.error_step);
    EXPECT_EQ(got.error, want.error);
    EXPECT_TRUE(same_status("status", got.status, want.status));
    EXPECT_TRUE(same_status("host_status slot 0", got.host_status.slots[0], want.host_status.slots[0]));
    EXPECT_TRUE(same_status("host_status slot 1", got.host_status.slots[1], want.host_status.slots[1]));
    EXPECT_EQ(got.host_status.version, want.host_status.version) << "the published status's version (steps finished)";
    EXPECT_EQ(got.finished_steps, want.finished_steps);
    if (plan) {
        EXPECT_TRUE(same_array("row_offsets", got.row_offsets, want.row_offsets));
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The host emulation: decide_block.h's code on a one-thread block.

enum class Place { Staged, InPlace };

/// One step of the batch as the kernel does it, on decide::HostBlock: each sequence in a scratch of its own (Staged: the
/// shared-memory path's copies) or in the state's arrays (InPlace: the global-memory path), then the bookkeeping.
void host_step(Batch &x, Place place) {
    DecodeState s = x.state();
    decide::HostBlock block;
    const int n = decide::pow2_at_least(x.G);
    std::vector<int8_t> decoded(x.G), commit_set(x.G), drafted(x.G), remasked(x.G);
    std::vector<float> score(x.G), delta(x.G), commit_confidence(x.G);
    std::vector<unsigned long long> keys(static_cast<size_t>(n));
    double threshold = 0.0;
    bool stepped = false;
    for (int b = 0; b < x.batch; ++b) {
        if (*s.error != kNoError || s.done[b]) continue;
        stepped = true;
        decide::Scratch w;
        if (place == Place::InPlace) {
            w = decide::state_scratch(s, b, &threshold);
        } else {
            // Poisoned: the step must read only what it loaded.
            std::fill(decoded.begin(), decoded.end(), int8_t{3});
            std::fill(score.begin(), score.end(), kNaN);
            std::fill(keys.begin(), keys.end(), 0ull);
            w = decide::Scratch{true,         decoded.data(), commit_set.data(),        drafted.data(), remasked.data(),
                                score.data(), delta.data(),   commit_confidence.data(), keys.data(),    &threshold};
        }
        decide::decide_sequence(block, s, b, w);
    }
    decide::finish_step(block, s, stepped, decide::active_sequences(block, s));
}

/// Runs `steps` steps of random rows from `start`, both places against the reference at every step.
int run_steps(std::mt19937 &rng, Batch start, int steps, const std::string &name) {
    int compared = 0;
    for (int t = 0; t < steps; ++t) {
        random_rows(rng, start);
        const Batch want = expected_step(start);
        Batch staged = start, in_place = start;
        host_step(staged, Place::Staged);
        host_step(in_place, Place::InPlace);
        expect_same_state(staged, want, false, name + " staged, step " + std::to_string(t));
        expect_same_state(in_place, want, false, name + " in place, step " + std::to_string(t));
        if (::testing::Test::HasFailure()) return compared;
        compared += 1;
        start = staged;
        if (std::all_of(start.done.begin(), start.done.end(), [](int32_t d) { return d != 0; })) break;
    }
    return compared;
}

saber_decode_options options_of(int strategy, int G, int K) {
    saber_decode_options o = saber_tests::saber_options(G, K, 2, 8);
    o.strategy = strategy;
    o.fixed_threshold = 0.9f;
    o.steps = G;
    o.metric = SABER_METRIC_MAXPROB;
    o.threshold = 0.9f;
    o.factor = 1.0f;
    return o;
}

/// Every Saber configuration: variants, backtracking, fixed threshold, n and mu.
std::vector<saber_decode_options> saber_configurations(int G, int K) {
    std::vector<saber_decode_options> all;
    for (int variant : {SABER_VARIANT_REFERENCE, SABER_VARIANT_PAPER})
        for (int backtracking : {1, 0})
            for (float fixed : {0.0f, 0.5f, 0.9f})
                for (int n : {1, 2, 3, 5})
                    for (int mu : {1, 2, 8}) {
                        saber_decode_options o = options_of(SABER_STRATEGY_SABER, G, K);
                        o.variant = variant;
                        o.backtracking = backtracking;
                        o.use_fixed_threshold = fixed > 0.0f;
                        o.fixed_threshold = fixed > 0.0f ? fixed : 0.9f;
                        o.min_tokens_per_step = n;
                        o.remask_divisor = mu;
                        all.push_back(o);
                    }
    return all;
}

struct Shape {
    int G, K;
};

// G in {4, 32, 256, 1024}, K < G and K = G.
const std::vector<Shape> kShapes = {{4, 1}, {4, 2}, {4, 4}, {32, 8}, {32, 32}, {256, 64}, {256, 256}, {1024, 256}, {1024, 1024}};

/// Configurations to run on a shape: all of them for small G, a fixed random sample (the defaults first) for large G.
std::vector<saber_decode_options> sample(std::mt19937 &rng, std::vector<saber_decode_options> all, int G, size_t large) {
    if (G <= 32 || all.size() <= large) return all;
    std::vector<saber_decode_options> some{all.front()};
    std::shuffle(all.begin() + 1, all.end(), rng);
    some.insert(some.end(), all.begin() + 1, all.begin() + static_cast<ptrdiff_t>(large));
    return some;
}

std::string describe(const saber_decode_options &o) {
    std::string d = "G" + std::to_string(o.generation_length) + " K" + std::to_string(o.block_length);
    if (o.strategy == SABER_STRATEGY_SABER)
        return d + " saber " + (o.variant == SABER_VARIANT_PAPER ? "paper" : "reference") + " n" + std::to_string(o.min_tokens_per_step) +
               " mu" + std::to_string(o.remask_divisor) + (o.backtracking ? "" : " no-backtracking") +
               (o.use_fixed_threshold ? " fixed " + std::to_string(o.fixed_threshold) : "");
    if (o.strategy == SABER_STRATEGY_LOW_CONFIDENCE)
        return d + " low-confidence S" + std::to_string(o.steps) + " metric " + std::to_string(o.metric);
    if (o.strategy == SABER_STRATEGY_FACTOR) return d + " factor " + std::to_string(o.factor);
    return d + " threshold " + std::to_string(o.threshold);
}

/// Runs each configuration from a few random batches of 8 for a few steps; returns the steps compared.
int run_configurations(std::mt19937 &rng, const std::vector<saber_decode_options> &configurations, int starts, int steps) {
    int compared = 0;
    for (const saber_decode_options &o : configurations) {
        for (int start = 0; start < starts; ++start) {
            compared += run_steps(rng, random_batch(rng, o, 8, 3), steps, describe(o) + " start " + std::to_string(start));
            if (::testing::Test::HasFailure()) return compared;
        }
    }
    return compared;
}

// ---------------------------------------------------------------------------------------------------------------------
// Host tests.

TEST(DecideKeys, OrderBitsAreTheFloatOrderWithSignedZerosTied) {
    const std::vector<float> values = {-kInf, -3.0f, -1e-30f, -0.0f, 0.0f, 1e-45f, 1e-30f, 0.5f, std::nextafter(0.5f, 1.0f), 1.0f, 3e38f, kInf};
    for (float a : values)
        for (float b : values) {
            EXPECT_EQ(a < b, decide::order_bits(a) < decide::order_bits(b)) << a << " " << b;
            EXPECT_EQ(a == b, decide::order_bits(a) == decide::order_bits(b)) << a << " " << b;
        }
    // Equal scores (-0 and +0 included) go by position in both orders; every candidate key sorts before kNoCandidate.
    for (decide::Order order : {decide::Order::HighestFirst, decide::Order::LowestFirst}) {
        EXPECT_LT(decide::sort_key(-0.0f, 3, order), decide::sort_key(0.0f, 4, order));
        EXPECT_LT(decide::sort_key(0.0f, 3, order), decide::sort_key(-0.0f, 4, order));
        EXPECT_LT(decide::sort_key(kInf, (1 << 20) - 1, order), decide::kNoCandidate);
        EXPECT_LT(decide::sort_key(-kInf, (1 << 20) - 1, order), decide::kNoCandidate);
    }
    EXPECT_LT(decide::sort_key(0.75f, 9, decide::Order::HighestFirst), decide::sort_key(0.5f, 1, decide::Order::HighestFirst));
    EXPECT_LT(decide::sort_key(0.5f, 9, decide::Order::LowestFirst), decide::sort_key(0.75f, 1, decide::Order::LowestFirst));
    EXPECT_LT(decide::sort_key(3.0f, 9, decide::Order::LowestFirst), decide::sort_key(kInf, 1, decide::Order::LowestFirst));
}

TEST(DecideKeys, BitonicSortSortsEveryPowerOfTwoWithDuplicates) {
    std::mt19937 rng(11);
    decide::HostBlock block;
    for (int n = 1; n <= 4096; n *= 2) {
        for (int round = 0; round < 4; ++round) {
            std::vector<unsigned long long> keys(static_cast<size_t>(n));
            for (auto &k : keys) k = round == 0 ? decide::kNoCandidate : static_cast<unsigned long long>(uniform(rng, 0, n / 4 + 1)) << (round * 8);
            std::vector<unsigned long long> want = keys;
            std::sort(want.begin(), want.end());
            decide::bitonic_sort(block, keys.data(), n);
            EXPECT_EQ(keys, want) << "n " << n;
        }
    }
}

TEST(DecideKeys, BitonicStagesBetweenBlockBarriersStayInOneWarp) {
    // The device runs the sort on 128..512 threads: between two block barriers, each key is read and written by one warp
    // only (pair i goes to thread i mod threads), so a warp barrier orders it. Simulated on the indices of every stage.
    for (int threads : {128, 256, 512})
        for (int n = 1; n <= 4096; n *= 2) {
            std::vector<int> owner(static_cast<size_t>(n), -1);
            int block_barriers = 0;
            for (int size = 2; size <= n; size *= 2)
                for (int stride = size / 2; stride > 0; stride /= 2) {
                    for (int i = 0; i < n / 2; ++i) {
                        const int warp = (i % threads) / 32, low = decide::pair_low(i, stride);
                        ASSERT_EQ(low & stride, 0);
                        for (int key : {low, low + stride}) {
                            ASSERT_TRUE(owner[key] == -1 || owner[key] == warp)
                                << "threads " << threads << " n " << n << " size " << size << " stride " << stride << " key " << key;
                            owner[key] = warp;
                        }
                    }
                    if (decide::block_barrier_after(size, stride, n)) {
                        std::fill(owner.begin(), owner.end(), -1);
                        block_barriers += 1;
                    }
                }
            if (n == 256) {
                EXPECT_EQ(block_barriers, 6);
            }
            if (n == 1024) {
                EXPECT_EQ(block_barriers, 15);
            }
        }
}

TEST(DecideKeys, TausIntegerSumIsTheSequentialDoubleSumWhereItApplies) {
    // Terms 0 or in [2^-20, 1] with random mantissas, up to kExactTerms of them: the integer sum scaled back is the
    // position-order double sum, bit for bit; a term below 2^-20 is refused.
    std::mt19937 rng(12);
    for (int round = 0; round < 200; ++round) {
        const int count = round < 100 ? uniform(rng, 0, 300) : uniform(rng, decide::kExactTerms - 20, decide::kExactTerms);
        double sequential = 0.0;
        long long fixed = 0;
        for (int i = 0; i < count; ++i) {
            float f = 0.0f;
            const int kind = uniform(rng, 0, 9);
            if (kind == 0) f = chance(rng, 0.5) ? -0.0f : 0.0f;
            else if (kind == 1) f = 1.0f;
            else if (kind == 2) f = 0x1p-20f;
            else if (kind == 3) f = std::nextafter(1.0f, 0.0f);
            else f = std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng), -uniform(rng, 1, 20));
            ASSERT_GE(decide::fixed_term(f), 0) << f;
            sequential += f;
            fixed += decide::fixed_term(f);
        }
        const double exact = static_cast<double>(fixed) * 0x1p-43;
        EXPECT_TRUE(same_bits(exact, sequential)) << "count " << count << ": " << exact << " vs " << sequential;
    }
    for (float f : {1e-30f, 5e-7f, std::nextafter(0x1p-20f, 0.0f), 1.5f, -0.25f, kInf, kNaN}) EXPECT_EQ(decide::fixed_term(f), -1) << f;
}

TEST(DecideHost, SaberMatchesTheReference) {
    std::mt19937 rng(1);
    int compared = 0;
    for (const Shape &shape : kShapes)
        compared += run_configurations(rng, sample(rng, saber_configurations(shape.G, shape.K), shape.G, shape.G <= 256 ? 24 : 10),
                                       shape.G <= 32 ? 2 : 1, 4);
    RecordProperty("steps_compared", compared);
    EXPECT_GT(compared, 500);
}

TEST(DecideHost, LowConfidenceMatchesTheReference) {
    std::mt19937 rng(2);
    int compared = 0;
    for (const Shape &shape : kShapes) {
        std::vector<saber_decode_options> all;
        const int blocks = shape.G / shape.K;
        // Steps per block: one (whole blocks at once), a few, K (one per step), K + 3 (steps that commit nothing).
        for (int per_block : {1, 3, shape.K, shape.K + 3})
            for (int metric : {SABER_METRIC_MAXPROB, SABER_METRIC_MARGIN, SABER_METRIC_NEGENTROPY, SABER_METRIC_RANDOM}) {
                saber_decode_options o = options_of(SABER_STRATEGY_LOW_CONFIDENCE, shape.G, shape.K);
                o.steps = per_block * blocks;
                o.metric = metric;
                all.push_back(o);
            }
        compared += run_configurations(rng, sample(rng, all, shape.G, 8), 2, 4);
    }
    RecordProperty("steps_compared", compared);
    EXPECT_GT(compared, 200);
}

TEST(DecideHost, ThresholdMatchesTheReference) {
    std::mt19937 rng(3);
    int compared = 0;
    for (const Shape &shape : kShapes) {
        std::vector<saber_decode_options> all;
        for (float theta : {0.5f, 0.9f, 1.0f}) {
            saber_decode_options o = options_of(SABER_STRATEGY_THRESHOLD, shape.G, shape.K);
            o.threshold = theta;
            all.push_back(o);
        }
        compared += run_configurations(rng, all, 3, 4);
    }
    RecordProperty("steps_compared", compared);
    EXPECT_GT(compared, 100);
}

TEST(DecideHost, FactorMatchesTheReference) {
    std::mt19937 rng(9);
    int compared = 0;
    for (const Shape &shape : kShapes) {
        std::vector<saber_decode_options> all;
        // Tiny (only rank 1, or all at the end), Fast-dLLM's default 1, larger (thresholds at or below 0 for the first
        // ranks) and huge (every rank passes).
        for (float factor : {1e-3f, 0.5f, 1.0f, 2.0f, 4.0f, 1e30f}) {
            saber_decode_options o = options_of(SABER_STRATEGY_FACTOR, shape.G, shape.K);
            o.factor = factor;
            all.push_back(o);
        }
        compared += run_configurations(rng, all, 3, 4);
    }
    RecordProperty("steps_compared", compared);
    EXPECT_GT(compared, 300);
}

TEST(DecideHost, FactorWorkedExampleOfTheSpec) {
    // docs/strategies.md: F = 1, one block of 6. Step 1 commits ranks 1-3 (0.75 meets rank 3's threshold exactly and
    // goes before the equal 0.75 at a later position, which fails rank 4's 0.8); step 2 commits one of three; step 3
    // commits both of the last two (only the last rank failed: the released code's rule).
    saber_decode_options o = options_of(SABER_STRATEGY_FACTOR, 6, 6);
    std::mt19937 rng(10);
    Batch x = random_batch(rng, o, 1, 1);
    x.done[0] = 0;
    x.block[0] = 0;
    for (int g = 0; g < 6; ++g) {
        x.decoded[x.at(0, g)] = 0;
        x.canvas[static_cast<size_t>(x.prompt_length[0]) + g] = kMask;
    }
    const std::vector<std::vector<float>> steps = {{0.95f, 0.5f, 0.75f, 0.99f, 0.75f, 0.3f},
                                                   {kNaN, 0.6f, kNaN, kNaN, 0.7f, 0.1f},
                                                   {kNaN, 0.2f, kNaN, kNaN, kNaN, 0.1f}};
    const std::vector<std::vector<int>> committed = {{0, 2, 3}, {4}, {1, 5}};
    for (size_t t = 0; t < steps.size(); ++t) {
        for (int g = 0; g < 6; ++g) {
            const size_t at = x.at(0, g);
            const bool row = !x.decoded[at];
            x.prediction[at] = row ? 10 + g : -1;
            x.confidence[at] = x.metric[at] = row ? steps[t][static_cast<size_t>(g)] : kNaN;
            x.token_confidence[at] = kNaN;
        }
        const Batch want = expected_step(x);
        Batch got = x;
        host_step(got, Place::Staged);
        expect_same_state(got, want, false, "worked example step " + std::to_string(t + 1));
        std::vector<int> newly;
        for (int g = 0; g < 6; ++g)
            if (got.decoded[got.at(0, g)] && !x.decoded[x.at(0, g)]) newly.push_back(g);
        EXPECT_EQ(newly, committed[t]) << "step " << t + 1;
        x = got;
    }
    EXPECT_EQ(x.done[0], 1);
}

TEST(DecideHost, LargeGenerationsOnTheGlobalMemoryPathMatchTheReference) {
    // G > 1024 decides in the state's arrays (state_scratch) with keys in the chunk scratch; G need not be a power of two.
    std::mt19937 rng(4);
    int compared = 0;
    for (const Shape &shape : std::vector<Shape>{{2048, 512}, {3072, 1024}, {3072, 3072}}) {
        std::vector<saber_decode_options> all = {options_of(SABER_STRATEGY_SABER, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_LOW_CONFIDENCE, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_THRESHOLD, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_FACTOR, shape.G, shape.K)};
        all[0].variant = SABER_VARIANT_PAPER;
        all[1].steps = 2 * (shape.G / shape.K);
        for (const saber_decode_options &o : all) {
            Batch start = random_batch(rng, o, 3, 2);
            for (int t = 0; t < 3; ++t) {
                random_rows(rng, start);
                const Batch want = expected_step(start);
                Batch got = start;
                host_step(got, Place::InPlace);
                expect_same_state(got, want, false, describe(o) + " step " + std::to_string(t));
                if (HasFailure()) return;
                start = got;
                compared += 1;
            }
        }
    }
    RecordProperty("steps_compared", compared);
}

TEST(DecideHost, AFailedStepChangesNothingButTheErrorStepAndStatus) {
    std::mt19937 rng(5);
    for (int strategy : {SABER_STRATEGY_SABER, SABER_STRATEGY_LOW_CONFIDENCE, SABER_STRATEGY_THRESHOLD, SABER_STRATEGY_FACTOR}) {
        Batch x = random_batch(rng, options_of(strategy, 32, 8), 8, 2);
        random_rows(rng, x);
        x.error = saber::error_key(3, 17, 41);
        for (int32_t error_step : {0, 2}) {
            x.error_step = error_step;
            const Batch want = expected_step(x);
            EXPECT_EQ(want.error_step, error_step == 0 ? x.step + 1 : 2);
            EXPECT_EQ(want.status.error_sequence, 3);
            EXPECT_EQ(want.status.error_position, 17);
            EXPECT_EQ(want.status.error_vocabulary_index, 41);
            Batch got = x;
            host_step(got, Place::Staged);
            expect_same_state(got, want, false, "strategy " + std::to_string(strategy));
            EXPECT_TRUE(same_array("nfe", got.nfe, x.nfe));
            EXPECT_TRUE(same_array("canvas", got.canvas, x.canvas));
        }
    }
}

TEST(DecideHost, AStepAfterEverySequenceFinishedIsNoStepButIsPublished) {
    // A host loop one step ahead queues a step after the last sequence has finished: nothing changes, the step counter
    // stays, and the status is published once more (the host waits for that publication).
    std::mt19937 rng(6);
    for (int strategy : {SABER_STRATEGY_SABER, SABER_STRATEGY_LOW_CONFIDENCE, SABER_STRATEGY_THRESHOLD, SABER_STRATEGY_FACTOR}) {
        Batch x = random_batch(rng, options_of(strategy, 32, 8), 4, 2);
        random_rows(rng, x);
        std::fill(x.done.begin(), x.done.end(), 1);
        const Batch want = expected_step(x);
        EXPECT_EQ(want.step, x.step);
        EXPECT_EQ(want.status.active_sequences, 0);
        EXPECT_EQ(want.finished_steps, x.finished_steps + 1);
        Batch got = x;
        host_step(got, Place::Staged);
        expect_same_state(got, want, false, "strategy " + std::to_string(strategy));
        EXPECT_EQ(got.step, x.step) << "the step counter moved for a step no sequence took";
        EXPECT_TRUE(same_array("nfe", got.nfe, x.nfe));
        EXPECT_TRUE(same_array("canvas", got.canvas, x.canvas));
    }
}

TEST(DecideHost, SaberTiesGoByPositionAndSignedZerosTie) {
    // Every confidence equal (-0 and +0 mixed): the draft fallback takes the lowest positions; every change equal: the
    // re-masks take the lowest decoded positions.
    saber_decode_options o = options_of(SABER_STRATEGY_SABER, 8, 8);
    o.min_tokens_per_step = 3;
    o.remask_divisor = 1;
    std::mt19937 rng(6);
    Batch x = random_batch(rng, o, 1, 1);
    x.done[0] = 0;
    x.block[0] = 0;
    for (int g = 0; g < 8; ++g) {
        const bool decoded = g == 1 || g == 4 || g == 6;
        x.decoded[x.at(0, g)] = decoded;
        x.commit_set[x.at(0, g)] = decoded;
        x.commit_confidence[x.at(0, g)] = 0.5f;
        x.previous[x.at(0, g)] = 0.0f;
        x.canvas[static_cast<size_t>(x.prompt_length[0]) + g] = decoded ? 9 : kMask;
        x.prediction[x.at(0, g)] = 20 + g;
        x.confidence[x.at(0, g)] = g % 2 ? -0.0f : 0.0f;   // tracked a = +-0 everywhere: every change is +-0
        x.token_confidence[x.at(0, g)] = kNaN;
    }
    const Batch want = expected_step(x);
    Batch got = x;
    host_step(got, Place::Staged);
    expect_same_state(got, want, false, "ties");
    // The draft is positions 0, 2, 3 (lowest undecoded); m = min(max(1, 3), 2) = 2 re-masks: positions 0 and 1.
    const int32_t *canvas = got.canvas.data() + got.prompt_length[0];
    EXPECT_EQ(canvas[0], kMask);
    EXPECT_EQ(canvas[1], kMask);
    EXPECT_EQ(canvas[2], 22);
    EXPECT_EQ(canvas[3], 23);
    EXPECT_EQ(got.trace_steps[0].committed, 3);
    EXPECT_EQ(got.trace_steps[0].remasked, 2);
}

// A block of real threads: decide_block.h's code on `threads` OS threads (a multiple of 32) with real barriers, block and
// per warp of 32, so that a missing barrier or a loop that assumes one thread shows, and ThreadSanitizer sees every
// unordered access (a missing block barrier, or a warp barrier where the sort's stages leave a warp's 64 keys). From the
// repository root after the CUDA build:
//   g++ -std=c++17 -O1 -g -fsanitize=thread -ffp-contract=off -DSABER_WITH_CUDA=1 -Inative/src -Inative/include
//       native/tests/decide_tests.cpp build/cuda/native/libsaber_static.a -lgtest -lgtest_main -lcudart_static -ldl -lrt
//       -lpthread -o /tmp/decide_tsan && /tmp/decide_tsan --gtest_filter='DecideThreaded*'

class Barrier {
public:
    explicit Barrier(int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const unsigned long generation = generation_;
        if (++waiting_ == count_) {
            waiting_ = 0;
            ++generation_;
            changed_.notify_all();
        } else {
            changed_.wait(lock, [&] { return generation_ != generation; });
        }
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    int count_, waiting_ = 0;
    unsigned long generation_ = 0;
};

struct ThreadedShared {
    explicit ThreadedShared(int threads) : threads(threads), block(threads), sums(2, std::vector<long long>(threads)), staged(2, std::vector<long long>(threads)) {
        for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Barrier>(32));
    }
    int threads;
    Barrier block;
    std::vector<std::unique_ptr<Barrier>> warps;
    std::vector<std::vector<long long>> sums, staged;   // per-thread contributions: two alternating rows; two staged sums
};

struct ThreadedBlock {
    ThreadedShared *shared;
    int index;
    int row = 0;
    int thread() const { return index; }
    int threads() const { return shared->threads; }
    void sync() { shared->block.wait(); }
    void sync_warp() { shared->warps[static_cast<size_t>(index / 32)]->wait(); }
    long long sum(long long v) {
        std::vector<long long> &mine = shared->sums[static_cast<size_t>(row)];
        row ^= 1;
        mine[static_cast<size_t>(index)] = v;
        sync();
        long long total = 0;
        for (long long x : mine) total += x;
        return total;
    }
    void stage(int slot, long long v) { shared->staged[static_cast<size_t>(slot)][static_cast<size_t>(index)] = v; }
    long long staged(int slot) const {
        long long total = 0;
        for (long long x : shared->staged[static_cast<size_t>(slot)]) total += x;
        return total;
    }
};

/// host_step on `threads` threads per sequence: staged scratch (shared by the threads) when G <= 1024, else in place.
void threaded_step(Batch &x, int threads) {
    DecodeState s = x.state();
    const int n = decide::pow2_at_least(x.G);
    std::vector<int8_t> decoded(x.G), commit_set(x.G), drafted(x.G), remasked(x.G);
    std::vector<float> score(x.G), delta(x.G), commit_confidence(x.G);
    std::vector<unsigned long long> keys(static_cast<size_t>(n));
    double threshold = 0.0;
    auto run = [&](auto body) {
        ThreadedShared shared(threads);
        std::vector<std::thread> team;
        for (int t = 0; t < threads; ++t) team.emplace_back([&, t] {
            ThreadedBlock block{&shared, t};
            body(block);
        });
        for (std::thread &t : team) t.join();
    };
    bool stepped = false;
    for (int b = 0; b < x.batch; ++b) {
        if (*s.error != kNoError || s.done[b]) continue;
        stepped = true;
        const decide::Scratch w = x.G <= decide::kSharedPositions
                                      ? decide::Scratch{true,        decoded.data(), commit_set.data(), drafted.data(),
                                                        remasked.data(), score.data(), delta.data(), commit_confidence.data(),
                                                        keys.data(), &threshold}
                                      : decide::state_scratch(s, b, &threshold);
        run([&](ThreadedBlock &block) { decide::decide_sequence(block, s, b, w); });
    }
    run([&](ThreadedBlock &block) { decide::finish_step(block, s, stepped, decide::active_sequences(block, s)); });
}

TEST(DecideThreaded, RealThreadsWithBarriersMatchTheReference) {
    std::mt19937 rng(8);
    int compared = 0;
    const std::vector<Shape> shapes = {{32, 8}, {256, 64}, {1024, 1024}, {2048, 512}};
    for (const Shape &shape : shapes) {
        std::vector<saber_decode_options> all = {options_of(SABER_STRATEGY_SABER, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_SABER, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_LOW_CONFIDENCE, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_THRESHOLD, shape.G, shape.K),
                                                 options_of(SABER_STRATEGY_FACTOR, shape.G, shape.K)};
        all[1].variant = SABER_VARIANT_PAPER;
        all[1].min_tokens_per_step = 5;
        all[1].remask_divisor = 1;
        all[2].steps = 3 * (shape.G / shape.K);
        for (const saber_decode_options &o : all) {
            for (int threads : {64, 128}) {
                Batch x = random_batch(rng, o, 3, 2);
                for (int t = 0; t < 2; ++t) {
                    random_rows(rng, x);
                    const Batch want = expected_step(x);
                    Batch got = x;
                    threaded_step(got, threads);
                    expect_same_state(got, want, false, describe(o) + " threads " + std::to_string(threads) + " step " + std::to_string(t));
                    if (HasFailure()) return;
                    x = got;
                    compared += 1;
                }
            }
        }
    }
    RecordProperty("steps_compared", compared);
}

/// HostBlock that counts the block barriers a step would execute on the device (sync and sum; warp barriers apart).
struct CountingBlock : decide::HostBlock {
    int block_barriers = 0, warp_barriers = 0;
    void sync() { block_barriers += 1; }
    void sync_warp() { warp_barriers += 1; }
    long long sum(long long v) {
        block_barriers += 1;
        return v;
    }
};

TEST(DecideHost, BlockBarriersOfASaberStep) {
    // One sequence, K = G (the active end is G), tau's integer path, re-masking on; without and with the draft fallback.
    for (int G : {256, 1024}) {
        for (bool fallback : {false, true}) {
            saber_decode_options o = options_of(SABER_STRATEGY_SABER, G, G);
            std::mt19937 rng(7);
            Batch x = random_batch(rng, o, 1, 1);
            x.block[0] = 0;
            for (int g = 0; g < G; ++g) {
                const size_t at = x.at(0, g);
                x.decoded[at] = x.commit_set[at] = g < G / 2;
                x.commit_confidence[at] = 0.5f;
                x.confidence[at] = fallback ? 0.25f : (g % 4 == 0 ? 0.75f : 0.25f);   // tau = 0.5
                x.prediction[at] = 1;
                x.previous[at] = 0.0f;
            }
            DecodeState s = x.state();
            std::vector<int8_t> decoded(G), commit_set(G), drafted(G), remasked(G);
            std::vector<float> score(G), delta(G), commit_confidence(G);
            std::vector<unsigned long long> keys(static_cast<size_t>(G));
            double threshold = 0.0;
            CountingBlock block;
            decide::decide_sequence(block, s, 0,
                                    decide::Scratch{true, decoded.data(), commit_set.data(), drafted.data(), remasked.data(), score.data(),
                                                    delta.data(), commit_confidence.data(), keys.data(), &threshold});
            EXPECT_GT(x.trace_steps[0].remasked, 0);
            const int sort = G == 256 ? 6 : 15;
            // load, draft counts, [fallback: count, sort, marks], re-mask: count, sort, marks.
            EXPECT_EQ(block.block_barriers, 2 + (fallback ? sort + 2 : 0) + sort + 2) << "G " << G << (fallback ? " with fallback" : "");
            RecordProperty("G" + std::to_string(G) + (fallback ? "_fallback" : "") + "_block_barriers", block.block_barriers);
            RecordProperty("G" + std::to_string(G) + (fallback ? "_fallback" : "") + "_warp_barriers", block.warp_barriers);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Device tests: the kernel on injected rows (one launch each, cheap enough for a slow simulator).

template <typename T>
void upload(T *device, const std::vector<T> &host) {
    ASSERT_EQ(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}
template <typename T>
void download(std::vector<T> &host, const T *device) {
    ASSERT_EQ(cudaMemcpy(host.data(), device, host.size() * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
}
template <typename T>
void upload_one(T *device, const T &host) {
    ASSERT_EQ(cudaMemcpy(device, &host, sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}
template <typename T>
void download_one(T &host, const T *device) {
    ASSERT_EQ(cudaMemcpy(&host, device, sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
}

struct DeviceCase;

class DecideDevice : public saber_tests::DeviceTest {
protected:

    /// A decode of x's shape (x.length = max prompt + G: empty-prompt decodes of length G are padded by the test).
    void Create(const Batch &x) {
        std::vector<int32_t> lengths(static_cast<size_t>(x.batch), x.length - x.G), prompts;
        for (int b = 0; b < x.batch; ++b)
            for (int i = 0; i < x.length - x.G; ++i) prompts.push_back(1);
        ASSERT_EQ(saber_decode_create(context, &x.o, kVocabulary, kMask, x.batch, prompts.data(), lengths.data(), x.trace_capacity, &decode),
                  SABER_OK)
            << saber_last_error();
        device = saber::testing::device_state(decode);
        ASSERT_EQ(device.length, x.length);
    }

    /// Writes x's state and rows into the decode (trace, counters and all).
    void Upload(const Batch &x) {
        upload(device.prompt_length, x.prompt_length);
        upload(device.block, x.block);
        upload(device.block_step, x.block_step);
        upload(device.nfe, x.nfe);
        upload(device.done, x.done);
        upload(device.canvas, x.canvas);
        upload(device.decoded, x.decoded);
        upload(device.commit_set, x.commit_set);
        upload(device.commit_confidence, x.commit_confidence);
        upload(device.previous, x.previous);
        upload(device.delta, x.delta);
        upload(device.prediction, x.prediction);
        upload(device.confidence, x.confidence);
        upload(device.token_confidence, x.token_confidence);
        upload(device.metric, x.metric);
        upload(device.trace_steps, x.trace_steps);
        upload(device.trace_events, x.trace_events);
        upload(device.trace_tokens, x.trace_tokens);
        upload(device.trace_confidences, x.trace_confidences);
        upload(device.trace_deltas, x.trace_deltas);
        upload_one(device.step, x.step);
        upload_one(device.error_step, x.error_step);
        upload_one(device.error, x.error);
        // The status, the steps finished and the published block: the expected step builds on them (a step publishes
        // version finished + 1 into one slot and leaves the other as it was).
        upload_one(device.status, x.status);
        upload_one(device.finished_steps, x.finished_steps);
        ASSERT_EQ(saber::testing::set_host_status(decode, x.host_status), SABER_OK) << saber_last_error();
        Settle();
    }

    /// cudaMemcpy runs on the legacy stream, which the context's non-blocking stream does not wait for, and a pageable
    /// upload may return before its DMA ends: finish every copy before a launch.
    static void Settle() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

    /// Reads the decode's state back into x's layout.
    void Download(Batch &x, unsigned int &blocks_done) {
        download(x.block, device.block);
        download(x.block_step, device.block_step);
        download(x.nfe, device.nfe);
        download(x.done, device.done);
        download(x.canvas, device.canvas);
        download(x.decoded, device.decoded);
        download(x.commit_set, device.commit_set);
        download(x.commit_confidence, device.commit_confidence);
        download(x.previous, device.previous);
        download(x.delta, device.delta);
        download(x.row_offsets, device.row_offsets);
        download(x.trace_steps, device.trace_steps);
        download(x.trace_events, device.trace_events);
        download(x.trace_tokens, device.trace_tokens);
        download(x.trace_confidences, device.trace_confidences);
        download(x.trace_deltas, device.trace_deltas);
        download_one(x.step, device.step);
        download_one(x.error_step, device.error_step);
        download_one(x.error, device.error);
        download_one(x.status, device.status);
        download_one(blocks_done, device.blocks_done);
        x.host_status = saber::testing::host_status(decode);
        download_one(x.finished_steps, device.finished_steps);
    }

    /// Runs a device case on the device: a decode per part, x's state uploaded at its first launch and fresh rows at the
    /// next, each launch against the reference, with the handshake counter back at 0.
    void RunCase(const DeviceCase &c);

    DecodeState device{};
};

/// The options of the device cases below.
std::vector<saber_decode_options> device_case_options() {
    saber_decode_options low = options_of(SABER_STRATEGY_LOW_CONFIDENCE, 1024, 256);
    low.steps = 4 * 7;
    saber_decode_options paper = options_of(SABER_STRATEGY_SABER, 1024, 256);
    paper.variant = SABER_VARIANT_PAPER;
    paper.min_tokens_per_step = 3;
    paper.remask_divisor = 2;
    saber_decode_options factor = options_of(SABER_STRATEGY_FACTOR, 1024, 256);
    factor.factor = 2.0f;
    return {options_of(SABER_STRATEGY_SABER, 1024, 256), low, paper, options_of(SABER_STRATEGY_SABER, 2048, 512), factor,
            options_of(SABER_STRATEGY_FACTOR, 2048, 2048)};
}

/// One decode of a device case: device_case_options()[options], `batch` sequences of which `done` are finished, stepped
/// `launches` times (fresh random rows before each launch after the first).
struct DevicePart {
    int options, batch, done, launches;
    const char *name;
};

/// A device case: its parts, run in order from one random generator seeded with `seed`.
struct DeviceCase {
    unsigned seed;
    std::vector<DevicePart> parts;
};

const DeviceCase kSaberShared{21, {{0, 8, 2, 2, "saber G1024 K256"}}};   // two launches: the second checks the counter's reset
const DeviceCase kLowConfidenceAndPaper{22, {{1, 8, 1, 1, "low-confidence G1024 K256"}, {2, 8, 1, 1, "saber paper G1024 K256"}}};
const DeviceCase kGlobalMemory{23, {{3, 2, 1, 1, "saber G2048 K512"}}};
const DeviceCase kFactor{24, {{4, 8, 2, 2, "factor G1024 K256"}, {5, 2, 1, 1, "factor G2048 K2048"}}};

/// Runs a device case: `launch(x, t)` steps x (launch t of its part) and returns the new state, which must be the
/// reference's (the state of the next launch). The same draws from the same seed whoever launches.
template <typename Launch>
void run_device_case(const DeviceCase &c, bool plan, Launch launch) {
    std::mt19937 rng(c.seed);
    const std::vector<saber_decode_options> options = device_case_options();
    for (const DevicePart &part : c.parts) {
        Batch x = random_batch(rng, options[static_cast<size_t>(part.options)], part.batch, part.done);
        random_rows(rng, x);
        for (int t = 0; t < part.launches; ++t) {
            if (t > 0) random_rows(rng, x);
            const Batch want = expected_step(x);
            Batch got = launch(x, t);
            if (::testing::Test::HasFatalFailure()) return;
            expect_same_state(got, want, plan, std::string(part.name) + " launch " + std::to_string(t));
            if (::testing::Test::HasFailure()) return;
            x = got;
        }
    }
}

TEST(DecideDeviceCases, OptionsAreValid) {
    // Runs without a device: the device cases' decodes must be creatable.
    for (const saber_decode_options &o : device_case_options())
        EXPECT_EQ(saber_validate_options(&o, kVocabulary, kMask), SABER_OK) << describe(o) << ": " << saber_last_error();
}

TEST(DecideDeviceCases, TheHostEmulationOfEachDeviceCaseIsTheReference) {
    // Runs without a device: each device case below, with the same draws, on the emulated block (both places) first, so
    // that the expectations the device tests build (status, published block and steps finished included) are the host's.
    for (const DeviceCase *c : {&kSaberShared, &kLowConfidenceAndPaper, &kGlobalMemory, &kFactor})
        for (Place place : {Place::Staged, Place::InPlace}) {
            run_device_case(*c, false, [&](const Batch &x, int) {
                Batch got = x;
                host_step(got, place);
                return got;
            });
            if (HasFailure()) return;
        }
}

void DecideDevice::RunCase(const DeviceCase &c) {
    run_device_case(c, true, [&](const Batch &x, int t) {
        if (t == 0) {
            if (decode != nullptr) saber_decode_destroy(decode);
            decode = nullptr;
            Create(x);
            if (HasFatalFailure()) return x;
            Upload(x);
        } else {
            upload(device.prediction, x.prediction);
            upload(device.confidence, x.confidence);
            upload(device.token_confidence, x.token_confidence);
            upload(device.metric, x.metric);
            Settle();
        }
        if (HasFatalFailure()) return x;
        EXPECT_EQ(saber::testing::decide(decode), SABER_OK) << saber_last_error();
        Batch got = x;
        unsigned int blocks_done = 1;
        Download(got, blocks_done);
        EXPECT_EQ(blocks_done, 0u) << "the handshake counter is reset by the step's last block";
        return got;
    });
}

TEST_F(DecideDevice, SaberStepOfABatchIsTheReferencesBitsInSharedMemory) {
    // G = 1024, K = 256, batch 8 with some done: two launches (the second checks the handshake counter's reset).
    RunCase(kSaberShared);
}

TEST_F(DecideDevice, LowConfidenceAndPaperSaberStepsAreTheReferencesBits) { RunCase(kLowConfidenceAndPaper); }

TEST_F(DecideDevice, GlobalMemoryPathStepIsTheReferencesBits) {
    // G = 2048 > 1024: the global-memory path, keys in the row pass's chunk scratch; one launch.
    RunCase(kGlobalMemory);
}

TEST_F(DecideDevice, FactorStepsAreTheReferencesBitsInSharedAndGlobalMemory) {
    // G = 1024, K = 256 (shared memory), then G = K = 2048 (the global-memory path, a 2048-key sort); batch 8 and 2.
    RunCase(kFactor);
}

}  // namespace
