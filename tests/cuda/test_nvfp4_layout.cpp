// The pair layout of E2M1 codes on the GPU (cuda/nvfp4_layout.h), on the CPU (no GPU needed: the layout
// functions are plain integer code): converting a checkpoint word and decoding pair q must give the exact
// FP16 bits of codes q and q + 4 × 2^-14 (sign at bit 15, e1 e0 m at bits 11:9 of each half), for every
// 16-bit half pattern and random words; the conversion is a bijection (a permutation of the 32 bits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "core/formats.h"
#include "cuda/nvfp4_layout.h"

using namespace nibble;

namespace {

// FP16 bits of E2M1 code c times 2^-14 (the checkpoint decode's definition).
uint32_t half_bits_of_code(uint32_t c) {
    return (c & 8u) << 12 | (c & 7u) << 9;
}

// An FP16 value from its bits (normals and subnormals; E2M1 × 2^-14 needs no more).
double half_value(uint32_t h) {
    const int e = int(h >> 10 & 31u), m = int(h & 1023u);
    const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return h & 0x8000u ? -v : v;
}

void check_word(uint32_t w) {
    const uint32_t p = nvfp4_pair_word(w);
    for (int q = 0; q < 4; ++q) {
        const uint32_t lo = w >> (4 * q) & 0xFu, hi = w >> (16 + 4 * q) & 0xFu;
        const uint32_t got = nvfp4_pair_bits(p, q);
        ASSERT_EQ(got, half_bits_of_code(lo) | half_bits_of_code(hi) << 16)
            << std::hex << "word " << w << " pair " << q;
        ASSERT_EQ(half_value(got & 0xFFFFu), std::ldexp(double(e2m1_to_float(uint8_t(lo))), -14));
        ASSERT_EQ(half_value(got >> 16), std::ldexp(double(e2m1_to_float(uint8_t(hi))), -14));
    }
}

}  // namespace

TEST(Nvfp4Layout, EveryHalfPatternDecodes) {
    for (uint32_t h = 0; h < 65536; ++h) {
        check_word(h);
        check_word(h << 16);
        check_word(h | h << 16);
    }
}

TEST(Nvfp4Layout, RandomWordsDecode) {
    std::mt19937 g(5);
    for (int i = 0; i < 200000; ++i) check_word(uint32_t(g()));
}

TEST(Nvfp4Layout, ConversionPermutesTheBits) {
    uint32_t seen = 0;
    for (int b = 0; b < 32; ++b) {
        const uint32_t p = nvfp4_pair_word(1u << b);
        ASSERT_EQ(__builtin_popcount(p), 1) << "bit " << b;
        ASSERT_EQ(seen & p, 0u) << "bit " << b << " lands where another did";
        seen |= p;
    }
    EXPECT_EQ(seen, 0xFFFFFFFFu);
}
