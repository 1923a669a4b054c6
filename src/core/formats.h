// Scalar number formats: E2M1 (FP4), E4M3 (float8_e4m3fn), E8M0 (MX scale), BF16 and F16.
// Encoders round to nearest, ties to even, exactly as the reference producers do (formats.md 1.2, 1.3).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace nibble {

// E2M1: bit 3 sign, bits 2-1 exponent (bias 1), bit 0 mantissa. Values ±{0, .5, 1, 1.5, 2, 3, 4, 6};
// code 0x8 is -0.0. Only the low 4 bits of `code` are read.
float e2m1_to_float(uint8_t code);
// RNE with saturation at ±6; the sign comes from the input, so -0.1 gives 0x8 (-0). NaN gives 0x0.
uint8_t e2m1_from_float(float x);

// E4M3 "fn": bias 7, subnormals (m × 2^-9), no infinities, NaN only 0x7F/0xFF, max 448.
float e4m3_to_float(uint8_t byte);
// RNE, saturating to ±448 (compressed-tensors clamps before the cast; CUDA satfinite). NaN -> 0x7F.
uint8_t e4m3_from_float_sat(float x);
// PyTorch's float -> float8_e4m3fn cast: RNE without saturation, |x| > 464 becomes NaN (0x7F | sign).
uint8_t e4m3_from_float_torch(float x);

// E8M0: value 2^(byte - 127); 255 is NaN.
float e8m0_to_float(uint8_t byte);

// BF16: the high half of an IEEE float. Encoding is RNE; NaN stays a (quiet) NaN.
inline float bf16_to_float(uint16_t bits) {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
uint16_t bf16_from_float(float x);

// IEEE binary16, RNE, overflow to infinity.
float f16_to_float(uint16_t bits);
uint16_t f16_from_float(float x);

// Rounds x through a storage dtype and back (F32, BF16, F16): the value a stored scale will have.
float round_through(dtype t, float x);
// Element i of a buffer of F32/F16/BF16/F64/F8_E4M3 values, as float. Other dtypes: fail().
float load_float(dtype t, const void* data, size_t i);
// Writes x as element i of a F32/F16/BF16 buffer.
void store_float(dtype t, void* data, size_t i, float x);

}  // namespace nibble
