// Exact step arithmetic: exp, log, the Gumbel transform and the fixed-point softmax term, each written as a fixed
// sequence of IEEE-754 binary32 operations rounded to nearest (multiplies, adds, one division, explicit fused
// multiply-adds, rint and exact power-of-two scaling). Any IEEE-754 machine that runs the sequence as written gets the
// same bits: the host compiler here (built with -ffp-contract=off), the device (the __f*_rn intrinsics, which nvcc never
// contracts or flushes), and the C# mirror (src/Saber/ExactMath.cs, MathF.FusedMultiplyAdd). The two sides must change
// together; the binding tests compare them bit for bit through saber_exact_eval. docs/arithmetic.md states the
// definitions and their error bounds.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define SABER_EXACT_FN __host__ __device__ __forceinline__
#else
#define SABER_EXACT_FN inline
#endif

namespace saber {
namespace exact {

// ---- the operations, one rounding each ----

SABER_EXACT_FN float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

SABER_EXACT_FN float add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

SABER_EXACT_FN float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return ::fmaf(a, b, c);
#endif
}

SABER_EXACT_FN float div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

/// Round to the nearest integer, ties to even (the default rounding mode on every side).
SABER_EXACT_FN float round_even(float x) {
#if defined(__CUDA_ARCH__)
    return rintf(x);
#else
    return ::nearbyintf(x);
#endif
}

SABER_EXACT_FN uint32_t bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

SABER_EXACT_FN float from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

/// 2^k for k in [-126, 127], exact.
SABER_EXACT_FN float pow2(int k) { return from_bits(static_cast<uint32_t>(k + 127) << 23); }

// ---- exp ----

/// Below this, exp_nonpositive returns 0: e^-86 is 4.5e-38, so every non-zero result is a normal float and no flush
/// to zero (or its absence) can change a bit.
constexpr float kExpCutoff = -86.0f;
constexpr float kLog2e = 1.44269502f;              // 0x3FB8AA3B
constexpr float kLn2Hi = 0.693145751953125f;       // 0x3F317200: 16 significant bits, so k * kLn2Hi is exact
constexpr float kLn2Lo = 1.42860677e-06f;          // 0x35BFBE8E: ln 2 - kLn2Hi

/// e^x for x <= 0 (and -inf), the softmax term of a max-subtracted logit. x = k ln2 + r with k = rint(x log2 e) and
/// |r| <= ln2/2 (Cody-Waite, two fma), e^r by its Taylor polynomial of degree 7 (Horner, fma), times 2^k exactly.
/// e^0 is exactly 1. Not defined for x > 0 or NaN.
SABER_EXACT_FN float exp_nonpositive(float x) {
    if (!(x >= kExpCutoff)) return 0.0f;
    const float k = round_even(mul(x, kLog2e));
    float r = fma(k, -kLn2Hi, x);
    r = fma(k, -kLn2Lo, r);
    float p = 1.98412701e-04f;            // 1/7!
    p = fma(p, r, 1.38888892e-03f);       // 1/6!
    p = fma(p, r, 8.33333377e-03f);       // 1/5!
    p = fma(p, r, 4.16666679e-02f);       // 1/4!
    p = fma(p, r, 1.66666672e-01f);       // 1/3!
    p = fma(p, r, 0.5f);
    p = fma(p, r, 1.0f);
    p = fma(p, r, 1.0f);
    return mul(p, pow2(static_cast<int>(k)));
}

// ---- log ----

/// ln x for a positive normal float x (not 0, subnormal, inf or NaN: the callers' arguments never are). x = m 2^k with
/// m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s) with s = (m - 1)/(m + 1), |s| < 0.172: 2s (1 + z/3 + z^2/5 + z^3/7 +
/// z^4/9), z = s^2; then + k ln2 in two parts.
SABER_EXACT_FN float log_positive(float x) {
    const uint32_t u = bits(x);
    int k = static_cast<int>(u >> 23) - 127;
    uint32_t mantissa = u & 0x007FFFFFu;
    // Mantissas at or above sqrt(2) (0x3504F3 in the fraction) take the next exponent: m in [sqrt(1/2), sqrt(2)).
    if (mantissa >= 0x003504F3u) {
        ++k;
        mantissa |= 0x3F000000u;  // m / 2, in [sqrt(1/2), 1)
    } else {
        mantissa |= 0x3F800000u;  // m, in [1, sqrt(2))
    }
    const float m = from_bits(mantissa);
    const float f = add(m, -1.0f);            // exact (Sterbenz)
    const float s = div(f, add(m, 1.0f));
    const float z = mul(s, s);
    float p = 0.111111112f;                   // 1/9
    p = fma(p, z, 0.142857149f);              // 1/7
    p = fma(p, z, 0.200000003f);              // 1/5
    p = fma(p, z, 0.333333343f);              // 1/3
    p = mul(p, z);
    const float two_s = add(s, s);            // exact
    const float ln_m = fma(two_s, p, two_s);
    const float kf = static_cast<float>(k);
    return add(mul(kf, kLn2Hi), fma(kf, kLn2Lo, ln_m));
}

// ---- random draws ----

/// The Gumbel transform g = -ln(-ln u) of a uniform u in [2^-24, 1 - 2^-24] (what random_bits gives): -ln u lies in
/// [5.96e-8, 16.7], a positive normal float, so both logarithms are in log_positive's domain.
SABER_EXACT_FN float gumbel(float u) { return -log_positive(-log_positive(u)); }

// ---- the fixed-point softmax term ----

/// Fixed-point scale of softmax terms: a term e in [0, 1] becomes floor(e 2^42). Sums of up to 2^21 terms (the C ABI's
/// vocabulary limit) fit a uint64, and integer sums are the same in every order and grouping.
constexpr int kFixedBits = 42;

/// floor(e 2^42) for e in [0, 1]: the scaling is exact in float, the conversion truncates (on every side).
SABER_EXACT_FN uint64_t fixed_term(float e) {
    const float scaled = mul(e, 4398046511104.0f);  // 2^42
#if defined(__CUDA_ARCH__)
    return __float2ull_rz(scaled);
#else
    return static_cast<uint64_t>(scaled);
#endif
}

/// The saber_exact_function `function` (exp, log or Gumbel) at x: what saber_exact_eval(_device) computes.
SABER_EXACT_FN float evaluate(int32_t function, float x) {
    switch (function) {
        case 0: return exp_nonpositive(x);
        case 1: return log_positive(x);
        default: return gumbel(x);
    }
}

}  // namespace exact
}  // namespace saber
