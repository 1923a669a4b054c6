// NVFP4 codes on the GPU: the "pair layout" of each 32-bit word, and its decode. Pure integer functions,
// callable from host and device code (the layout test runs them on the CPU).
//
// A checkpoint word (little-endian, 4 packed bytes) holds 8 E2M1 codes c0..c7 in k order, code j at bits
// 4j..4j+3 (sign at 4j+3). The kernels multiply FP16 pairs (c_q, c_q+4) × 2^-14 (q = 0..3, the low lane
// from the word's low half, the high lane from its high half): the exact half2 decode puts a code's sign
// at bit 15 and its exponent and mantissa (e1 e0 m) at bits 11:9 of its half, where E2M1's exponent bias 1
// becomes FP16's 15 and the E2M1 subnormal 0.5 lands on the FP16 subnormal 2^-15.
//
// From the checkpoint layout that costs 3-4 instructions per pair (two fields, two shifts, two masks).
// The pair layout permutes each word's bits once, at upload, so that the pairs sit where fewer are needed.
// Per 16-bit half, the code of pair q has its sign bit and its 3 (e1 e0 m) bits at:
//   q = 0: sign 15, e1 e0 m at 11:9   -> the half2 is w & mask (1 instruction)
//   q = 1: sign 12, e1 e0 m at 8:6    -> (w << 3) & mask (2)
//   q = 2: sign 13, e1 e0 m at 2:0    -> sign and value shifted apart (4)
//   q = 3: sign 14, e1 e0 m at 5:3    -> likewise (4)
// 11 instructions per word instead of ~18 (H200, 2026-12-01: the NVFP4 batch-1 GEMV at 70.7 % of the copy
// bandwidth on 24576x4096 instead of 62.1 %). No layout decodes every pair in 2: the four (sign, e1 e0 m)
// patterns would have to tile the 16 bits of a half, and translates of {0, 1, 2, 6} cannot.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NIBBLE_HD __host__ __device__ __forceinline__
#else
#define NIBBLE_HD inline
#endif

namespace nibble {

// A checkpoint word -> the pair layout.
NIBBLE_HD uint32_t nvfp4_pair_word(uint32_t w) {
    constexpr int sign_bit[4] = {15, 12, 13, 14}, low_bit[4] = {9, 6, 0, 3};  // per pair, in each half
    uint32_t r = 0;
    for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 4; ++q) {
            const uint32_t c = (w >> (16 * h + 4 * q)) & 0xFu;
            r |= (c >> 3) << (16 * h + sign_bit[q]) | (c & 7u) << (16 * h + low_bit[q]);
        }
    return r;
}

// Pair q (a constant after unrolling) of a pair-layout word -> the half2 bits of (c_q, c_q+4) × 2^-14.
NIBBLE_HD uint32_t nvfp4_pair_bits(uint32_t w, int q) {
    constexpr uint32_t sign = 0x80008000u, value = 0x0E000E00u;
    if (q == 0) return w & (sign | value);
    if (q == 1) return (w << 3) & (sign | value);
    if (q == 2) return ((w << 9) & value) | ((w << 2) & sign);
    return ((w << 6) & value) | ((w << 1) & sign);
}

}  // namespace nibble
