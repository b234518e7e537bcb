// Philox4x32-10 and the documented layout of random draws, for host and device alike. The C# side
// (src/Saber/Philox.cs, RandomLayout) defines the same layout; the two must change together.
//   key     (k0, k1)         = (low, high) 32 bits of the seed
//   counter (c0, c1, c2, c3) = (v / 4, position, sequence, step); the draw is output word v % 4
//   uniform u = ((x >> 9) + 0.5) * 2^-23, exact in float32, strictly inside (0, 1)
//   Gumbel  g = exact::gumbel(u) = -ln(-ln u), as a fixed sequence of float32 operations (exact_math.h)
//   the random confidence metric uses the draw at v = V
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define SABER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SABER_HOST_DEVICE inline
#endif

namespace saber {

struct PhiloxWords {
    uint32_t x0, x1, x2, x3;
};

SABER_HOST_DEVICE PhiloxWords philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
        const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n1 = static_cast<uint32_t>(p1);
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
        const uint32_t n3 = static_cast<uint32_t>(p0);
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
    }
    return {c0, c1, c2, c3};
}

/// All four draws of the counter that holds vocabulary index v (v, v+1, v+2, v+3 when v % 4 == 0).
SABER_HOST_DEVICE PhiloxWords random_words(uint64_t seed, int step, int sequence, int position, int v) {
    return philox4x32_10(static_cast<uint32_t>(v) >> 2, static_cast<uint32_t>(position), static_cast<uint32_t>(sequence),
                         static_cast<uint32_t>(step), static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

SABER_HOST_DEVICE uint32_t random_bits(uint64_t seed, int step, int sequence, int position, int v) {
    const PhiloxWords w = random_words(seed, step, sequence, position, v);
    switch (v & 3) {
        case 0: return w.x0;
        case 1: return w.x1;
        case 2: return w.x2;
        default: return w.x3;
    }
}

SABER_HOST_DEVICE float to_uniform(uint32_t bits) { return (static_cast<float>(bits >> 9) + 0.5f) * (1.0f / 8388608.0f); }

}  // namespace saber
